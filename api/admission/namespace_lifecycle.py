"""NamespaceLifecycle: nothing is created in a namespace that is missing or
being deleted, and the system namespaces cannot be deleted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from timonel.api.admission import AdmissionRequest, Plugin
from timonel.api.errors import ApiError

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

# Looks a namespace up: returns the object or None.
NamespaceGetter = Callable[[str], Awaitable[dict[str, Any] | None]]


def namespace_lifecycle(get_namespace: NamespaceGetter) -> Plugin:
    async def plugin(req: AdmissionRequest, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if req.rtype.kind == "Namespace" and req.rtype.group == "":
            if req.operation == "DELETE" and req.name in SYSTEM_NAMESPACES:
                raise ApiError(403, f'namespaces "{req.name}" is forbidden: this namespace may not '
                               "be deleted", "Forbidden", name=req.name, kind="namespaces")
            return
        if not req.rtype.namespaced or req.operation != "CREATE" or req.subresource:
            return
        ns = await get_namespace(req.namespace)
        if ns is None:
            raise ApiError(404, f'namespaces "{req.namespace}" not found', "NotFound",
                           name=req.namespace, kind="namespaces")
        if (ns.get("metadata") or {}).get("deletionTimestamp") and req.rtype.kind != "Event":
            raise ApiError(403, f'{req.rtype.plural} "{req.name}" is forbidden: unable to create '
                           f"new content in namespace {req.namespace} because it is being "
                           "terminated", "Forbidden", name=req.name, kind=req.rtype.plural)

    return plugin
