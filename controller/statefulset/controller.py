"""The StatefulSet controller: pods with stable names `<set>-0..n-1`,
created, deleted and updated in ordinal order (see ordering.py), each with
its own claims from volumeClaimTemplates, and a ControllerRevision per
template so a partitioned rollout can keep old ordinals on the old one.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from datetime import UTC, datetime
from typing import Any

from timonel.api import meta
from timonel.api.client import WorkQueue, run_workers
from timonel.api.client.events import NORMAL, WARNING
from timonel.api.errors import ApiError
from timonel.api.selectors import from_label_selector_dict, matches
from timonel.controller import history, ownership
from timonel.controller.context import ControllerContext
from timonel.controller.pods import (
    PODS,
    controller_of,
    is_pod_available,
    is_pod_ready,
    seconds_until_available,
)
from timonel.controller.statefulset import identity
from timonel.controller.statefulset.ordering import Action, PodState, plan
from timonel.controller.status import write_status

log = logging.getLogger(__name__)

STATEFULSETS = ("apps/v1", "StatefulSet")
PVCS = ("v1", "PersistentVolumeClaim")
Obj = dict[str, Any]


def sts_key(sts: Obj) -> str:
    return f"{meta.namespace_of(sts)}/{meta.name_of(sts)}"


def _terminating(pod: Obj) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


class StatefulSetController:
    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.recorder = ctx.recorder
        self.sets = ctx.informers.informer(STATEFULSETS)
        self.pods = ctx.informers.informer(PODS)
        self.revisions = ctx.informers.informer(history.REVISIONS)
        self.claims = ctx.informers.informer(PVCS)
        ownership.ensure_ownership_indexes(self.pods)
        history.ensure_indexes(self.revisions)
        self.queue: WorkQueue[str] = WorkQueue(name="statefulset")

    # -- events -------------------------------------------------------------------

    def register(self) -> None:
        self.sets.add_handler(lambda s: self.queue.add(sts_key(s)),
                              lambda o, n: self.queue.add(sts_key(n)),
                              lambda s: self.queue.add(sts_key(s)))
        self.pods.add_handler(self._pod_changed, lambda o, n: self._pod_updated(o, n),
                              self._pod_changed)
        self.revisions.add_handler(self._owned_changed, lambda o, n: self._owned_changed(n),
                                   self._owned_changed)

    def _owner(self, obj: Obj, ref: Obj | None = None) -> Obj | None:
        ns = meta.namespace_of(obj)
        return ownership.resolve_controller(ref if ref is not None else controller_of(obj),
                                            "StatefulSet", lambda name: self.sets.get(ns, name))

    def _owned_changed(self, obj: Obj) -> None:
        sts = self._owner(obj)
        if sts is not None:
            self.queue.add(sts_key(sts))

    def _pod_changed(self, pod: Obj) -> None:
        sts = self._owner(pod)
        if sts is not None:
            self.queue.add(sts_key(sts))
        elif controller_of(pod) is None:
            for s in self.sets.list(meta.namespace_of(pod)):
                try:
                    sel = from_label_selector_dict((s.get("spec") or {}).get("selector"))
                except ApiError:
                    continue
                if matches(sel, meta.labels_of(pod)):
                    self.queue.add(sts_key(s))

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if controller_of(old) != controller_of(new):
            self._pod_changed(old)
        self._pod_changed(new)

    async def run(self) -> None:
        await run_workers(self.queue, self.sync, max(1, self.ctx.options.workers))

    # -- sync ------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        sts = self.sets.get(ns, name)
        if sts is None:
            return
        sts = copy.deepcopy(sts)
        try:
            selector = from_label_selector_dict((sts.get("spec") or {}).get("selector"))
        except ApiError as e:
            await self.recorder.event(sts, WARNING, "InvalidSelector",
                                      f"Invalid selector: {e.message}")
            return
        pods = await ownership.claim(
            self.client, PODS, sts, selector, ownership.candidates(self.pods, sts),
            can_adopt=ownership.owner_recheck(self.client, STATEFULSETS, sts))
        revisions = await history.owned_revisions(self.client, self.revisions, sts,
                                                  STATEFULSETS, selector)
        update_rev, others, collisions = await history.update_revision(self.client, sts,
                                                                       revisions)
        current_name = (sts.get("status") or {}).get("currentRevision") or ""
        current_rev = next((r for r in [update_rev, *others] if meta.name_of(r) == current_name),
                           update_rev)
        deleting = bool((sts.get("metadata") or {}).get("deletionTimestamp"))
        if not deleting:
            await self._apply(sts, pods, current_rev, update_rev)
            await self._truncate_history(sts, pods, others, current_rev, update_rev)
        await self._update_status(key, sts, current_rev, update_rev, collisions)

    def _states(self, sts: Obj, pods: list[Obj]) -> tuple[dict[int, PodState], dict[int, Obj]]:
        min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
        now = datetime.now(UTC)
        states: dict[int, PodState] = {}
        by_ordinal: dict[int, Obj] = {}
        for pod in pods:
            ordinal = identity.ordinal_of(sts, pod)
            if ordinal is None:
                continue
            by_ordinal[ordinal] = pod
            states[ordinal] = PodState(
                revision=identity.pod_revision(pod), phase=_phase(pod), ready=is_pod_ready(pod),
                available=is_pod_available(pod, min_ready, now), terminating=_terminating(pod))
            wait = seconds_until_available(pod, min_ready, now)
            if wait is not None and not _terminating(pod):
                self.queue.add_after(sts_key(sts), wait + 0.1)
        return states, by_ordinal

    async def _apply(self, sts: Obj, pods: list[Obj], current_rev: Obj, update_rev: Obj) -> None:
        spec = sts.get("spec") or {}
        states, by_ordinal = self._states(sts, pods)
        for ordinal, pod in by_ordinal.items():
            if not _terminating(pod) and not identity.identity_matches(pod, sts, ordinal):
                await self._fix_identity(sts, pod, ordinal)
        strategy = spec.get("updateStrategy") or {}
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        partition = int(((strategy.get("rollingUpdate") or {}).get("partition")) or 0)
        actions = plan(start=identity.start_ordinal(sts), replicas=identity.replicas(sts),
                       pods=states, monotonic=spec.get("podManagementPolicy",
                                                       "OrderedReady") != "Parallel",
                       current_revision=meta.name_of(current_rev),
                       update_revision=meta.name_of(update_rev), rolling=rolling,
                       partition=partition)
        templates = {meta.name_of(current_rev): history.template_of(current_rev),
                     meta.name_of(update_rev): history.template_of(update_rev)}
        results = await asyncio.gather(
            *(self._do(sts, a, by_ordinal, templates) for a in actions), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r

    async def _do(self, sts: Obj, action: Action, by_ordinal: dict[int, Obj],
                  templates: dict[str, Obj]) -> None:
        if action.verb == "create":
            await self._create(sts, action.ordinal, action.revision, templates[action.revision])
        else:
            await self._delete(sts, by_ordinal[action.ordinal], action.why)

    async def _create(self, sts: Obj, ordinal: int, revision: str, template: Obj) -> None:
        pod = identity.new_pod(sts, template, ordinal, revision)
        name = meta.name_of(pod)
        set_name = meta.name_of(sts)
        for claim in identity.claims_for(sts, ordinal):
            await self._ensure_claim(sts, claim, name)
        try:
            await self.client.create(PODS, pod, namespace=meta.namespace_of(sts))
        except ApiError as e:
            if e.code == 409:
                return  # our cache lags: it exists
            await self.recorder.event(sts, WARNING, "FailedCreate",
                                      f"create Pod {name} in StatefulSet {set_name} failed "
                                      f"error: {e.message}")
            raise
        log.info("created stateful pod set=%s pod=%s revision=%s", sts_key(sts), name, revision)
        await self.recorder.event(sts, NORMAL, "SuccessfulCreate",
                                  f"create Pod {name} in StatefulSet {set_name} successful")

    async def _ensure_claim(self, sts: Obj, claim: Obj, pod_name: str) -> None:
        ns, name = meta.namespace_of(sts), meta.name_of(claim)
        if self.claims.get(ns, name) is not None:
            return
        try:
            await self.client.create(PVCS, claim, namespace=ns)
        except ApiError as e:
            if e.code == 409:
                return
            await self.recorder.event(sts, WARNING, "FailedCreate",
                                      f"create Claim {name} for Pod {pod_name} in StatefulSet "
                                      f"{meta.name_of(sts)} failed error: {e.message}")
            raise
        await self.recorder.event(sts, NORMAL, "SuccessfulCreate",
                                  f"create Claim {name} Pod {pod_name} in StatefulSet "
                                  f"{meta.name_of(sts)} success")

    async def _delete(self, sts: Obj, pod: Obj, why: str) -> None:
        name = meta.name_of(pod)
        uid = (pod.get("metadata") or {}).get("uid")
        try:
            await self.client.delete(PODS, meta.namespace_of(pod), name,
                                     preconditions={"uid": uid} if uid else None)
        except ApiError as e:
            if e.code in (404, 409):
                return
            await self.recorder.event(sts, WARNING, "FailedDelete",
                                      f"delete Pod {name} in StatefulSet {meta.name_of(sts)} "
                                      f"failed error: {e.message}")
            raise
        log.info("deleted stateful pod set=%s pod=%s reason=%s", sts_key(sts), name, why)
        await self.recorder.event(sts, NORMAL, "SuccessfulDelete",
                                  f"delete Pod {name} in StatefulSet {meta.name_of(sts)} "
                                  "successful")

    async def _fix_identity(self, sts: Obj, pod: Obj, ordinal: int) -> None:
        name = identity.pod_name(sts, ordinal)
        patch = {"metadata": {"labels": {identity.POD_NAME_LABEL: name,
                                         identity.POD_INDEX_LABEL: str(ordinal)},
                              "resourceVersion": (pod.get("metadata") or {}).get(
                                  "resourceVersion")}}
        try:
            await self.client.patch(PODS, meta.namespace_of(pod), meta.name_of(pod), patch)
        except ApiError as e:
            if e.code not in (404, 409):
                raise

    async def _truncate_history(self, sts: Obj, pods: list[Obj], others: list[Obj],
                                current_rev: Obj, update_rev: Obj) -> None:
        limit = int((sts.get("spec") or {}).get("revisionHistoryLimit", 10) or 0)
        live = {meta.name_of(current_rev), meta.name_of(update_rev)} | {
            identity.pod_revision(p) for p in pods}
        await history.truncate(self.client, others, live, limit)

    # -- status --------------------------------------------------------------------------

    async def _update_status(self, key: str, sts: Obj, current_rev: Obj, update_rev: Obj,
                             collisions: int) -> None:
        min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
        now = datetime.now(UTC)
        pods = [p for p in ownership.controlled_by(self.pods, sts)
                if identity.ordinal_of(sts, p) is not None]
        cur_name, upd_name = meta.name_of(current_rev), meta.name_of(update_rev)
        count = ready = available = current = updated = 0
        for pod in pods:
            count += 1
            running = _phase(pod) == "Running"
            if running and is_pod_ready(pod):
                ready += 1
                if is_pod_available(pod, min_ready, now):
                    available += 1
            if _terminating(pod):
                continue
            revision = identity.pod_revision(pod)
            if revision == cur_name:
                current += 1
            if revision == upd_name:
                updated += 1
        status: Obj = {"observedGeneration": (sts.get("metadata") or {}).get("generation"),
                       "replicas": count, "readyReplicas": ready, "currentReplicas": current,
                       "updatedReplicas": updated, "currentRevision": cur_name,
                       "updateRevision": upd_name, "collisionCount": collisions,
                       "availableReplicas": available}
        strategy = ((sts.get("spec") or {}).get("updateStrategy") or {}).get("type",
                                                                              "RollingUpdate")
        if strategy == "RollingUpdate" and updated == count and ready == count:
            # The rollout is done: the update revision becomes the current one.
            status["currentReplicas"] = updated
            status["currentRevision"] = upd_name
        old = sts.get("status") or {}
        if old.get("conditions"):
            status["conditions"] = old["conditions"]
        for k in ("observedGeneration", "readyReplicas", "currentReplicas", "updatedReplicas",
                  "currentRevision", "updateRevision"):
            if not status.get(k):
                status.pop(k, None)
        if status == old:
            return
        await write_status(self.client, STATEFULSETS, sts, status)
