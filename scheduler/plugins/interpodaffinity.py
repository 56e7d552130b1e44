"""InterPodAffinity: required pod affinity and anti-affinity (the incoming
pod's, and existing pods' anti-affinity against it) as a filter over
topology domains; preferred terms (both ways) as a score.

pre_filter counts, per (topologyKey, value) domain, the existing pods that
match each term once per cycle, so the per-node filter is a few lookups.
"""

from __future__ import annotations

from typing import Any

from timonel.scheduler.framework import (
    MAX_NODE_SCORE,
    NODE_ADD,
    NODE_UPDATE,
    POD_ADD,
    POD_DELETE,
    POD_UPDATE,
    SKIP,
    CycleState,
    Plugin,
    Status,
    unresolvable,
    unschedulable,
)
from timonel.scheduler.nodeinfo import NodeInfo, Snapshot
from timonel.scheduler.podinfo import AffinityTerm, PodInfo

NAME = "InterPodAffinity"
AFFINITY_REASON = "node(s) didn't match pod affinity rules"
ANTI_AFFINITY_REASON = "node(s) didn't match pod anti-affinity rules"
EXISTING_ANTI_AFFINITY_REASON = "node(s) didn't satisfy existing pods anti-affinity rules"
HARD_POD_AFFINITY_WEIGHT = 1

Pair = tuple[str, str]


class _FilterState:
    __slots__ = ("affinity", "anti", "existing_anti", "ns_labels")

    def __init__(self, ns_labels: dict[str, dict[str, str]]) -> None:
        self.existing_anti: dict[Pair, int] = {}
        self.affinity: dict[Pair, int] = {}
        self.anti: dict[Pair, int] = {}
        self.ns_labels = ns_labels


def _bump(counts: dict[Pair, int], key: str, node: NodeInfo, by: int) -> None:
    value = node.labels.get(key)
    if value is None:
        return
    pair = (key, value)
    n = counts.get(pair, 0) + by
    if n:
        counts[pair] = n
    else:
        counts.pop(pair, None)


def _update(st: _FilterState, pod: PodInfo, existing: PodInfo, node: NodeInfo, by: int) -> None:
    ns = st.ns_labels
    for t in existing.required_anti_affinity:
        if t.matches(pod, ns):
            _bump(st.existing_anti, t.topology_key, node, by)
    if pod.required_affinity and all(t.matches(existing, ns) for t in pod.required_affinity):
        for t in pod.required_affinity:
            _bump(st.affinity, t.topology_key, node, by)
    for t in pod.required_anti_affinity:
        if t.matches(existing, ns):
            _bump(st.anti, t.topology_key, node, by)


def pre_filter(state: CycleState, pod: PodInfo, snap: Snapshot) -> Status | None:
    own = bool(pod.required_affinity or pod.required_anti_affinity)
    if not own and not snap.pods_with_required_anti_affinity:
        return SKIP
    st = _FilterState(snap.namespace_labels)
    for node in snap.nodes:
        pods = node.pods if own else node.pods_with_required_anti_affinity
        for existing in pods.values():
            _update(st, pod, existing, node, 1)
    state[NAME] = st
    return None


def _self_affine(pod: PodInfo, ns: dict[str, dict[str, str]]) -> bool:
    return all(t.matches(pod, ns) for t in pod.required_affinity)


def filter(state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
    st: _FilterState = state[NAME]
    labels = node.labels
    if pod.required_affinity:
        ok = True
        for t in pod.required_affinity:
            v = labels.get(t.topology_key)
            if v is None or st.affinity.get((t.topology_key, v), 0) <= 0:
                ok = False
                break
        # The first pod of a group that selects itself may go anywhere
        # the topology key exists.
        if not ok and not (not st.affinity and _self_affine(pod, st.ns_labels)
                           and all(t.topology_key in labels for t in pod.required_affinity)):
            return unresolvable(AFFINITY_REASON)
    for t in pod.required_anti_affinity:
        v = labels.get(t.topology_key)
        if v is not None and st.anti.get((t.topology_key, v), 0) > 0:
            return unschedulable(ANTI_AFFINITY_REASON)
    if st.existing_anti:
        for (k, v), n in st.existing_anti.items():
            if n > 0 and labels.get(k) == v:
                return unschedulable(EXISTING_ANTI_AFFINITY_REASON)
    return None


def add_pod(state: CycleState, pod: PodInfo, other: PodInfo, node: NodeInfo) -> None:
    if NAME in state:
        _update(state[NAME], pod, other, node, 1)


def remove_pod(state: CycleState, pod: PodInfo, other: PodInfo, node: NodeInfo) -> None:
    if NAME in state:
        _update(state[NAME], pod, other, node, -1)


# -- scoring ---------------------------------------------------------------------


def _process(scores: dict[str, dict[str, int]], term: AffinityTerm, weight: int,
             target: PodInfo, node: NodeInfo, ns: dict[str, dict[str, str]]) -> None:
    if not weight or not term.matches(target, ns):
        return
    value = node.labels.get(term.topology_key)
    if value is None:
        return
    by_value = scores.setdefault(term.topology_key, {})
    by_value[value] = by_value.get(value, 0) + weight


def pre_score(state: CycleState, pod: PodInfo, snap: Snapshot,
              nodes: list[NodeInfo]) -> Status | None:
    own = bool(pod.preferred_affinity or pod.preferred_anti_affinity)
    if not own and not snap.pods_with_affinity:
        return SKIP
    ns = snap.namespace_labels
    scores: dict[str, dict[str, int]] = {}
    for node in snap.nodes:
        if not node.labels:
            continue
        pods = node.pods if own else node.pods_with_affinity
        for ex in pods.values():
            for t in pod.preferred_affinity:
                _process(scores, t, t.weight, ex, node, ns)
            for t in pod.preferred_anti_affinity:
                _process(scores, t, -t.weight, ex, node, ns)
            for t in ex.required_affinity:
                _process(scores, t, HARD_POD_AFFINITY_WEIGHT, pod, node, ns)
            for t in ex.preferred_affinity:
                _process(scores, t, t.weight, pod, node, ns)
            for t in ex.preferred_anti_affinity:
                _process(scores, t, -t.weight, pod, node, ns)
    if not scores:
        return SKIP
    state[NAME + "/score"] = scores
    return None


def score(state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
    total = 0
    labels = node.labels
    for key, by_value in state[NAME + "/score"].items():
        v = labels.get(key)
        if v is not None:
            total += by_value.get(v, 0)
    return total


def normalize(state: CycleState, pod: PodInfo, nodes: list[NodeInfo], scores: list[int]) -> None:
    if not scores:
        return
    lo, hi = min(scores), max(scores)
    diff = hi - lo
    for i, s in enumerate(scores):
        scores[i] = int(MAX_NODE_SCORE * ((s - lo) / diff)) if diff > 0 else 0


def new(args: dict[str, Any] | None = None) -> Plugin:
    return Plugin(NAME, pre_filter=pre_filter, filter=filter, pre_score=pre_score, score=score,
                  normalize=normalize, add_pod=add_pod, remove_pod=remove_pod,
                  events=frozenset({NODE_ADD, NODE_UPDATE, POD_ADD, POD_UPDATE, POD_DELETE}))
