"""One sync of one Deployment: find or create the new ReplicaSet, scale the
ReplicaSets (rolling update, recreate, or a proportional resize), clean up
old revisions, and write the status (upstream's sync.go, rolling.go,
recreate.go, rollback.go and progress.go).

Every ReplicaSet write is a PUT of the cached object, so it fails with 409
when the cache is behind and the sync is retried on fresher data; the
Deployment's status is written the same way.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any

from timonel.api import meta
from timonel.api.client.events import NORMAL, WARNING
from timonel.api.errors import ApiError
from timonel.controller.deployment import status as st
from timonel.controller.deployment import util
from timonel.controller.pods import controller_ref

if TYPE_CHECKING:
    from timonel.controller.deployment.controller import DeploymentController

log = logging.getLogger(__name__)

Obj = dict[str, Any]
REPLICASETS = ("apps/v1", "ReplicaSet")
DEPLOYMENTS = ("apps/v1", "Deployment")


def _uid(obj: Obj | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("uid") or "")


def _annotations(obj: Obj) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


class Sync:
    def __init__(self, dc: DeploymentController, d: Obj, rss: list[Obj]) -> None:
        self.dc = dc
        self.d = copy.deepcopy(d)
        self.rss = rss
        self.key = f"{meta.namespace_of(d)}/{meta.name_of(d)}"

    # -- writes ------------------------------------------------------------------------

    async def write_status(self, status: Obj) -> None:
        self.d = await self.dc.client.update_status(DEPLOYMENTS, {**self.d, "status": status})

    async def event(self, type_: str, reason: str, message: str) -> None:
        await self.dc.recorder.event(self.d, type_, reason, message)

    def _replace(self, rs: Obj) -> None:
        self.rss = [rs if _uid(r) == _uid(rs) else r for r in self.rss]

    async def scale_replica_set(self, rs: Obj, size: int, operation: str = "") -> tuple[bool, Obj]:
        """Resize `rs` and stamp the Deployment's size on it (upstream's scaleReplicaSet)."""
        d = self.d
        desired, maximum = util.replicas(d), util.replicas(d) + util.max_surge(d)
        size_changed = util.replicas(rs) != size
        if not size_changed and not util.replicas_annotations_need_update(rs, desired, maximum):
            return False, rs
        old_size = util.replicas(rs)
        new = copy.deepcopy(rs)
        new["spec"]["replicas"] = size
        util.set_replicas_annotations(new, desired, maximum)
        updated = await self.dc.client.update(REPLICASETS, new)
        self._replace(updated)
        if size_changed:
            operation = operation or ("up" if old_size < size else "down")
            log.info("scaled replicaset deployment=%s replicaset=%s from=%d to=%d", self.key,
                     meta.name_of(rs), old_size, size)
            await self.event(NORMAL, "ScalingReplicaSet",
                             f"Scaled {operation} replica set {meta.name_of(rs)} from {old_size} "
                             f"to {size}")
        return size_changed, updated

    async def scale_and_record(self, rs: Obj, size: int, operation: str = "") -> bool:
        """Resize only if the size differs (upstream's scaleReplicaSetAndRecordEvent)."""
        if util.replicas(rs) == size:
            return False
        scaled, _ = await self.scale_replica_set(rs, size, operation)
        return scaled

    # -- the new ReplicaSet ----------------------------------------------------------------

    async def get_all_and_sync_revision(self, create: bool) -> tuple[Obj | None, list[Obj]]:
        old = util.find_old_replica_sets(self.d, self.rss)
        new = await self.get_new_replica_set(old, create)
        return new, [rs for rs in util.find_old_replica_sets(self.d, self.rss)
                     if new is None or _uid(rs) != _uid(new)]

    async def _set_deployment_revision(self, rev: str) -> None:
        if _annotations(self.d).get(util.REVISION) == rev:
            return
        # Upstream writes it along with the status; here the status
        # subresource keeps metadata, so it is a patch of its own.
        self.d = await self.dc.client.patch(
            DEPLOYMENTS, meta.namespace_of(self.d), meta.name_of(self.d),
            {"metadata": {"annotations": {util.REVISION: rev}}})

    async def get_new_replica_set(self, old: list[Obj], create: bool) -> Obj | None:
        d = self.d
        existing = util.find_new_replica_set(d, self.rss)
        new_revision = util.max_revision(old) + 1
        if existing is not None:
            rs = copy.deepcopy(existing)
            before = util.revision(existing)
            changed = util.set_new_replica_set_annotations(d, rs, new_revision, True)
            mrs = (d.get("spec") or {}).get("minReadySeconds") or 0
            if changed or ((rs.get("spec") or {}).get("minReadySeconds") or 0) != mrs:
                rs["spec"]["minReadySeconds"] = mrs
                updated = await self.dc.client.update(REPLICASETS, rs)
                self._replace(updated)
                if 0 < before < util.revision(updated):
                    # The template went back to an older ReplicaSet's: a rollback.
                    await self.event(NORMAL, "DeploymentRollback",
                                     f'Rolled back deployment "{meta.name_of(d)}" to revision '
                                     f"{before}")
                return updated
            await self._set_deployment_revision(_annotations(rs).get(util.REVISION, ""))
            if st.has_progress_deadline(self.d) and \
                    st.get_condition(self.d.get("status") or {}, st.PROGRESSING) is None:
                status = copy.deepcopy(self.d.get("status") or {})
                st.set_condition(status, st.new_condition(
                    st.PROGRESSING, "True", st.FOUND_NEW_RS,
                    f'Found new replica set "{meta.name_of(rs)}"'))
                await self.write_status(status)
            return rs
        if not create:
            return None
        return await self._create_new_replica_set(old, new_revision)

    async def _create_new_replica_set(self, old: list[Obj], new_revision: int) -> Obj | None:
        d = self.d
        template = copy.deepcopy(util.template_of(d))
        collisions = (d.get("status") or {}).get("collisionCount")
        pod_hash = util.compute_hash(template, collisions)
        template.setdefault("metadata", {})
        template["metadata"]["labels"] = {**(template["metadata"].get("labels") or {}),
                                          util.POD_TEMPLATE_HASH: pod_hash}
        selector = copy.deepcopy((d.get("spec") or {}).get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}),
                                   util.POD_TEMPLATE_HASH: pod_hash}
        spec: Obj = {"replicas": 0, "selector": selector, "template": template}
        if (d.get("spec") or {}).get("minReadySeconds"):
            spec["minReadySeconds"] = d["spec"]["minReadySeconds"]
        rs: Obj = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                   "metadata": {"name": f"{meta.name_of(d)}-{pod_hash}",
                                "namespace": meta.namespace_of(d),
                                "labels": dict(template["metadata"]["labels"]),
                                "ownerReferences": [controller_ref(d)]},
                   "spec": spec}
        size = util.new_rs_new_replicas(d, [*old, rs], rs)
        rs["spec"]["replicas"] = size
        util.set_new_replica_set_annotations(d, rs, new_revision, False)
        exists = False
        try:
            created = await self.dc.client.create(REPLICASETS, rs)
        except ApiError as e:
            if e.code == 409:
                # A slow cache, or a hash collision with someone else's ReplicaSet.
                found = self.dc.rs_informer.get(meta.namespace_of(d), meta.name_of(rs))
                if found is None:
                    found = await self.dc.client.get(REPLICASETS, meta.namespace_of(d),
                                                     meta.name_of(rs))
                ref = (found.get("metadata") or {}).get("ownerReferences") or []
                ours = any(r.get("controller") and r.get("uid") == _uid(d) for r in ref)
                if ours and util.equal_ignore_hash(util.template_of(d),
                                                   util.template_of(found)):
                    created, exists = found, True
                else:
                    status = copy.deepcopy(d.get("status") or {})
                    status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
                    await self.write_status(status)
                    log.info("hash collision, bumped collisionCount deployment=%s count=%d",
                             self.key, status["collisionCount"])
                    raise
            elif e.code == 403 and "being terminated" in e.message:
                return None
            else:
                msg = f'Failed to create new replica set "{meta.name_of(rs)}": {e.message}'
                if st.has_progress_deadline(d):
                    status = copy.deepcopy(d.get("status") or {})
                    st.set_condition(status, st.new_condition(st.PROGRESSING, "False",
                                                              st.FAILED_RS_CREATE, msg))
                    try:
                        await self.write_status(status)
                    except ApiError:
                        pass
                await self.event(WARNING, st.FAILED_RS_CREATE, msg)
                raise
        self.rss = [*self.rss, created] if not exists else self.rss
        if not exists:
            log.info("created replicaset deployment=%s replicaset=%s replicas=%d", self.key,
                     meta.name_of(created), size)
            if size > 0:
                await self.event(NORMAL, "ScalingReplicaSet",
                                 f"Scaled up replica set {meta.name_of(created)} from 0 to {size}")
        await self._set_deployment_revision(str(new_revision))
        if not exists and st.has_progress_deadline(self.d):
            status = copy.deepcopy(self.d.get("status") or {})
            st.set_condition(status, st.new_condition(
                st.PROGRESSING, "True", st.NEW_REPLICA_SET,
                f'Created new replica set "{meta.name_of(created)}"'))
            await self.write_status(status)
        return created

    # -- scaling without a rollout ------------------------------------------------------------

    async def is_scaling_event(self) -> bool:
        new, old = await self.get_all_and_sync_revision(False)
        for rs in util.active_replica_sets([*old, new]):
            desired = util.desired_replicas_annotation(rs)
            if desired is not None and desired != util.replicas(self.d):
                return True
        return False

    async def scale(self, new: Obj | None, old: list[Obj]) -> None:
        """Resize to spec.replicas, in proportion across the active
        ReplicaSets when a rollout is under way (upstream's scale)."""
        d = self.d
        target = self._active_or_latest(new, old)
        if target is not None:
            await self.scale_and_record(target, util.replicas(d))
            return
        if util.is_saturated(d, new):
            for rs in util.active_replica_sets(old):
                await self.scale_and_record(rs, 0)
            return
        if not util.is_rolling_update(d):
            return
        active = util.active_replica_sets([*old, new])
        allowed = util.replicas(d) + util.max_surge(d) if util.replicas(d) > 0 else 0
        to_add = allowed - util.spec_replicas_sum(active)
        operation = ""
        if to_add > 0:
            # Biggest first; newer first among equals.
            active = sorted(reversed(util.by_creation(active)), key=lambda r: -util.replicas(r))
            operation = "up"
        elif to_add < 0:
            active = sorted(util.by_creation(active), key=lambda r: -util.replicas(r))
            operation = "down"
        added = 0
        sizes: dict[str, int] = {}
        for rs in active:
            if to_add:
                share = util.proportion(rs, d, to_add, added)
                sizes[_uid(rs)] = util.replicas(rs) + share
                added += share
            else:
                sizes[_uid(rs)] = util.replicas(rs)
        for i, rs in enumerate(active):
            if i == 0 and to_add:
                # Leftovers go to the largest ReplicaSet.
                sizes[_uid(rs)] = max(sizes[_uid(rs)] + to_add - added, 0)
            await self.scale_replica_set(rs, sizes[_uid(rs)], operation)

    @staticmethod
    def _active_or_latest(new: Obj | None, old: list[Obj]) -> Obj | None:
        if new is None and not old:
            return None
        newest_first = list(reversed(util.by_creation(old)))
        active = util.active_replica_sets([*newest_first, new])
        if not active:
            return new if new is not None else newest_first[0]
        return active[0] if len(active) == 1 else None

    # -- clean-up and status ------------------------------------------------------------------

    async def cleanup(self, old: list[Obj]) -> None:
        """Delete old ReplicaSets beyond revisionHistoryLimit, oldest
        revisions first, only when they are empty and settled."""
        limit = (self.d.get("spec") or {}).get("revisionHistoryLimit")
        if limit is None:
            return
        alive = [rs for rs in old if not (rs.get("metadata") or {}).get("deletionTimestamp")]
        diff = len(alive) - int(limit)
        if diff <= 0:
            return
        for rs in util.by_revision(alive)[:diff]:
            rst = rs.get("status") or {}
            generation = int((rs.get("metadata") or {}).get("generation") or 0)
            if int(rst.get("replicas") or 0) != 0 or util.replicas(rs) != 0 or \
                    generation > int(rst.get("observedGeneration") or 0):
                continue
            log.info("deleting old replicaset deployment=%s replicaset=%s", self.key,
                     meta.name_of(rs))
            try:
                await self.dc.client.delete(REPLICASETS, meta.namespace_of(rs), meta.name_of(rs),
                                            preconditions={"uid": _uid(rs)})
            except ApiError as e:
                if e.code not in (404, 409):
                    raise

    async def sync_status(self, all_rss: list[Obj | None], new: Obj | None) -> None:
        status = st.calculate_status(all_rss, new, self.d)
        if status != (self.d.get("status") or {}):
            await self.write_status(status)

    async def sync_rollout_status(self, all_rss: list[Obj | None], new: Obj | None) -> None:
        status = st.rollout_status(all_rss, new, self.d, st.replica_failure(all_rss, new))
        if status == (self.d.get("status") or {}):
            after = st.stuck_requeue_after(self.d, status)
            if after is not None:
                if after == 0:
                    self.dc.queue.add_rate_limited(self.key)
                else:
                    self.dc.queue.add_after(self.key, after)
            return
        await self.write_status(status)

    # -- strategies ---------------------------------------------------------------------------

    async def sync(self) -> None:
        """Paused or resized: scale without starting a rollout."""
        new, old = await self.get_all_and_sync_revision(False)
        await self.scale(new, old)
        new, old = self._refresh(new, old)
        if (self.d.get("spec") or {}).get("paused") and \
                util.ROLLBACK_TO not in _annotations(self.d):
            await self.cleanup(old)
        await self.sync_status([*old, new], new)

    def _refresh(self, new: Obj | None, old: list[Obj]) -> tuple[Obj | None, list[Obj]]:
        """The same ReplicaSets as written by this sync."""
        return (self._fresh(new) if new is not None else None, [self._fresh(rs) for rs in old])

    def _fresh(self, rs: Obj) -> Obj:
        for r in self.rss:
            if _uid(r) == _uid(rs):
                return r
        return rs

    async def rolling(self) -> None:
        new, old = await self.get_all_and_sync_revision(True)
        if new is None:
            return
        if await self.reconcile_new(new, old):
            new, old = self._refresh(new, old)
            await self.sync_rollout_status([*old, new], new)
            return
        new, old = self._fresh(new), [self._fresh(rs) for rs in old]
        if await self.reconcile_old(new, old):
            new, old = self._refresh(new, old)
            await self.sync_rollout_status([*old, new], new)
            return
        if util.deployment_complete(self.d, self.d.get("status") or {}):
            await self.cleanup(old)
        await self.sync_rollout_status([*old, new], new)

    async def reconcile_new(self, new: Obj, old: list[Obj]) -> bool:
        want = util.replicas(self.d)
        if util.replicas(new) == want:
            return False
        if util.replicas(new) > want:
            return await self.scale_and_record(new, want, "down")
        size = util.new_rs_new_replicas(self.d, [*old, new], new)
        return await self.scale_and_record(new, size, "up")

    async def reconcile_old(self, new: Obj, old: list[Obj]) -> bool:
        """Scale old ReplicaSets down as far as availability allows,
        unhealthy replicas first (upstream's reconcileOldReplicaSets)."""
        d = self.d
        active_old = util.active_replica_sets(old)
        if util.spec_replicas_sum(active_old) == 0:
            return False
        all_pods = util.spec_replicas_sum([*active_old, new])
        min_available = util.replicas(d) - util.max_unavailable(d)
        new_unavailable = util.replicas(new) - util.available_lower_bound(new)
        max_scaled_down = all_pods - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        cleaned = await self._cleanup_unhealthy(active_old, max_scaled_down)
        active_old = [self._fresh(rs) for rs in active_old]
        new = self._fresh(new)
        scaled = await self._scale_down_old_for_rolling([*active_old, new], active_old)
        return cleaned + scaled > 0

    async def _cleanup_unhealthy(self, old: list[Obj], max_cleanup: int) -> int:
        total = 0
        for rs in util.by_creation(old):
            if total >= max_cleanup:
                break
            available = int((rs.get("status") or {}).get("availableReplicas") or 0)
            if util.replicas(rs) == 0 or util.replicas(rs) == available:
                continue
            count = min(max_cleanup - total, util.replicas(rs) - available)
            if count <= 0:
                continue
            await self.scale_and_record(rs, util.replicas(rs) - count)
            total += count
        return total

    async def _scale_down_old_for_rolling(self, all_rss: list[Obj], old: list[Obj]) -> int:
        min_available = util.replicas(self.d) - util.max_unavailable(self.d)
        available = sum(util.available_lower_bound(rs) for rs in all_rss)
        if available <= min_available:
            return 0
        total, target = 0, available - min_available
        for rs in util.by_creation(old):
            if total >= target:
                break
            if util.replicas(rs) == 0:
                continue
            count = min(util.replicas(rs), target - total)
            await self.scale_and_record(rs, util.replicas(rs) - count)
            total += count
        return total

    async def recreate(self, pods_by_rs: dict[str, list[Obj]]) -> None:
        new, old = await self.get_all_and_sync_revision(False)
        scaled = False
        for rs in util.active_replica_sets(old):
            scaled = await self.scale_and_record(rs, 0) or scaled
        new, old = self._refresh(new, old)
        if scaled or self._old_pods_running(new, old, pods_by_rs):
            await self.sync_rollout_status([*old, new], new)
            return
        if new is None:
            new, old = await self.get_all_and_sync_revision(True)
            if new is None:
                return
        await self.scale_and_record(new, util.replicas(self.d))
        new, old = self._refresh(new, old)
        if util.deployment_complete(self.d, self.d.get("status") or {}):
            await self.cleanup(old)
        await self.sync_rollout_status([*old, new], new)

    @staticmethod
    def _old_pods_running(new: Obj | None, old: list[Obj], pods_by_rs: dict[str, list[Obj]]) -> bool:
        if util.actual_replicas_sum(old) > 0:
            return True
        for rs_uid, pods in pods_by_rs.items():
            if new is not None and rs_uid == _uid(new):
                continue
            for pod in pods:
                if (pod.get("status") or {}).get("phase") not in ("Failed", "Succeeded"):
                    return True
        return False

    async def rollback(self) -> None:
        """The extensions/v1beta1 rollback request kept as an annotation:
        copy the template of the wanted revision back into the Deployment."""
        new, old = await self.get_all_and_sync_revision(True)
        all_rss = [*old, *([new] if new is not None else [])]
        raw = _annotations(self.d).get(util.ROLLBACK_TO, "")
        try:
            to = int(raw)
        except ValueError:
            to = 0
        if to == 0:
            to = util.last_revision(all_rss)
            if to == 0:
                await self.event(WARNING, "DeploymentRollbackRevisionNotFound",
                                 "Unable to find last revision.")
                await self._clear_rollback_to(None)
                return
        for rs in all_rss:
            if util.revision(rs) != to:
                continue
            if util.equal_ignore_hash(util.template_of(self.d), util.template_of(rs)):
                await self.event(WARNING, "DeploymentRollbackTemplateUnchanged",
                                 "The rollback revision contains the same template as current "
                                 f'deployment "{meta.name_of(self.d)}"')
                await self._clear_rollback_to(None)
                return
            # The DeploymentRollback event comes when the next sync takes
            # this ReplicaSet back as the new one (as after `rollout undo`).
            await self._clear_rollback_to(rs)
            return
        await self.event(WARNING, "DeploymentRollbackRevisionNotFound",
                         "Unable to find the revision to rollback to.")
        await self._clear_rollback_to(None)

    async def _clear_rollback_to(self, rs: Obj | None) -> None:
        d = copy.deepcopy(self.d)
        annotations = dict(_annotations(d))
        annotations.pop(util.ROLLBACK_TO, None)
        if rs is not None:
            d["spec"]["template"] = util.without_hash(util.template_of(rs))
            annotations = {k: v for k, v in annotations.items() if k in util.ANNOTATIONS_TO_SKIP}
            annotations.update({k: v for k, v in _annotations(rs).items()
                                if k not in util.ANNOTATIONS_TO_SKIP})
        d["metadata"]["annotations"] = annotations
        self.d = await self.dc.client.update(DEPLOYMENTS, d)


def selects_everything(d: Obj) -> bool:
    sel = (d.get("spec") or {}).get("selector")
    return isinstance(sel, dict) and not sel.get("matchLabels") and \
        not sel.get("matchExpressions")
