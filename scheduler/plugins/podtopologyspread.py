"""PodTopologySpread: keep matching pods spread over topology domains.

DoNotSchedule constraints filter: on a node in domain D, placing the pod
must keep `count(D) + self - min over domains <= maxSkew` (min is taken as
0 while there are fewer than minDomains domains). ScheduleAnyway
constraints, or the system defaults for pods owned by a Service,
ReplicaSet or StatefulSet, score: fewer matching pods in the node's
domains is better. nodeAffinityPolicy (Honor by default) and
nodeTaintsPolicy (Ignore by default) choose which nodes' pods and domains
count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from timonel.api.selectors import LabelSelector, Requirement, matches
from timonel.api.selectors.labels import IN
from timonel.scheduler.framework import (
    MAX_NODE_SCORE,
    NODE_ADD,
    NODE_DELETE,
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
from timonel.scheduler.plugins.nodeaffinity import RequiredNodeAffinity
from timonel.scheduler.plugins.spreadindex import count_matching, index_of
from timonel.scheduler.plugins.tainttoleration import first_untolerated
from timonel.scheduler.podinfo import PodInfo, label_selector

NAME = "PodTopologySpread"
REASON = "node(s) didn't match pod topology spread constraints"
MISSING_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"
HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"


@dataclass(slots=True)
class Constraint:
    max_skew: int
    key: str
    hard: bool
    selector: LabelSelector
    min_domains: int = 1
    honor_affinity: bool = True
    honor_taints: bool = False


def constraints_of(pod: PodInfo) -> list[Constraint]:
    out = []
    for c in (pod.pod.get("spec") or {}).get("topologySpreadConstraints") or []:
        if not isinstance(c, dict):
            continue
        sel = label_selector(c.get("labelSelector"))
        keys = [k for k in c.get("matchLabelKeys") or [] if k in pod.labels]
        if keys and not sel.nothing:
            reqs = list(sel.requirements) + [Requirement(k, IN, (pod.labels[k],)) for k in keys]
            sel = LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))
        out.append(Constraint(
            max_skew=int(c.get("maxSkew") or 1), key=str(c.get("topologyKey") or ""),
            hard=c.get("whenUnsatisfiable", "DoNotSchedule") == "DoNotSchedule", selector=sel,
            min_domains=int(c.get("minDomains") or 1),
            honor_affinity=c.get("nodeAffinityPolicy", "Honor") != "Ignore",
            honor_taints=c.get("nodeTaintsPolicy", "Ignore") == "Honor"))
    return out


def _system_defaults(pod: PodInfo, snap: Snapshot) -> list[Constraint]:
    if snap.default_spread_selector is None:
        return []
    sel = snap.default_spread_selector(pod)
    if sel is None or sel.nothing or sel.empty:
        return []
    return [Constraint(3, HOSTNAME, False, sel), Constraint(5, ZONE, False, sel)]


class _Counts:
    """Matching pods per domain for one constraint; may share the index's
    dict until preemption changes it (then it copies)."""

    __slots__ = ("counts", "domains", "minimum", "owned")

    def __init__(self, counts: dict[str, int], domains: Any, minimum: int, owned: bool) -> None:
        self.counts = counts
        self.domains = domains
        self.minimum = minimum
        self.owned = owned

    def bump(self, value: str, by: int) -> None:
        if not self.owned:
            self.counts = dict(self.counts)
            self.owned = True
        self.counts[value] = self.counts.get(value, 0) + by
        self.minimum = min((self.counts.get(v, 0) for v in self.domains), default=0)


def _node_counts(pod: PodInfo, node: NodeInfo, c: Constraint,
                 affinity: RequiredNodeAffinity | None) -> bool:
    """upstream matchNodeInclusionPolicies."""
    if c.honor_affinity and affinity is not None and not affinity.matches(node):
        return False
    return not (c.honor_taints and node.hard_taints
                and first_untolerated(pod.tolerations, node.hard_taints) is not None)


def _count(pod: PodInfo, snap: Snapshot, constraints: list[Constraint],
           required: tuple[str, ...]) -> list[_Counts]:
    affinity = RequiredNodeAffinity(pod.pod)
    aff = None if affinity.empty else affinity
    out: list[_Counts] = []
    for c in constraints:
        if (aff is None or not c.honor_affinity) and not c.honor_taints:
            e = index_of(snap).entry(pod.namespace, c.selector, c.key, required)
            out.append(_Counts(e.counts, e.domains, e.minimum(), False))
            continue
        counts: dict[str, int] = {}
        domains: set[str] = set()
        for node in snap.nodes:
            labels = node.labels
            if not all(k in labels for k in required) or not _node_counts(pod, node, c, aff):
                continue
            v = labels[c.key]
            domains.add(v)
            n = count_matching(node.pods, pod.namespace, c.selector)
            if n:
                counts[v] = counts.get(v, 0) + n
        out.append(_Counts(counts, domains, min((counts.get(v, 0) for v in domains), default=0),
                           True))
    return out


class _FilterState:
    __slots__ = ("constraints", "counts", "memo", "self_match", "single_key")

    def __init__(self, constraints: list[Constraint], counts: list[_Counts],
                 self_match: list[int]) -> None:
        self.constraints = constraints
        self.counts = counts
        self.self_match = self_match
        # The verdict depends only on the node's domains: one per domain tuple.
        self.memo: dict[Any, Status | None] = {}
        # With one constraint (the usual case) the memo is keyed by its domain alone.
        self.single_key = constraints[0].key if len(constraints) == 1 else None


def pre_filter(state: CycleState, pod: PodInfo, snap: Snapshot) -> Status | None:
    constraints = [c for c in constraints_of(pod) if c.hard]
    if not constraints:
        return SKIP
    required = tuple(sorted({c.key for c in constraints}))
    counts = _count(pod, snap, constraints, required)
    self_match = [1 if matches(c.selector, pod.labels) else 0 for c in constraints]
    state[NAME] = _FilterState(constraints, counts, self_match)
    return None


def filter(state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
    st: _FilterState = state[NAME]
    labels = node.labels
    key = st.single_key
    domains: Any = labels.get(key) if key is not None else tuple(
        [labels.get(c.key) for c in st.constraints])
    memo = st.memo
    if domains in memo:
        return memo[domains]
    verdict = memo[domains] = _verdict(st, labels)
    return verdict


def _verdict(st: _FilterState, labels: dict[str, str]) -> Status | None:
    for i, c in enumerate(st.constraints):
        v = labels.get(c.key)
        if v is None:
            return unresolvable(MISSING_LABEL)
        cnt = st.counts[i]
        lowest = cnt.minimum if len(cnt.domains) >= c.min_domains else 0
        if cnt.counts.get(v, 0) + st.self_match[i] - lowest > c.max_skew:
            return unschedulable(REASON)
    return None


def _change(state: CycleState, pod: PodInfo, other: PodInfo, node: NodeInfo, by: int) -> None:
    st: _FilterState | None = state.get(NAME)
    if st is None or other.namespace != pod.namespace or other.terminating:
        return
    labels = node.labels
    if not all(c.key in labels for c in st.constraints):
        return
    st.memo.clear()
    for i, c in enumerate(st.constraints):
        if matches(c.selector, other.labels):
            st.counts[i].bump(labels[c.key], by)


def add_pod(state: CycleState, pod: PodInfo, other: PodInfo, node: NodeInfo) -> None:
    _change(state, pod, other, node, 1)


def remove_pod(state: CycleState, pod: PodInfo, other: PodInfo, node: NodeInfo) -> None:
    _change(state, pod, other, node, -1)


# -- scoring ---------------------------------------------------------------------


class _ScoreState:
    __slots__ = ("constraints", "counts", "ignored", "weights")

    def __init__(self, constraints: list[Constraint], counts: list[_Counts],
                 weights: list[float], ignored: set[str]) -> None:
        self.constraints = constraints
        self.counts = counts
        self.weights = weights
        self.ignored = ignored


def pre_score(state: CycleState, pod: PodInfo, snap: Snapshot,
              nodes: list[NodeInfo]) -> Status | None:
    constraints = [c for c in constraints_of(pod) if not c.hard]
    require_all = bool((pod.pod.get("spec") or {}).get("topologySpreadConstraints"))
    if not constraints and not require_all:
        constraints = _system_defaults(pod, snap)
    if not constraints:
        return SKIP
    keys = tuple(sorted({c.key for c in constraints}))
    ignored = set()
    sizes = [0] * len(constraints)
    seen: list[set[str]] = [set() for _ in constraints]
    for node in nodes:
        labels = node.labels
        if require_all and not all(k in labels for k in keys):
            ignored.add(node.name)
            continue
        for i, c in enumerate(constraints):
            v = labels.get(c.key)
            if v is not None and v not in seen[i]:
                seen[i].add(v)
                sizes[i] += 1
    for i, c in enumerate(constraints):
        if c.key == HOSTNAME:
            sizes[i] = len(nodes) - len(ignored)
    counts = []
    for c in constraints:
        required = keys if require_all else (c.key,)
        counts.extend(_count(pod, snap, [c], required))
    weights = [math.log(s + 2) for s in sizes]
    state[NAME + "/score"] = _ScoreState(constraints, counts, weights, ignored)
    return None


def score(state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
    st: _ScoreState = state[NAME + "/score"]
    if node.name in st.ignored:
        return 0
    total = 0.0
    labels = node.labels
    for i, c in enumerate(st.constraints):
        v = labels.get(c.key)
        if v is None:
            continue
        cnt = st.counts[i].counts.get(v, 0)
        total += cnt * st.weights[i] + (c.max_skew - 1)
    return math.floor(total + 0.5)  # Go's math.Round, not banker's rounding


def normalize(state: CycleState, pod: PodInfo, nodes: list[NodeInfo], scores: list[int]) -> None:
    st: _ScoreState = state[NAME + "/score"]
    considered = [s for n, s in zip(nodes, scores, strict=True) if n.name not in st.ignored]
    if not considered:
        scores[:] = [0] * len(scores)
        return
    lo, hi = min(considered), max(considered)
    for i, n in enumerate(nodes):
        if n.name in st.ignored:
            scores[i] = 0
        elif hi == 0:
            scores[i] = MAX_NODE_SCORE
        else:
            scores[i] = MAX_NODE_SCORE * (hi + lo - scores[i]) // hi


def new(args: dict[str, Any] | None = None) -> Plugin:
    return Plugin(NAME, pre_filter=pre_filter, filter=filter, pre_score=pre_score, score=score,
                  normalize=normalize, add_pod=add_pod, remove_pod=remove_pod,
                  events=frozenset({NODE_ADD, NODE_UPDATE, NODE_DELETE, POD_ADD, POD_UPDATE,
                                    POD_DELETE}))
