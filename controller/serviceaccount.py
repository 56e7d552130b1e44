"""The service account controller: every namespace has a `default`
ServiceAccount (pods without serviceAccountName run as it), created with the
namespace and re-created if deleted."""

from __future__ import annotations

import logging
from typing import Any

from timonel.api import meta
from timonel.api.client import WorkQueue
from timonel.api.client.workqueue import default_controller_rate_limiter
from timonel.api.errors import ApiError
from timonel.controller.context import ControllerContext
from timonel.controller.loop import run_loop

log = logging.getLogger(__name__)

Obj = dict[str, Any]
NAMESPACES = ("v1", "Namespace")
SERVICE_ACCOUNTS = ("v1", "ServiceAccount")
DEFAULT = "default"


class ServiceAccountController:
    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.queue: WorkQueue[str] = WorkQueue(default_controller_rate_limiter(),
                                               name="serviceaccount")
        self.ns_informer = ctx.informers.informer(NAMESPACES)
        self.sa_informer = ctx.informers.informer(SERVICE_ACCOUNTS)

    def _sa_changed(self, sa: Obj) -> None:
        if meta.name_of(sa) == DEFAULT:
            self.queue.add(meta.namespace_of(sa))

    async def sync(self, namespace: str) -> None:
        ns = self.ns_informer.get("", namespace)
        if ns is None or (ns.get("metadata") or {}).get("deletionTimestamp") or \
                (ns.get("status") or {}).get("phase") == "Terminating":
            return
        if self.sa_informer.get(namespace, DEFAULT) is not None:
            return
        try:
            await self.client.create(SERVICE_ACCOUNTS, {
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": DEFAULT, "namespace": namespace}}, namespace=namespace)
            log.info("created service account namespace=%s name=%s", namespace, DEFAULT)
        except ApiError as e:
            # There already (the cache is behind), or the namespace is going away.
            if e.code not in (409, 403, 404):
                raise

    async def run(self) -> None:
        self.ns_informer.add_handler(lambda ns: self.queue.add(meta.name_of(ns)),
                                     lambda old, ns: self.queue.add(meta.name_of(ns)))
        self.sa_informer.add_handler(on_delete=self._sa_changed)
        await run_loop(self.queue, (self.ns_informer, self.sa_informer), self.sync,
                       self.ctx.options.workers)


async def run(ctx: ControllerContext) -> None:
    await ServiceAccountController(ctx).run()
