"""The ReplicaSet controller: keep `spec.replicas` pods matching the selector.

Level-triggered like upstream's: a sync reads the ReplicaSet and its pods
from the shared informers, claims pods (adopts matching orphans, releases
pods that stopped matching), creates or deletes the difference, and writes
`status` through the status subresource. Expectations keep a second sync from
acting before the informer has seen the first one's creates and deletes;
a restarted controller has none and trusts its freshly synced cache.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from timonel.api import meta
from timonel.api.client import WorkQueue
from timonel.api.client.informer import Informer, meta_namespace_key, namespace_index
from timonel.api.client.informer import split_meta_namespace_key as split_key
from timonel.api.client.workqueue import default_controller_rate_limiter
from timonel.api.errors import ApiError
from timonel.api.selectors import from_label_selector_dict, matches, selector_from_set
from timonel.controller.context import ControllerContext
from timonel.controller.expectations import UIDTrackingExpectations
from timonel.controller.loop import run_loop
from timonel.controller.ownership import (
    add_index,
    candidates,
    claim,
    controlled_by,
    ensure_ownership_indexes,
    owner_recheck,
    resolve_controller,
)
from timonel.controller.pods import (
    PODS,
    controller_of,
    create_pod,
    delete_pod,
    filter_active_pods,
    is_pod_available,
    is_pod_ready,
    pods_to_delete,
    seconds_until_available,
    slow_start_batch,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]
REPLICASETS = ("apps/v1", "ReplicaSet")
# At most this many creates or deletes per sync (upstream's burstReplicas).
BURST_REPLICAS = 500


def replicas_of(obj: Obj) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def min_ready_seconds(obj: Obj) -> int:
    return int((obj.get("spec") or {}).get("minReadySeconds") or 0)


def get_condition(status: Obj, ctype: str) -> Obj | None:
    for c in status.get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == ctype:
            return c
    return None


def calculate_status(rs: Obj, pods: list[Obj], manage_error: BaseException | None,
                     diff: int, now: datetime | None = None) -> Obj:
    """The status for `pods` (the active pods the ReplicaSet owns), in
    upstream's shape: zero counts other than `replicas` are left out."""
    now = now or datetime.now(UTC)
    template_labels = ((rs.get("spec") or {}).get("template") or {}).get("metadata", {}).get(
        "labels") or {}
    template_selector = selector_from_set(template_labels)
    mrs = min_ready_seconds(rs)
    fully = sum(1 for p in pods if matches(template_selector, meta.labels_of(p)))
    ready = sum(1 for p in pods if is_pod_ready(p))
    available = sum(1 for p in pods if is_pod_available(p, mrs, now))
    old = rs.get("status") or {}
    conditions = [c for c in old.get("conditions") or [] if isinstance(c, dict)]
    failure = get_condition(old, "ReplicaFailure")
    if manage_error is not None and failure is None:
        message = getattr(manage_error, "message", None) or str(manage_error)
        conditions.append({"type": "ReplicaFailure", "status": "True",
                           "lastTransitionTime": meta.now(),
                           "reason": "FailedCreate" if diff < 0 else "FailedDelete",
                           "message": message})
    elif manage_error is None and failure is not None:
        conditions = [c for c in conditions if c.get("type") != "ReplicaFailure"]
    status: Obj = {"replicas": len(pods)}
    for key, value in (("fullyLabeledReplicas", fully), ("readyReplicas", ready),
                       ("availableReplicas", available)):
        if value:
            status[key] = value
    if old.get("observedGeneration"):
        status["observedGeneration"] = old["observedGeneration"]
    if conditions:
        status["conditions"] = conditions
    return status


class ReplicaSetController:
    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.recorder = ctx.recorder
        self.expectations = UIDTrackingExpectations()
        self.queue: WorkQueue[str] = WorkQueue(default_controller_rate_limiter(),
                                               name="replicaset")
        self.rs_informer: Informer = ctx.informers.informer(REPLICASETS)
        self.pod_informer: Informer = ctx.informers.informer(PODS)
        for inf in (self.rs_informer, self.pod_informer):
            ensure_ownership_indexes(inf)
            add_index(inf, "namespace", namespace_index)

    # -- event handlers -------------------------------------------------------------

    def start_handlers(self) -> None:
        self.rs_informer.add_handler(self.enqueue, lambda old, new: self.enqueue(new),
                                     self._rs_deleted)
        self.pod_informer.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    def enqueue(self, rs: Obj) -> None:
        self.queue.add(meta_namespace_key(rs))

    def _rs_deleted(self, rs: Obj) -> None:
        key = meta_namespace_key(rs)
        self.expectations.delete(key)
        self.queue.add(key)

    def _owner_of(self, pod: Obj) -> Obj | None:
        ns = meta.namespace_of(pod)
        return resolve_controller(controller_of(pod), "ReplicaSet",
                                  lambda name: self.rs_informer.get(ns, name))

    def _matching_replica_sets(self, pod: Obj) -> list[Obj]:
        labels = meta.labels_of(pod)
        out = []
        for rs in self.rs_informer.by_index("namespace", meta.namespace_of(pod)):
            try:
                selector = from_label_selector_dict((rs.get("spec") or {}).get("selector"))
            except ApiError:
                continue
            if not selector.empty and matches(selector, labels):
                out.append(rs)
        return out

    def _pod_added(self, pod: Obj) -> None:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            # Seen for the first time already being deleted (a restart).
            self._pod_deleted(pod)
            return
        rs = self._owner_of(pod)
        if rs is not None:
            key = meta_namespace_key(rs)
            self.expectations.creation_observed(key)
            self.queue.add(key)
            return
        if controller_of(pod) is None:
            for rs in self._matching_replica_sets(pod):
                self.enqueue(rs)

    def _pod_updated(self, old: Obj, cur: Obj) -> None:
        if meta.resource_version(old) == meta.resource_version(cur):
            return
        labels_changed = meta.labels_of(old) != meta.labels_of(cur)
        if (cur.get("metadata") or {}).get("deletionTimestamp"):
            self._pod_deleted(cur)
            if labels_changed:
                self._pod_deleted(old)
            return
        old_ref, cur_ref = controller_of(old), controller_of(cur)
        if old_ref and (cur_ref is None or old_ref.get("uid") != cur_ref.get("uid")):
            owner = self._owner_of(old)
            if owner is not None:
                self.enqueue(owner)
        if cur_ref is not None:
            owner = self._owner_of(cur)
            if owner is not None:
                self.enqueue(owner)
                mrs = min_ready_seconds(owner)
                if mrs > 0 and not is_pod_ready(old) and is_pod_ready(cur):
                    # Nothing else will tell us when it becomes available.
                    self.queue.add_after(meta_namespace_key(owner), mrs + 1)
            return
        if labels_changed or old_ref is not None:
            for rs in self._matching_replica_sets(cur):
                self.enqueue(rs)

    def _pod_deleted(self, pod: Obj) -> None:
        rs = self._owner_of(pod)
        if rs is None:
            return
        key = meta_namespace_key(rs)
        self.expectations.deletion_observed_of(key, meta_namespace_key(pod))
        self.queue.add(key)

    # -- the sync ----------------------------------------------------------------

    def related_pods(self, rs: Obj) -> list[Obj]:
        """Active pods of every ReplicaSet with the same controller (the
        Deployment's other ReplicaSets): the ranking spreads what stays."""
        ref = controller_of(rs)
        if ref is None:
            return filter_active_pods(controlled_by(self.pod_informer, rs))
        siblings = [s for s in self.rs_informer.by_index("controller-uid", str(ref.get("uid")))
                    if meta.namespace_of(s) == meta.namespace_of(rs)]
        pods: list[Obj] = []
        for s in siblings or [rs]:
            pods.extend(controlled_by(self.pod_informer, s))
        return filter_active_pods(pods)

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        rs = self.rs_informer.get(ns, name)
        if rs is None:
            self.expectations.delete(key)
            return
        needs_sync = self.expectations.satisfied(key)
        try:
            selector = from_label_selector_dict((rs.get("spec") or {}).get("selector"))
        except ApiError as e:
            log.warning("invalid selector replicaset=%s err=%s", key, e.message)
            return
        active = filter_active_pods(candidates(self.pod_informer, rs))
        pods = await claim(self.client, PODS, rs, selector, active,
                           can_adopt=owner_recheck(self.client, REPLICASETS, rs))
        diff = len(pods) - replicas_of(rs)
        manage_error: BaseException | None = None
        if needs_sync and not (rs.get("metadata") or {}).get("deletionTimestamp"):
            try:
                await self.manage_replicas(key, rs, pods)
            except (ApiError, ConnectionError) as e:
                manage_error = e
        status = calculate_status(rs, pods, manage_error, diff)
        updated = await self.update_status(rs, status)
        mrs = min_ready_seconds(rs)
        if manage_error is None and mrs > 0 and updated is not None:
            waits = [w for p in pods if (w := seconds_until_available(p, mrs)) is not None]
            if waits:
                self.queue.add_after(key, min(waits) + 0.5)
        if manage_error is not None:
            raise manage_error

    async def manage_replicas(self, key: str, rs: Obj, pods: list[Obj]) -> None:
        diff = len(pods) - replicas_of(rs)
        if diff < 0:
            count = min(-diff, BURST_REPLICAS)
            self.expectations.expect_creations(key, count)
            log.info("too few replicas replicaset=%s need=%d creating=%d", key,
                     replicas_of(rs), count)
            template = (rs.get("spec") or {}).get("template") or {}

            async def create() -> None:
                await create_pod(self.client, self.recorder, template, rs)

            successes, error = await slow_start_batch(count, 1, create)
            for _ in range(count - successes):
                # Refused or never tried: these adds will not be observed.
                self.expectations.creation_observed(key)
            if error is not None:
                if isinstance(error, ApiError) and error.code == 403 and \
                        "being terminated" in error.message:
                    return
                raise error
        elif diff > 0:
            count = min(diff, BURST_REPLICAS)
            victims = pods_to_delete(pods, self.related_pods(rs), count)
            log.info("too many replicas replicaset=%s need=%d deleting=%d", key,
                     replicas_of(rs), count)
            self.expectations.expect_deletions_of(key, [meta_namespace_key(p) for p in victims])

            async def remove(pod: Obj) -> None:
                try:
                    gone = not await delete_pod(self.client, self.recorder, pod, rs)
                except BaseException:
                    self.expectations.deletion_observed_of(key, meta_namespace_key(pod))
                    raise
                if gone:
                    self.expectations.deletion_observed_of(key, meta_namespace_key(pod))

            results = await asyncio.gather(*(remove(p) for p in victims), return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    raise r

    async def update_status(self, rs: Obj, status: Obj) -> Obj | None:
        generation = (rs.get("metadata") or {}).get("generation")
        old = rs.get("status") or {}
        status = dict(status)
        if generation:
            status["observedGeneration"] = generation
        if status == old:
            return rs
        try:
            return await self.client.update_status(REPLICASETS, {**rs, "status": status})
        except ApiError as e:
            if e.code == 404:
                return None
            # 409: the ReplicaSet changed; its update event syncs it again.
            if e.code == 409:
                self.queue.add(meta_namespace_key(rs))
                return None
            raise

    async def run(self) -> None:
        self.start_handlers()
        await run_loop(self.queue, (self.rs_informer, self.pod_informer), self.sync,
                       self.ctx.options.workers)


async def run(ctx: ControllerContext) -> None:
    await ReplicaSetController(ctx).run()
