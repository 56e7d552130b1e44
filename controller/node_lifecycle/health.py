"""Node health: notice nodes whose kubelet went quiet, and taint them.

Every `node_monitor_period` each node's heartbeat is checked: a renewed
`kube-node-lease` Lease or a new Ready `lastHeartbeatTime` counts as a sign
of life, timed with this process's own clock (as upstream, so clock skew
between machines never marks a node dead). A node silent for longer than
`node_monitor_grace_period` gets Ready (and the pressure conditions)
`Unknown`; its pods are marked not ready.

Taints follow the conditions, level-triggered per node: NoSchedule taints
for every bad condition (TaintNodesByCondition) and one NoExecute taint,
`not-ready` for Ready=False or `unreachable` for Ready=Unknown, which the
taint eviction loop turns into pod deletions. When every node of every zone
is down the control plane is more likely cut off than the nodes dead, so
NoExecute taints are lifted and nobody is evicted (upstream's "master
disruption mode").
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from timonel.api import meta
from timonel.api.client import Informer, WorkQueue, run_workers
from timonel.api.errors import ApiError
from timonel.controller.context import ControllerContext
from timonel.controller.node_lifecycle import taints as tt
from timonel.controller.node_lifecycle.nodeutil import (
    LEASE_NAMESPACE,
    NODES,
    PODS,
    Obj,
    deep_copy,
    get_condition,
    pod_node,
    pods_on_node,
    ready_status,
    set_pod_condition,
)

log = logging.getLogger(__name__)

# Conditions the kubelet owns that go Unknown with it (NetworkUnavailable is
# owned by the network plugin, so it is left alone, as upstream).
KUBELET_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"
EXCLUDE_DISRUPTION_LABEL = "node.kubernetes.io/exclude-disruption"


@dataclass
class NodeHealth:
    probe: float          # our clock when the node last showed a sign of life
    heartbeat: str        # Ready lastHeartbeatTime last seen
    renew: str            # Lease renewTime last seen


def zone_key(node: Obj) -> str:
    labels = meta.labels_of(node)
    return f"{labels.get(REGION_LABEL, '')}:\x00:{labels.get(ZONE_LABEL, '')}"


def zone_state(ready_statuses: list[str | None], unhealthy_threshold: float = 0.55) -> str:
    """Upstream's ComputeZoneState: FullDisruption when no node is ready,
    PartialDisruption when more than two and at least the threshold share
    are not, else Normal."""
    not_ready = sum(1 for s in ready_statuses if s != "True")
    ready = len(ready_statuses) - not_ready
    if ready == 0 and not_ready > 0:
        return "FullDisruption"
    if not_ready > 2 and not_ready / len(ready_statuses) >= unhealthy_threshold:
        return "PartialDisruption"
    return "Normal"


def mark_conditions_unknown(node: Obj, now: str) -> bool:
    """Set the kubelet's conditions Unknown in place; True if Ready changed."""
    status = node.setdefault("status", {})
    conds = status.setdefault("conditions", [])
    created = (node.get("metadata") or {}).get("creationTimestamp") or now
    ready_changed = False
    for type_ in KUBELET_CONDITIONS:
        cond = get_condition(node, type_)
        if cond is None:
            conds.append({"type": type_, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                          "message": "Kubelet never posted node status.",
                          "lastHeartbeatTime": created, "lastTransitionTime": now})
            ready_changed |= type_ == "Ready"
        elif cond.get("status") != "Unknown":
            cond.update(status="Unknown", reason="NodeStatusUnknown",
                        message="Kubelet stopped posting node status.", lastTransitionTime=now)
            ready_changed |= type_ == "Ready"
    return ready_changed


class HealthMonitor:
    def __init__(self, ctx: ControllerContext, nodes: Informer, leases: Informer,
                 pods: Informer) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.nodes = nodes
        self.leases = leases
        self.pods = pods
        self.grace = ctx.options.node_monitor_grace_period
        self.startup_grace = max(ctx.options.node_startup_grace_period, self.grace)
        self.period = ctx.options.node_monitor_period
        self.health: dict[str, NodeHealth] = {}
        # All zones fully disrupted: NoExecute taints are lifted, none added.
        self.master_disruption = False
        # Each node's Ready status as the last health pass concluded.
        self.assessed: dict[str, str | None] = {}
        self.taint_queue: WorkQueue[str] = WorkQueue(name="node-taints")
        self.pod_queue: WorkQueue[tuple[str, str]] = WorkQueue(name="node-lifecycle-pods")

    def register(self) -> None:
        self.nodes.add_handler(self._node_added, self._node_updated, self._node_deleted)
        self.pods.add_handler(lambda p: self._pod_changed(None, p),
                              lambda o, n: self._pod_changed(o, n))

    def _node_added(self, node: Obj) -> None:
        self.taint_queue.add(meta.name_of(node))

    def _node_updated(self, old: Obj, new: Obj) -> None:
        relevant = (((old.get("status") or {}).get("conditions"), (old.get("spec") or {}).get(
            "unschedulable"), (old.get("spec") or {}).get("taints")) !=
            ((new.get("status") or {}).get("conditions"), (new.get("spec") or {}).get(
                "unschedulable"), (new.get("spec") or {}).get("taints")))
        if relevant:
            self.taint_queue.add(meta.name_of(new))

    async def _node_deleted(self, node: Obj) -> None:
        name = meta.name_of(node)
        if self.health.pop(name, None) is not None:
            await self.ctx.recorder.event(node, "Normal", "RemovingNode",
                                          f"Node {name} event: Removing Node {name} from "
                                          "Controller")

    def _pod_changed(self, old: Obj | None, new: Obj) -> None:
        node = pod_node(new)
        if node and (old is None or pod_node(old) != node):
            self.pod_queue.add((meta.namespace_of(new), meta.name_of(new)))

    async def run(self) -> None:
        workers = max(1, self.ctx.options.workers)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(run_workers(self.taint_queue, self.sync_taints, workers))
            tg.create_task(run_workers(self.pod_queue, self.sync_pod, 2))
            tg.create_task(self._monitor_loop())

    async def _monitor_loop(self) -> None:
        while True:
            try:
                await self.monitor()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("node health pass failed")
            await asyncio.sleep(self.period)

    # -- health ----------------------------------------------------------------

    def _observe(self, node: Obj, now: float) -> NodeHealth:
        """Update what we know of a node's liveness from its status and Lease."""
        name = meta.name_of(node)
        ready = get_condition(node, "Ready")
        heartbeat = str((ready or {}).get("lastHeartbeatTime") or "")
        h = self.health.get(name)
        if h is None:
            # First sight (or a restart): give the node a full grace period.
            h = self.health[name] = NodeHealth(probe=now, heartbeat=heartbeat, renew="")
        elif heartbeat != h.heartbeat:
            h.heartbeat, h.probe = heartbeat, now
        lease = self.leases.get(LEASE_NAMESPACE, name)
        renew = str(((lease or {}).get("spec") or {}).get("renewTime") or "")
        if renew and renew != h.renew:
            if h.renew:
                h.probe = now
            h.renew = renew
        return h

    async def monitor(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        nodes = self.nodes.list()
        sem = asyncio.Semaphore(8)
        assessed: dict[str, str | None] = {}

        async def one(node: Obj) -> None:
            name = meta.name_of(node)
            async with sem:
                try:
                    assessed[name] = await self.check_node(node, now)
                except (ApiError, ConnectionError) as e:
                    assessed[name] = ready_status(node)
                    log.warning("node health update failed node=%s err=%s", name, e)

        await asyncio.gather(*(one(n) for n in nodes))
        self._update_disruption(nodes, assessed)
        # NoExecute taints follow what this pass concluded, after the
        # disruption check saw every node's new state together.
        self.assessed = assessed
        for name in assessed:
            self.taint_queue.add(name)

    async def check_node(self, node: Obj, now: float) -> str | None:
        """Mark a silent node's conditions Unknown; returns its Ready status."""
        name = meta.name_of(node)
        if name not in self.health:
            await self.ctx.recorder.event(node, "Normal", "RegisteredNode",
                                          f"Node {name} event: Registered Node {name} in "
                                          "Controller")
        h = self._observe(node, now)
        grace = self.grace if get_condition(node, "Ready") is not None else self.startup_grace
        observed = ready_status(node)
        if now <= h.probe + grace:
            return observed
        for _ in range(3):
            fresh = deep_copy(node)
            if not mark_conditions_unknown(fresh, meta.now()):
                return observed
            try:
                await self.client.update_status(NODES, fresh)
                break
            except ApiError as e:
                if e.code == 404:
                    return observed
                if e.code != 409:
                    raise
                node = await self.client.get(NODES, "", name)
        else:
            return ready_status(node)
        log.info("node stopped posting status node=%s silent_for=%.1fs", name, now - h.probe)
        if observed == "True":
            await self.ctx.recorder.event(node, "Normal", "NodeNotReady",
                                          f"Node {name} status is now: NodeNotReady")
            await self.mark_pods_not_ready(name)
        return "Unknown"

    async def mark_pods_not_ready(self, node_name: str) -> None:
        for pod in pods_on_node(self.pods, node_name):
            await self.mark_pod_not_ready(pod)

    async def mark_pod_not_ready(self, pod: Obj) -> None:
        ready = get_condition(pod, "Ready")
        if ready is None or ready.get("status") == "False":
            return
        fresh = deep_copy(pod)
        set_pod_condition(fresh, {"type": "Ready", "status": "False"}, meta.now())
        try:
            await self.client.update_status(PODS, fresh)
        except ApiError as e:
            if e.code == 404:
                return
            raise
        await self.ctx.recorder.event(pod, "Warning", "NodeNotReady", "Node is not ready")

    async def sync_pod(self, key: tuple[str, str]) -> None:
        """A pod newly bound to a node that is not ready is marked not ready."""
        pod = self.pods.get(*key)
        if pod is None:
            return
        node = self.nodes.get("", pod_node(pod))
        if node is None or meta.name_of(node) not in self.health:
            return
        status = ready_status(node)
        if status is not None and status != "True":
            await self.mark_pod_not_ready(pod)

    def _update_disruption(self, nodes: list[Obj], assessed: dict[str, str | None]) -> None:
        zones: dict[str, list[str | None]] = {}
        for node in nodes:
            if EXCLUDE_DISRUPTION_LABEL in meta.labels_of(node):
                continue
            zones.setdefault(zone_key(node), []).append(assessed.get(meta.name_of(node)))
        states = [zone_state(v) for v in zones.values()]
        disrupted = bool(states) and all(s == "FullDisruption" for s in states)
        if disrupted == self.master_disruption:
            return
        if disrupted:
            log.warning("every node is not ready: entering master disruption mode, "
                        "no pods will be evicted")
        else:
            log.info("some nodes are ready again: leaving master disruption mode")
            # Everyone gets a fresh grace period, as upstream.
            now = asyncio.get_running_loop().time()
            for h in self.health.values():
                h.probe = now
        self.master_disruption = disrupted

    # -- taints ------------------------------------------------------------------

    async def sync_taints(self, name: str) -> None:
        node = self.nodes.get("", name)
        if node is None:
            return
        # NoExecute from the last health pass (None until the first one ran,
        # so nothing is added or lifted before that).
        status = self.assessed.get(name)
        # A node that never posted a Ready condition has not started: its
        # NoExecute taints are left as they are.
        manage_ne = name in self.assessed and (status is not None or self.master_disruption)
        no_execute = None if self.master_disruption else tt.wanted_no_execute(status)
        current: list[dict[str, Any]] = list((node.get("spec") or {}).get("taints") or [])
        new = tt.reconcile_taints(current, no_schedule=tt.condition_taints(node),
                                  no_execute_taint=no_execute, manage_no_execute=manage_ne,
                                  now=meta.now())
        if new is None:
            return
        fresh = deep_copy(node)
        fresh.setdefault("spec", {})["taints"] = new
        try:
            await self.client.update(NODES, fresh)
        except ApiError as e:
            if e.code == 404:
                return
            raise
        log.info("node taints updated node=%s taints=%s", name,
                 ",".join(f"{t.get('key')}:{t.get('effect')}" for t in new) or "-")
