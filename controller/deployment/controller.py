"""The Deployment controller: watches Deployments, their ReplicaSets and
(for Recreate) their pods, and runs one `rollout.Sync` per changed
Deployment (upstream's deployment_controller.go)."""

from __future__ import annotations

import logging
from typing import Any

from timonel.api import meta
from timonel.api.client import Informer, WorkQueue
from timonel.api.client.events import WARNING
from timonel.api.client.informer import meta_namespace_key, namespace_index
from timonel.api.client.informer import split_meta_namespace_key as split_key
from timonel.api.client.workqueue import default_controller_rate_limiter
from timonel.api.errors import ApiError
from timonel.api.selectors import from_label_selector_dict, matches
from timonel.controller.context import ControllerContext
from timonel.controller.deployment import util
from timonel.controller.deployment.rollout import DEPLOYMENTS, REPLICASETS, Sync, selects_everything
from timonel.controller.loop import run_loop
from timonel.controller.ownership import (
    add_index,
    candidates,
    claim,
    ensure_ownership_indexes,
    owner_recheck,
    resolve_controller,
)
from timonel.controller.pods import PODS, controller_of

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class DeploymentController:
    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.recorder = ctx.recorder
        self.queue: WorkQueue[str] = WorkQueue(default_controller_rate_limiter(),
                                               name="deployment")
        self.d_informer: Informer = ctx.informers.informer(DEPLOYMENTS)
        self.rs_informer: Informer = ctx.informers.informer(REPLICASETS)
        self.pod_informer: Informer = ctx.informers.informer(PODS)
        for inf in (self.d_informer, self.rs_informer, self.pod_informer):
            add_index(inf, "namespace", namespace_index)
        ensure_ownership_indexes(self.rs_informer)
        ensure_ownership_indexes(self.pod_informer)

    # -- event handlers ---------------------------------------------------------------------

    def start_handlers(self) -> None:
        self.d_informer.add_handler(self.enqueue, lambda old, new: self.enqueue(new),
                                    self.enqueue)
        self.rs_informer.add_handler(self._rs_added, self._rs_updated, self._rs_deleted)
        self.pod_informer.add_handler(on_delete=self._pod_deleted)

    def enqueue(self, d: Obj) -> None:
        self.queue.add(meta_namespace_key(d))

    def _owner_of(self, rs: Obj) -> Obj | None:
        ns = meta.namespace_of(rs)
        return resolve_controller(controller_of(rs), "Deployment",
                                  lambda name: self.d_informer.get(ns, name))

    def _deployments_selecting(self, rs: Obj) -> list[Obj]:
        labels = meta.labels_of(rs)
        out = []
        for d in self.d_informer.by_index("namespace", meta.namespace_of(rs)):
            try:
                selector = from_label_selector_dict((d.get("spec") or {}).get("selector"))
            except ApiError:
                continue
            if not selector.empty and matches(selector, labels):
                out.append(d)
        return out

    def _rs_added(self, rs: Obj) -> None:
        if (rs.get("metadata") or {}).get("deletionTimestamp"):
            self._rs_deleted(rs)
            return
        d = self._owner_of(rs)
        if d is not None:
            self.enqueue(d)
        elif controller_of(rs) is None:
            for d in self._deployments_selecting(rs):
                self.enqueue(d)

    def _rs_updated(self, old: Obj, cur: Obj) -> None:
        if meta.resource_version(old) == meta.resource_version(cur):
            return
        old_ref, cur_ref = controller_of(old), controller_of(cur)
        if old_ref and (cur_ref is None or old_ref.get("uid") != cur_ref.get("uid")):
            d = self._owner_of(old)
            if d is not None:
                self.enqueue(d)
        if cur_ref is not None:
            d = self._owner_of(cur)
            if d is not None:
                self.enqueue(d)
            return
        if meta.labels_of(old) != meta.labels_of(cur) or old_ref is not None:
            for d in self._deployments_selecting(cur):
                self.enqueue(d)

    def _rs_deleted(self, rs: Obj) -> None:
        d = self._owner_of(rs)
        if d is not None:
            self.enqueue(d)

    def _pod_deleted(self, pod: Obj) -> None:
        # Recreate waits for the old pods to be gone.
        ns = meta.namespace_of(pod)
        rs = resolve_controller(controller_of(pod), "ReplicaSet",
                                lambda name: self.rs_informer.get(ns, name))
        if rs is None:
            return
        d = self._owner_of(rs)
        if d is not None and not util.is_rolling_update(d):
            self.enqueue(d)

    # -- reads ---------------------------------------------------------------------------------

    async def replica_sets_for(self, d: Obj) -> list[Obj]:
        """The ReplicaSets `d` controls, adopting and releasing by selector."""
        selector = from_label_selector_dict((d.get("spec") or {}).get("selector"))
        return await claim(self.client, REPLICASETS, d, selector,
                           candidates(self.rs_informer, d),
                           can_adopt=owner_recheck(self.client, DEPLOYMENTS, d))

    def pods_by_replica_set(self, d: Obj, rss: list[Obj]) -> dict[str, list[Obj]]:
        """Pods selected by `d`, by the UID of the ReplicaSet controlling them."""
        selector = from_label_selector_dict((d.get("spec") or {}).get("selector"))
        out: dict[str, list[Obj]] = {str((rs.get("metadata") or {}).get("uid")): [] for rs in rss}
        for pod in self.pod_informer.by_index("namespace", meta.namespace_of(d)):
            if not matches(selector, meta.labels_of(pod)):
                continue
            ref = controller_of(pod)
            if ref is not None and str(ref.get("uid")) in out:
                out[str(ref.get("uid"))].append(pod)
        return out

    # -- the sync -------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        d = self.d_informer.get(ns, name)
        if d is None:
            return
        if selects_everything(d):
            await self.recorder.event(d, WARNING, "SelectingAll",
                                      "This deployment is selecting all pods. A non-empty "
                                      "selector is required.")
            generation = int((d.get("metadata") or {}).get("generation") or 0)
            status = dict(d.get("status") or {})
            if int(status.get("observedGeneration") or 0) < generation:
                status["observedGeneration"] = generation
                await self.client.update_status(DEPLOYMENTS, {**d, "status": status})
            return
        rss = await self.replica_sets_for(d)
        work = Sync(self, d, rss)
        if (d.get("metadata") or {}).get("deletionTimestamp"):
            new, old = await work.get_all_and_sync_revision(False)
            await work.sync_status([*old, new], new)
            return
        await self._check_paused(work)
        if (work.d.get("spec") or {}).get("paused"):
            await work.sync()
            return
        if util.ROLLBACK_TO in ((work.d.get("metadata") or {}).get("annotations") or {}):
            await work.rollback()
            return
        if await work.is_scaling_event():
            await work.sync()
            return
        if util.is_rolling_update(work.d):
            await work.rolling()
        else:
            # Only Recreate looks at pods: it waits for the old ones to be gone.
            await work.recreate(self.pods_by_replica_set(d, rss))

    async def _check_paused(self, work: Sync) -> None:
        from timonel.controller.deployment import status as st

        cond = st.paused_condition(work.d)
        if cond is None:
            return
        status = dict(work.d.get("status") or {})
        st.set_condition(status, cond)
        await work.write_status(status)

    async def run(self) -> None:
        self.start_handlers()
        await run_loop(self.queue, (self.d_informer, self.rs_informer, self.pod_informer),
                       self.sync, self.ctx.options.workers)


async def run(ctx: ControllerContext) -> None:
    await DeploymentController(ctx).run()
