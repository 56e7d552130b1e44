"""NodeResourcesFit (requests fit what is left of allocatable; scoring by
LeastAllocated, MostAllocated or RequestedToCapacityRatio) and
NodeResourcesBalancedAllocation (prefer nodes whose cpu and memory usage
stay in proportion).

Scoring counts containers that request nothing as 100m cpu / 200Mi memory
(upstream's non-zero requests) so that such pods still spread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from timonel.scheduler.framework import (
    MAX_NODE_SCORE,
    NODE_ADD,
    NODE_UPDATE,
    POD_DELETE,
    POD_UPDATE,
    UNRESOLVABLE,
    UNSCHEDULABLE,
    CycleState,
    Plugin,
    Status,
)
from timonel.scheduler.nodeinfo import NodeInfo
from timonel.scheduler.podinfo import PodInfo
from timonel.scheduler.resources import CPU, MEMORY

FIT = "NodeResourcesFit"
BALANCED = "NodeResourcesBalancedAllocation"
TOO_MANY_PODS = "Too many pods"

LEAST_ALLOCATED = "LeastAllocated"
MOST_ALLOCATED = "MostAllocated"
REQUESTED_TO_CAPACITY_RATIO = "RequestedToCapacityRatio"
DEFAULT_RESOURCES = [(CPU, 1), (MEMORY, 1)]


def fit_status(pod: PodInfo, node: NodeInfo, ignored: frozenset[str] = frozenset()) -> Status | None:
    """Every resource the node lacks for the pod, as upstream's fitsRequest."""
    alloc, used, req = node.allocatable, node.requested, pod.requests
    reasons: list[str] = []
    unresolvable = False
    if len(node.pods) + 1 > alloc.pods:
        reasons.append(TOO_MANY_PODS)
    if req.milli_cpu and req.milli_cpu > alloc.milli_cpu - used.milli_cpu:
        reasons.append("Insufficient cpu")
        unresolvable |= req.milli_cpu > alloc.milli_cpu
    if req.memory and req.memory > alloc.memory - used.memory:
        reasons.append("Insufficient memory")
        unresolvable |= req.memory > alloc.memory
    if req.ephemeral and req.ephemeral > alloc.ephemeral - used.ephemeral:
        reasons.append("Insufficient ephemeral-storage")
        unresolvable |= req.ephemeral > alloc.ephemeral
    for name, q in req.scalar.items():
        if q and name not in ignored:
            have = alloc.scalar.get(name, 0)
            if q > have - used.scalar.get(name, 0):
                reasons.append(f"Insufficient {name}")
                unresolvable |= q > have
    if not reasons:
        return None
    # Preemption cannot help a pod that wants more than the whole node has.
    return Status(UNRESOLVABLE if unresolvable else UNSCHEDULABLE, reasons)


def _alloc_and_requested(pod: PodInfo, node: NodeInfo, name: str,
                         non_zero: bool) -> tuple[int, int]:
    if name == CPU:
        if non_zero:
            return node.allocatable.milli_cpu, node.non_zero_cpu + pod.non_zero_cpu
        return node.allocatable.milli_cpu, node.requested.milli_cpu + pod.requests.milli_cpu
    if name == MEMORY:
        if non_zero:
            return node.allocatable.memory, node.non_zero_mem + pod.non_zero_mem
        return node.allocatable.memory, node.requested.memory + pod.requests.memory
    return node.allocatable.get(name), node.requested.get(name) + pod.requests.get(name)


def least_allocated(requested: int, capacity: int) -> int:
    if capacity == 0 or requested > capacity:
        return 0
    return (capacity - requested) * MAX_NODE_SCORE // capacity


def most_allocated(requested: int, capacity: int) -> int:
    if capacity == 0:
        return 0
    return min(requested, capacity) * MAX_NODE_SCORE // capacity


def broken_linear(shape: list[tuple[int, int]]) -> Callable[[int], int]:
    """RequestedToCapacityRatio's function of utilization (0..100), points
    scaled from the configured 0..10 scores to 0..100."""
    pts = [(u, s * MAX_NODE_SCORE // 10) for u, s in shape]

    def f(p: int) -> int:
        for i, (u, s) in enumerate(pts):
            if p <= u:
                if i == 0:
                    return pts[0][1]
                u0, s0 = pts[i - 1]
                return s0 + (s - s0) * (p - u0) // (u - u0)
        return pts[-1][1]
    return f


def _weighted(resources: list[tuple[str, int]],
              one: Callable[[int, int], int]) -> Callable[[CycleState, PodInfo, NodeInfo], int]:
    if resources == DEFAULT_RESOURCES and one is least_allocated:
        def fast(state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
            # The default profile's hot path: cpu and memory, weight 1 each.
            a = node.allocatable
            total = 0
            n = 0
            cap = a.milli_cpu
            if cap:
                n += 1
                req = node.non_zero_cpu + pod.non_zero_cpu
                if req <= cap:
                    total += (cap - req) * MAX_NODE_SCORE // cap
            cap = a.memory
            if cap:
                n += 1
                req = node.non_zero_mem + pod.non_zero_mem
                if req <= cap:
                    total += (cap - req) * MAX_NODE_SCORE // cap
            return total // n if n else 0
        return fast

    def score(state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        total = weights = 0
        for name, w in resources:
            cap, req = _alloc_and_requested(pod, node, name, True)
            if cap == 0:
                continue
            weights += w
            total += one(req, cap) * w
        return total // weights if weights else 0
    return score


def _resources_arg(args: dict[str, Any]) -> list[tuple[str, int]]:
    res = args.get("resources")
    if not res:
        return list(DEFAULT_RESOURCES)
    return [(str(r["name"]), int(r.get("weight") or 1)) for r in res]


def fit(args: dict[str, Any] | None = None) -> Plugin:
    args = args or {}
    ignored = frozenset(args.get("ignoredResources") or [])
    strategy = args.get("scoringStrategy") or {}
    kind = strategy.get("type") or LEAST_ALLOCATED
    resources = _resources_arg(strategy)
    if kind == LEAST_ALLOCATED:
        score = _weighted(resources, least_allocated)
    elif kind == MOST_ALLOCATED:
        score = _weighted(resources, most_allocated)
    elif kind == REQUESTED_TO_CAPACITY_RATIO:
        shape = [(int(p["utilization"]), int(p["score"])) for p in
                 (strategy.get("requestedToCapacityRatio") or {}).get("shape") or
                 [{"utilization": 0, "score": 0}, {"utilization": 100, "score": 10}]]
        f = broken_linear(sorted(shape))
        score = _weighted(resources, lambda req, cap: f(min(100, req * 100 // cap)))
    else:
        raise ValueError(f"unknown scoring strategy {kind!r}")

    def filter(state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        return fit_status(pod, node, ignored)

    return Plugin(FIT, node_local=True, filter=filter, score=score,
                  events=frozenset({NODE_ADD, NODE_UPDATE, POD_DELETE, POD_UPDATE}))


def balanced_score(state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
    # Two resources (cpu, memory): the standard deviation of their usage
    # fractions is half their difference.
    a, used, req = node.allocatable, node.requested, pod.requests
    cpu_cap, mem_cap = a.milli_cpu, a.memory
    if not cpu_cap or not mem_cap:
        return MAX_NODE_SCORE
    fc = (used.milli_cpu + req.milli_cpu) / cpu_cap
    fm = (used.memory + req.memory) / mem_cap
    if fc > 1.0:
        fc = 1.0
    if fm > 1.0:
        fm = 1.0
    return int((1 - abs(fc - fm) / 2) * MAX_NODE_SCORE)


def balanced(args: dict[str, Any] | None = None) -> Plugin:
    return Plugin(BALANCED, node_local=True, score=balanced_score, events=frozenset())
