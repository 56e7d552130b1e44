"""One scheduling decision, pure and synchronous: pre-filter, filter a
sample of nodes, pre-score, score, normalize, weigh, pick the best (ties
at random). No I/O, so the property tests and the in-memory benchmark run
exactly what the scheduler runs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from timonel.scheduler import sigcache
from timonel.scheduler.framework import (
    SKIP_CODE,
    UNRESOLVABLE,
    CycleState,
    Diagnosis,
    FitError,
    Plugin,
    Profile,
    Status,
)
from timonel.scheduler.nodeinfo import NodeInfo, Snapshot
from timonel.scheduler.podinfo import PodInfo
from timonel.scheduler.sampling import RoundRobin, num_feasible_nodes_to_find
from timonel.scheduler.sigcache import SignatureCache

NO_NODES = "no nodes available to schedule pods"


@dataclass
class Prepared:
    """A pod after pre-filter: the cycle state and the filters to run."""

    pod: PodInfo
    state: CycleState
    filters: list[Plugin]


@dataclass
class ScheduleResult:
    node: str
    evaluated: int
    feasible: int
    prepared: Prepared | None = field(default=None, repr=False)


class NoNodesError(Exception):
    def __str__(self) -> str:
        return NO_NODES


def pre_filter(profile: Profile, snap: Snapshot, pod: PodInfo) -> Prepared:
    state: CycleState = {}
    filters: list[Plugin] = []
    for p in profile.filters:
        if p.pre_filter is not None:
            st = p.pre_filter(state, pod, snap)
            if st is not None:
                if st.code == SKIP_CODE:
                    continue
                st.plugin = p.name
                d = Diagnosis(pre_filter_msg=st.message, unschedulable_plugins={p.name})
                d.node_statuses = {n.name: st for n in snap.nodes}
                raise FitError(pod, len(snap.nodes), d)
        if p.filter is not None:
            filters.append(p)
    return Prepared(pod, state, filters)


def run_filters(prep: Prepared, node: NodeInfo) -> Status | None:
    state, pod = prep.state, prep.pod
    for p in prep.filters:
        st = p.filter(state, pod, node)  # type: ignore[misc]
        if st is not None:
            st.plugin = p.name
            return st
    return None


def _with_nominated(prep: Prepared, node: NodeInfo, nominated: list[PodInfo]) -> Status | None:
    """upstream RunFilterPluginsWithNominatedPods: count the pods nominated
    to this node with at least our priority as if they ran there; a pod
    must fit both with them and (for affinity) without them."""
    others = [p for p in nominated if p.key != prep.pod.key and p.priority >= prep.pod.priority]
    if not others:
        return run_filters(prep, node)
    clone = node.clone()
    state = dict(prep.state)
    prep2 = Prepared(prep.pod, state, prep.filters)
    for other in others:
        clone.add_pod(other)
        for p in prep.filters:
            if p.add_pod is not None:
                p.add_pod(state, prep.pod, other, clone)
    st = run_filters(prep2, clone)
    if st is not None:
        return st
    return run_filters(prep, node)


def filter_node(prep: Prepared, snap: Snapshot, node: NodeInfo) -> Status | None:
    nominated = snap.nominated.get(node.name)
    if nominated:
        return _with_nominated(prep, node, list(nominated.values()))
    return run_filters(prep, node)


def _cache(snap: Snapshot) -> SignatureCache:
    c = snap.extras.get(sigcache.EXTRA)
    if c is None:
        c = snap.extras[sigcache.EXTRA] = SignatureCache()
    return c  # type: ignore[no-any-return]


def find_feasible(profile: Profile, snap: Snapshot, prep: Prepared, rr: RoundRobin,
                  diagnosis: Diagnosis) -> list[NodeInfo]:
    nodes = snap.nodes
    n = len(nodes)
    to_find = num_feasible_nodes_to_find(profile.percentage_of_nodes_to_score, n)
    statuses = diagnosis.node_statuses
    feasible: list[NodeInfo] = []
    start = rr.next_start % n if n else 0
    nominated = snap.nominated
    # Node-local filters go first and their verdicts are reused for
    # look-alike pods; the others (pod affinity, spread) run every time.
    local = [(p.filter, p.name) for p in prep.filters if p.node_local]
    other = [(p.filter, p.name) for p in prep.filters if not p.node_local]
    state, pod = prep.state, prep.pod
    entries = _cache(snap).entries(id(profile), pod) if local else None
    order = nodes[start:] + nodes[:start] if start else nodes
    cached = entries.get if entries is not None else None
    add_plugin = diagnosis.unschedulable_plugins.add
    for node in order:
        if nominated and node.name in nominated:
            st = filter_node(prep, snap, node)
        else:
            e = cached(node.name) if cached is not None else None
            if e is not None and e[0] == node.generation:
                st = e[1]
            else:
                st = None
                for fn, name in local:
                    st = fn(state, pod, node)  # type: ignore[misc]
                    if st is not None:
                        st.plugin = name
                        break
                if entries is not None:
                    entries[node.name] = [node.generation, st, None]
            if st is None and other:
                for fn, name in other:
                    st = fn(state, pod, node)  # type: ignore[misc]
                    if st is not None:
                        st.plugin = name
                        break
        if st is None:
            feasible.append(node)
            if len(feasible) >= to_find:
                break
        else:
            statuses[node.name] = st
            add_plugin(st.plugin)
    rr.advance(len(feasible) + len(statuses), n)
    return feasible


def prioritize(profile: Profile, snap: Snapshot, prep: Prepared,
               nodes: list[NodeInfo]) -> list[int]:
    state, pod = prep.state, prep.pod
    active: list[tuple[Plugin, int]] = []
    for p, weight in profile.scorers:
        if p.score is None:
            continue
        if p.pre_score is not None:
            st = p.pre_score(state, pod, snap, nodes)
            if st is not None and st.code == SKIP_CODE:
                continue
        active.append((p, weight))
    columns: dict[str, list[int]] = {}
    local = [(p, w) for p, w in active if p.node_local]
    if local:
        # Raw scores of node-local plugins: reused while the node is unchanged.
        entries = _cache(snap).entries(id(profile), pod)
        fns = [p.score for p, _ in local]
        nominated = snap.nominated
        rows = []
        for node in nodes:
            e = entries.get(node.name)
            if e is None or e[0] != node.generation:
                e = [node.generation, None, None]
                if not (nominated and node.name in nominated):
                    entries[node.name] = e
            raw = e[2]
            if raw is None:
                raw = e[2] = tuple([fn(state, pod, node) for fn in fns])  # type: ignore[misc]
            rows.append(raw)
        for (p, _), col in zip(local, zip(*rows, strict=True), strict=True):
            columns[p.name] = list(col)
    totals = [0] * len(nodes)
    for p, weight in active:
        scores = columns.get(p.name)
        if scores is None:
            fn = p.score
            scores = [fn(state, pod, n) for n in nodes]  # type: ignore[misc]
        if p.normalize is not None:
            p.normalize(state, pod, nodes, scores)
        totals = [t + s * weight for t, s in zip(totals, scores, strict=True)]
    return totals


def select_host(nodes: list[NodeInfo], totals: list[int], rng: random.Random) -> NodeInfo:
    best = max(totals)
    ties = [i for i, t in enumerate(totals) if t == best]
    return nodes[ties[0] if len(ties) == 1 else rng.choice(ties)]


def schedule(profile: Profile, snap: Snapshot, pod: PodInfo, rr: RoundRobin,
             rng: random.Random) -> ScheduleResult:
    """The node for `pod`; raises FitError (with the diagnosis) when none fits
    and NoNodesError when there are no nodes at all."""
    if not snap.nodes:
        raise NoNodesError()
    prep = pre_filter(profile, snap, pod)
    diagnosis = Diagnosis()
    nominated = str(((pod.pod.get("status") or {}).get("nominatedNodeName")) or "")
    if nominated and nominated in snap.by_name:
        node = snap.by_name[nominated]
        if filter_node(prep, snap, node) is None:
            return ScheduleResult(node.name, 1, 1, prep)
    feasible = find_feasible(profile, snap, prep, rr, diagnosis)
    if not feasible:
        raise FitError(pod, len(snap.nodes), diagnosis, prep)
    if len(feasible) == 1:
        return ScheduleResult(feasible[0].name, len(feasible) + len(diagnosis.node_statuses), 1,
                              prep)
    totals = prioritize(profile, snap, prep, feasible)
    host = select_host(feasible, totals, rng)
    return ScheduleResult(host.name, len(feasible) + len(diagnosis.node_statuses), len(feasible),
                          prep)


def all_unresolvable(diagnosis: Diagnosis) -> bool:
    return all(s.code == UNRESOLVABLE for s in diagnosis.node_statuses.values())
