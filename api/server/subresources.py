"""Subresources with behaviour of their own: scale, binding, eviction,
namespace finalize, and the streaming ones (log, exec, attach) that need a
node agent."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from timonel.api import meta, schemas
from timonel.api.errors import ApiError, bad_request, conflict
from timonel.api.jsonutil import deep_copy
from timonel.api.server import codec, rest
from timonel.api.server.context import Server
from timonel.api.server.objects import Obj
from timonel.api.server.routing import RequestInfo

STREAMING = ("log", "exec", "attach", "portforward")


def to_scale(obj: Obj) -> Obj:
    """The autoscaling/v1 Scale view of a Deployment, ReplicaSet or StatefulSet."""
    md = obj["metadata"]
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    selector = spec.get("selector") or {}
    from timonel.api import selectors

    try:
        sel_text = selectors.to_text(selectors.from_label_selector_dict(selector))
    except ApiError:
        sel_text = ""
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                        "creationTimestamp") if k in md},
        "spec": {"replicas": int(spec.get("replicas", 1))},
        "status": {"replicas": int(status.get("replicas", 0)), "selector": sel_text},
    }


async def scale(server: Server, request: web.Request, info: RequestInfo) -> web.Response:
    rtype = info.rtype
    if info.verb == "get":
        obj = await server.objects.get(rtype, info.namespace, info.name)
        return codec.json_response(to_scale(obj))
    if info.verb not in ("update", "patch"):
        raise ApiError(405, f"{info.verb} is not supported on the scale subresource",
                       "MethodNotAllowed")
    body = await codec.read_body(request)
    ctype = codec.content_type(request)
    if info.verb == "patch" and ctype not in rest.PATCH_TYPES:
        raise ApiError(415, f"unsupported patch type {ctype!r}", "UnsupportedMediaType")

    def mutate(live: Obj) -> Obj:
        current = to_scale(live)
        if info.verb == "update":
            wanted = codec.parse_object(body, ctype)
        else:
            from timonel.api.patch import apply_patch

            wanted = apply_patch(ctype, current, body,
                                 definition=schemas.definition_name("autoscaling", "v1", "Scale"),
                                 manager=request.query.get("fieldManager", "") or "unknown",
                                 force=codec.query_bool(request, "force"), now=meta.now())
        replicas = (wanted.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(422, f'Scale.autoscaling "{info.name}" is invalid: spec.replicas: '
                           "Invalid value: must be a non-negative integer", "Invalid",
                           causes=[{"reason": "FieldValueInvalid", "field": "spec.replicas",
                                    "message": "Invalid value: must be a non-negative integer"}])
        rv = (wanted.get("metadata") or {}).get("resourceVersion")
        if rv and rv != live["metadata"]["resourceVersion"]:
            raise conflict(rtype.plural, info.name, rtype.group)
        live.setdefault("spec", {})["replicas"] = replicas
        live["metadata"].pop("resourceVersion", None)
        return live

    warnings: list[str] = []
    check = rest.with_fields(rest.check_for(server, request, info, "UPDATE", warnings),
                             request.query.get("fieldManager", "") or "unknown", info)
    out, _ = await server.objects.update(rtype, info.namespace, info.name, mutate,
                                         subresource="scale", check=check,
                                         dry_run=rest.dry_run(request))
    return codec.json_response(to_scale(out), 200, warnings)


async def binding(server: Server, request: web.Request, info: RequestInfo) -> web.Response:
    """POST pods/X/binding: the scheduler's way to set spec.nodeName, once."""
    if info.verb != "create":
        raise ApiError(405, "binding only supports create (POST)", "MethodNotAllowed")
    body = codec.parse_object(await codec.read_body(request), codec.content_type(request))
    target = body.get("target") or {}
    node = target.get("name") if isinstance(target, dict) else None
    if not node or not isinstance(node, str):
        raise ApiError(422, "Binding is invalid: target.name: Required value", "Invalid",
                       causes=[{"reason": "FieldValueRequired", "field": "target.name",
                                "message": "Required value"}])
    uid = ((body.get("metadata") or {}).get("uid"))

    def mutate(pod: Obj) -> Obj:
        md = pod["metadata"]
        if uid and uid != md.get("uid"):
            raise conflict("pods", info.name, "", "the UID in the binding does not match the pod")
        if md.get("deletionTimestamp"):
            raise conflict("pods", info.name, "", "pod is being deleted, cannot be assigned to a host")
        spec = pod.setdefault("spec", {})
        if spec.get("nodeName"):
            raise conflict("pods", info.name, "",
                           f"pod {info.name} is already assigned to node \"{spec['nodeName']}\"")
        spec["nodeName"] = node
        md.pop("resourceVersion", None)
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        if annotations:
            md.setdefault("annotations", {}).update(annotations)
        conds = [c for c in (pod.setdefault("status", {}).get("conditions") or [])
                 if c.get("type") != "PodScheduled"]
        conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                      "lastTransitionTime": meta.now()})
        pod["status"]["conditions"] = conds
        return pod

    await server.objects.update(info.rtype, info.namespace, info.name, mutate,
                                subresource="binding", dry_run=rest.dry_run(request))
    return codec.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Success", "code": 201}, 201)


async def eviction(server: Server, request: web.Request, info: RequestInfo) -> web.Response:
    """POST pods/X/eviction: a polite delete (PodDisruptionBudgets come later)."""
    if info.verb != "create":
        raise ApiError(405, "eviction only supports create (POST)", "MethodNotAllowed")
    body = codec.parse_object(await codec.read_body(request), codec.content_type(request))
    options: dict[str, Any] = body.get("deleteOptions") or {}
    if not isinstance(options, dict):
        raise bad_request("deleteOptions must be an object")
    await server.objects.delete(info.rtype, info.namespace, info.name, options,
                                dry_run=rest.dry_run(request))
    return codec.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Success", "code": 201}, 201)


async def finalize(server: Server, request: web.Request, info: RequestInfo) -> web.Response:
    """PUT namespaces/X/finalize: the namespace controller drops spec.finalizers."""
    if info.verb != "update":
        raise ApiError(405, "finalize only supports update (PUT)", "MethodNotAllowed")
    body = codec.parse_object(await codec.read_body(request), codec.content_type(request))
    finalizers = (body.get("spec") or {}).get("finalizers") or []

    def mutate(ns: Obj) -> Obj:
        ns = deep_copy(ns)
        ns.setdefault("spec", {})["finalizers"] = list(finalizers)
        ns["metadata"].pop("resourceVersion", None)
        return ns

    out, _ = await server.objects.update(info.rtype, "", info.name, mutate, subresource="finalize")
    return codec.json_response(out)


async def streaming(server: Server, request: web.Request, info: RequestInfo) -> web.StreamResponse:
    """log, exec, attach: served by the pod's node agent (proxy.py)."""
    from timonel.api.server import proxy

    return await proxy.streaming(server, request, info)
