"""The DaemonSet controller: one pod on every eligible node, rolled to a
new template node by node.

Each sync: record the template as a ControllerRevision (its hash labels the
pods), create a pod for each node that should run one and has none, delete
pods from nodes that no longer qualify (and extra or failed ones), replace
old pods within maxUnavailable/maxSurge, prune history, write status.
Pods are pinned to their node through node affinity on `metadata.name`,
as upstream, and the scheduler binds them.
"""

from __future__ import annotations

import copy
import logging
import time
from datetime import UTC, datetime
from typing import Any

from timonel.api import meta
from timonel.api.client import WorkQueue, run_workers
from timonel.api.client.events import WARNING
from timonel.api.errors import ApiError
from timonel.api.selectors import from_label_selector_dict, matches
from timonel.controller import history, ownership
from timonel.controller.context import ControllerContext
from timonel.controller.daemonset import placement, rollout
from timonel.controller.expectations import UIDTrackingExpectations
from timonel.controller.pods import (
    PODS,
    controller_of,
    create_pod,
    delete_pod,
    is_pod_available,
    is_pod_ready,
    seconds_until_available,
    slow_start_batch,
)
from timonel.controller.status import write_status

log = logging.getLogger(__name__)

DAEMONSETS = ("apps/v1", "DaemonSet")
NODES = ("v1", "Node")
Obj = dict[str, Any]
TEMPLATE_GENERATION_LABEL = "pod-template-generation"
# Upstream's BurstReplicas: at most this many creates or deletes per sync.
BURST = 250
FAILED_BACKOFF_BASE, FAILED_BACKOFF_MAX = 1.0, 900.0


def ds_key(ds: Obj) -> str:
    return f"{meta.namespace_of(ds)}/{meta.name_of(ds)}"


def _pod_key(pod: Obj) -> str:
    return f"{meta.namespace_of(pod)}/{meta.name_of(pod)}"


def _created(pod: Obj) -> tuple[str, str]:
    md = pod.get("metadata") or {}
    return str(md.get("creationTimestamp") or ""), str(md.get("name") or "")


def _node_view(node: Obj) -> tuple[Any, ...]:
    """What about a node decides where daemon pods run."""
    return (meta.labels_of(node), (node.get("spec") or {}).get("taints"),
            (node.get("spec") or {}).get("unschedulable"))


class DaemonSetController:
    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.recorder = ctx.recorder
        self.dss = ctx.informers.informer(DAEMONSETS)
        self.pods = ctx.informers.informer(PODS)
        self.nodes = ctx.informers.informer(NODES)
        self.revisions = ctx.informers.informer(history.REVISIONS)
        ownership.ensure_ownership_indexes(self.pods)
        history.ensure_indexes(self.revisions)
        self.queue: WorkQueue[str] = WorkQueue(name="daemonset")
        self.expectations = UIDTrackingExpectations()
        # (daemonset key, node) -> (next delay, earliest retry on our clock)
        self.failed_backoff: dict[tuple[str, str], tuple[float, float]] = {}

    # -- events ----------------------------------------------------------------

    def register(self) -> None:
        self.dss.add_handler(lambda d: self.queue.add(ds_key(d)),
                             lambda o, n: self.queue.add(ds_key(n)),
                             self._ds_deleted)
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        self.nodes.add_handler(lambda n: self._enqueue_all(),
                               self._node_updated, lambda n: self._enqueue_all())
        self.revisions.add_handler(self._revision_changed,
                                   lambda o, n: self._revision_changed(n),
                                   self._revision_changed)

    def _ds_deleted(self, ds: Obj) -> None:
        self.expectations.delete(ds_key(ds))
        self.queue.add(ds_key(ds))

    def _enqueue_all(self) -> None:
        for ds in self.dss.list():
            self.queue.add(ds_key(ds))

    def _node_updated(self, old: Obj, new: Obj) -> None:
        if _node_view(old) != _node_view(new):
            self._enqueue_all()

    def _owner(self, obj: Obj, ref: Obj | None = None) -> Obj | None:
        ns = meta.namespace_of(obj)
        return ownership.resolve_controller(ref if ref is not None else controller_of(obj),
                                            "DaemonSet", lambda name: self.dss.get(ns, name))

    def _enqueue_matching(self, pod: Obj) -> None:
        for ds in self.dss.list(meta.namespace_of(pod)):
            try:
                sel = from_label_selector_dict((ds.get("spec") or {}).get("selector"))
            except ApiError:
                continue
            if matches(sel, meta.labels_of(pod)):
                self.queue.add(ds_key(ds))

    def _pod_added(self, pod: Obj) -> None:
        ds = self._owner(pod)
        if ds is None:
            if controller_of(pod) is None:
                self._enqueue_matching(pod)
            return
        key = ds_key(ds)
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            self.expectations.deletion_observed_of(key, _pod_key(pod))
        else:
            self.expectations.creation_observed(key)
        self.queue.add(key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        old_ref, new_ref = controller_of(old), controller_of(new)
        if old_ref != new_ref and old_ref is not None:
            prev = self._owner(old, old_ref)
            if prev is not None:
                self.queue.add(ds_key(prev))
        ds = self._owner(new)
        if ds is None:
            if new_ref is None:
                self._enqueue_matching(new)
            return
        if (new.get("metadata") or {}).get("deletionTimestamp"):
            self.expectations.deletion_observed_of(ds_key(ds), _pod_key(new))
        self.queue.add(ds_key(ds))

    def _pod_deleted(self, pod: Obj) -> None:
        ds = self._owner(pod)
        if ds is not None:
            self.expectations.deletion_observed_of(ds_key(ds), _pod_key(pod))
            self.queue.add(ds_key(ds))

    def _revision_changed(self, rev: Obj) -> None:
        ds = self._owner(rev)
        if ds is not None:
            self.queue.add(ds_key(ds))

    async def run(self) -> None:
        await run_workers(self.queue, self.sync, max(1, self.ctx.options.workers))

    # -- sync --------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        ds = self.dss.get(ns, name)
        if ds is None:
            self.expectations.delete(key)
            for k in [k for k in self.failed_backoff if k[0] == key]:
                del self.failed_backoff[k]
            return
        ds = copy.deepcopy(ds)
        try:
            selector = from_label_selector_dict((ds.get("spec") or {}).get("selector"))
        except ApiError as e:
            await self.recorder.event(ds, WARNING, "InvalidSelector",
                                      f"Invalid selector: {e.message}")
            return
        if not (ds.get("spec") or {}).get("selector", {}).get("matchLabels") and not (
                ds.get("spec") or {}).get("selector", {}).get("matchExpressions"):
            await self.recorder.event(ds, WARNING, "SelectingAll",
                                      "This daemon set is selecting all pods. A non-empty "
                                      "selector is required.")
            return
        if (ds.get("metadata") or {}).get("deletionTimestamp"):
            return
        nodes = self.nodes.list()
        hash_, old_revisions, current = await self._history(ds, selector)
        pods = await ownership.claim(
            self.client, PODS, ds, selector, ownership.candidates(self.pods, ds),
            can_adopt=ownership.owner_recheck(self.client, DAEMONSETS, ds))
        if self.expectations.satisfied(key):
            await self._manage(key, ds, nodes, pods, hash_)
            strategy = ((ds.get("spec") or {}).get("updateStrategy") or {}).get("type")
            if strategy == "RollingUpdate" and self.expectations.satisfied(key):
                await self._rolling_update(key, ds, nodes, pods, hash_)
            await self._cleanup_history(ds, pods, old_revisions, current)
        await self._update_status(key, ds, nodes, pods, hash_)

    def _node_pods(self, pods: list[Obj]) -> dict[str, list[Obj]]:
        out: dict[str, list[Obj]] = {}
        for pod in pods:
            node = placement.target_node(pod)
            if node:
                out.setdefault(node, []).append(pod)
        for v in out.values():
            v.sort(key=_created)
        return out

    async def _manage(self, key: str, ds: Obj, nodes: list[Obj], pods: list[Obj],
                      hash_: str) -> None:
        node_pods = self._node_pods(pods)
        surge, _ = rollout.surge_and_unavailable(ds, len(nodes))
        needing: list[str] = []
        to_delete: list[Obj] = []
        for node in nodes:
            name = meta.name_of(node)
            run, keep = placement.should_run(ds, node)
            on_node = node_pods.get(name, [])
            if run and not on_node:
                needing.append(name)
            elif run:
                live: list[Obj] = []
                for pod in on_node:
                    if (pod.get("metadata") or {}).get("deletionTimestamp"):
                        continue
                    phase = (pod.get("status") or {}).get("phase")
                    if phase in ("Failed", "Succeeded"):
                        if await self._failed_pod_may_go(key, ds, pod, name):
                            to_delete.append(pod)
                        continue
                    live.append(pod)
                to_delete.extend(self._extra_pods(live, hash_, surge > 0))
            elif not keep:
                to_delete.extend(p for p in on_node
                                 if not (p.get("metadata") or {}).get("deletionTimestamp"))
        await self._sync_nodes(key, ds, to_delete, needing, hash_)

    def _extra_pods(self, live: list[Obj], hash_: str, surge: bool) -> list[Obj]:
        """More than one live pod on a node: keep the oldest (or, while
        surging, the oldest new pod plus the oldest old one while the new
        one is not ready yet and the old one is)."""
        if len(live) <= 1:
            return []
        if not surge:
            return live[1:]
        new = [p for p in live if rollout.is_updated(p, hash_)]
        old = [p for p in live if not rollout.is_updated(p, hash_)]
        if new and old and not is_pod_ready(new[0]) and is_pod_ready(old[0]):
            return new[1:] + old[1:]
        if new:
            return new[1:] + old
        return old[1:]

    async def _failed_pod_may_go(self, key: str, ds: Obj, pod: Obj, node: str) -> bool:
        """A failed daemon pod is replaced with per-node backoff, so a pod
        that keeps failing does not spin."""
        now = time.monotonic()
        delay, not_before = self.failed_backoff.get((key, node), (FAILED_BACKOFF_BASE, 0.0))
        if now < not_before:
            self.queue.add_after(key, not_before - now)
            return False
        self.failed_backoff[(key, node)] = (min(delay * 2, FAILED_BACKOFF_MAX), now + delay)
        if (pod.get("status") or {}).get("phase") == "Failed":
            await self.recorder.event(ds, WARNING, "FailedDaemonPod",
                                      f"Found failed daemon pod {_pod_key(pod)} on node {node}, "
                                      "will try to kill it")
        return True

    def _new_pod_mutator(self, ds: Obj, node: str, hash_: str) -> Any:
        def mutate(pod: Obj) -> None:
            labels = pod["metadata"].setdefault("labels", {})
            labels[history.POD_REVISION_LABEL] = hash_
            labels[TEMPLATE_GENERATION_LABEL] = str((ds.get("metadata") or {}).get(
                "generation") or 1)
            spec = pod["spec"]
            placement.add_or_update_tolerations(spec, placement.daemon_tolerations(spec))
            placement.pin_to_node(spec, node)
        return mutate

    async def _sync_nodes(self, key: str, ds: Obj, to_delete: list[Obj], needing: list[str],
                          hash_: str) -> None:
        to_delete = to_delete[:BURST]
        needing = needing[:BURST]
        if not to_delete and not needing:
            return
        self.expectations.expect_deletions_of(key, [_pod_key(p) for p in to_delete])
        self.expectations.raise_(key, len(needing), 0)
        template = (ds.get("spec") or {}).get("template") or {}
        pending = iter(needing)

        async def create_one() -> None:
            node = next(pending)
            await create_pod(self.client, self.recorder, template, ds,
                             mutate=self._new_pod_mutator(ds, node, hash_))

        errors: list[BaseException] = []
        if needing:
            created, err = await slow_start_batch(len(needing), 1, create_one)
            for _ in range(len(needing) - created):
                self.expectations.creation_observed(key)
            if err is not None:
                errors.append(err)
        for pod in to_delete:
            try:
                if not await delete_pod(self.client, self.recorder, pod, ds):
                    self.expectations.deletion_observed_of(key, _pod_key(pod))
            except ApiError as e:
                self.expectations.deletion_observed_of(key, _pod_key(pod))
                errors.append(e)
        if errors:
            raise errors[0]

    async def _rolling_update(self, key: str, ds: Obj, nodes: list[Obj], pods: list[Obj],
                              hash_: str) -> None:
        # The pods as the cache has them now (manage may have changed nothing).
        live = ownership.controlled_by(self.pods, ds)
        node_pods = self._node_pods(live)
        desired = sum(1 for n in nodes if placement.should_run(ds, n)[0])
        surge, unavailable = rollout.surge_and_unavailable(ds, desired)
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        now = datetime.now(UTC)
        to_delete, new_nodes = rollout.plan(node_pods, hash_, surge, unavailable,
                                            lambda p: is_pod_available(p, min_ready, now))
        await self._sync_nodes(key, ds, to_delete, new_nodes, hash_)

    # -- history -------------------------------------------------------------------

    async def _history(self, ds: Obj, selector: Any) -> tuple[str, list[Obj], Obj]:
        """(hash of the current template, older revisions, the current revision)."""
        revisions = await history.owned_revisions(self.client, self.revisions, ds, DAEMONSETS,
                                                  selector)
        cur, old, used = await history.update_revision(self.client, ds, revisions,
                                                       hash_label=history.POD_REVISION_LABEL)
        if used != int((ds.get("status") or {}).get("collisionCount") or 0):
            ds.setdefault("status", {})["collisionCount"] = used
        hash_ = meta.labels_of(cur).get(history.POD_REVISION_LABEL) or \
            meta.labels_of(cur).get(history.HASH_LABEL) or ""
        return hash_, old, cur

    async def _cleanup_history(self, ds: Obj, pods: list[Obj], old: list[Obj],
                               current: Obj) -> None:
        limit = int((ds.get("spec") or {}).get("revisionHistoryLimit", 10) or 0)
        in_use = {meta.labels_of(p).get(history.POD_REVISION_LABEL) for p in pods}
        live = {meta.name_of(current)} | {
            meta.name_of(r) for r in old
            if meta.labels_of(r).get(history.POD_REVISION_LABEL) in in_use}
        await history.truncate(self.client, old, live, limit)

    # -- status ----------------------------------------------------------------------

    async def _update_status(self, key: str, ds: Obj, nodes: list[Obj], pods: list[Obj],
                             hash_: str) -> None:
        node_pods = self._node_pods(pods)
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        now = datetime.now(UTC)
        desired = current = misscheduled = ready = updated = available = 0
        requeue: float | None = None
        for node in nodes:
            run, _ = placement.should_run(ds, node)
            on_node = node_pods.get(meta.name_of(node), [])
            if run:
                desired += 1
                if on_node:
                    current += 1
                    pod = on_node[0]
                    if is_pod_ready(pod):
                        ready += 1
                        if is_pod_available(pod, min_ready, now):
                            available += 1
                        else:
                            wait = seconds_until_available(pod, min_ready, now)
                            if wait is not None:
                                requeue = wait if requeue is None else min(requeue, wait)
                    if rollout.is_updated(pod, hash_):
                        updated += 1
            elif on_node:
                misscheduled += 1
        status: Obj = {
            "currentNumberScheduled": current, "numberMisscheduled": misscheduled,
            "desiredNumberScheduled": desired, "numberReady": ready,
            "observedGeneration": (ds.get("metadata") or {}).get("generation"),
            "updatedNumberScheduled": updated, "numberAvailable": available,
            "numberUnavailable": desired - available,
        }
        old = ds.get("status") or {}
        if old.get("collisionCount"):
            status["collisionCount"] = old["collisionCount"]
        if old.get("conditions"):
            status["conditions"] = old["conditions"]
        for k in ("observedGeneration", "updatedNumberScheduled", "numberAvailable",
                  "numberUnavailable"):
            if not status.get(k):
                status.pop(k, None)
        if requeue is not None:
            self.queue.add_after(key, requeue + 0.1)
        if status == old:
            return
        await write_status(self.client, DAEMONSETS, ds, status)
