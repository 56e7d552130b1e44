"""The plugin framework: statuses, the plugin record, profiles, failure messages.

A plugin is a record of plain functions, one per extension point it uses
(upstream's scheduling framework, without the interfaces):

- `pre_filter(state, pod, snapshot) -> Status | None`: once per cycle; may
  return SKIP (the plugin has nothing to check for this pod, its filter is
  not called) or reject the pod outright.
- `filter(state, pod, node) -> Status | None`: per node; None means it fits.
- `pre_score(state, pod, snapshot, nodes) -> Status | None`: SKIP to sit out.
- `score(state, pod, node) -> int` and `normalize(state, pod, nodes, scores)`
  which rewrites the list in place to 0..100.
- `add_pod` / `remove_pod(state, pod, other, node)`: keep pre_filter's state
  right when preemption removes victims or counts nominated pods.

`state` is a plain dict per cycle where plugins keep what pre_filter found.
A profile is a scheduler name with ordered filter plugins and weighted score
plugins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from timonel.scheduler.nodeinfo import NodeInfo, Snapshot
from timonel.scheduler.podinfo import PodInfo

MAX_NODE_SCORE = 100

# Status codes, as upstream's framework.Code.
SUCCESS = "Success"
ERROR = "Error"
UNSCHEDULABLE = "Unschedulable"
UNRESOLVABLE = "UnschedulableAndUnresolvable"
SKIP_CODE = "Skip"

# Cluster events a rejected pod waits for (upstream's ClusterEvent, coarser).
NODE_ADD = "NodeAdd"
NODE_UPDATE = "NodeUpdate"
NODE_DELETE = "NodeDelete"
POD_ADD = "AssignedPodAdd"
POD_UPDATE = "AssignedPodUpdate"
POD_DELETE = "AssignedPodDelete"
ALL_EVENTS = frozenset({NODE_ADD, NODE_UPDATE, NODE_DELETE, POD_ADD, POD_UPDATE, POD_DELETE})

CycleState = dict[str, Any]


@dataclass(slots=True)
class Status:
    code: str
    reasons: list[str] = field(default_factory=list)
    plugin: str = ""

    @property
    def message(self) -> str:
        return ", ".join(self.reasons)

    def rejected(self) -> bool:
        return self.code in (UNSCHEDULABLE, UNRESOLVABLE)


SKIP = Status(SKIP_CODE)


def unschedulable(*reasons: str) -> Status:
    return Status(UNSCHEDULABLE, list(reasons))


def unresolvable(*reasons: str) -> Status:
    return Status(UNRESOLVABLE, list(reasons))


PreFilterFn = Callable[[CycleState, PodInfo, Snapshot], Status | None]
FilterFn = Callable[[CycleState, PodInfo, NodeInfo], Status | None]
PreScoreFn = Callable[[CycleState, PodInfo, Snapshot, list[NodeInfo]], Status | None]
ScoreFn = Callable[[CycleState, PodInfo, NodeInfo], int]
NormalizeFn = Callable[[CycleState, PodInfo, list[NodeInfo], list[int]], None]
PodChangeFn = Callable[[CycleState, PodInfo, PodInfo, NodeInfo], None]


@dataclass(frozen=True)
class Plugin:
    name: str
    pre_filter: PreFilterFn | None = None
    filter: FilterFn | None = None
    pre_score: PreScoreFn | None = None
    score: ScoreFn | None = None
    normalize: NormalizeFn | None = None
    add_pod: PodChangeFn | None = None
    remove_pod: PodChangeFn | None = None
    # Events after which a pod this plugin rejected may fit.
    events: frozenset[str] = ALL_EVENTS
    # Filter and score read only the pod and the node at hand, so their
    # results may be reused for look-alike pods (sigcache).
    node_local: bool = False


@dataclass
class Profile:
    scheduler_name: str
    filters: list[Plugin]
    scorers: list[tuple[Plugin, int]]
    # 0 means the adaptive default (sampling.num_nodes_to_find).
    percentage_of_nodes_to_score: int = 0
    preemption: bool = True

    def plugin_events(self, names: set[str]) -> frozenset[str]:
        """The union of the events the named plugins wait for."""
        if not names:
            return ALL_EVENTS
        out: set[str] = set()
        for p in self.filters:
            if p.name in names:
                out |= p.events
        return frozenset(out) if out else ALL_EVENTS


def default_normalize(scores: list[int], reverse: bool = False) -> None:
    """Upstream's DefaultNormalizeScore: scale so the highest is 100
    (reverse: the lowest raw score gets 100)."""
    top = max(scores, default=0)
    if top == 0:
        if reverse:
            scores[:] = [MAX_NODE_SCORE] * len(scores)
        return
    for i, s in enumerate(scores):
        s = MAX_NODE_SCORE * s // top
        scores[i] = MAX_NODE_SCORE - s if reverse else s


# -- why a pod did not fit -------------------------------------------------------


@dataclass
class Diagnosis:
    node_statuses: dict[str, Status] = field(default_factory=dict)
    unschedulable_plugins: set[str] = field(default_factory=set)
    pre_filter_msg: str = ""
    post_filter_msg: str = ""


@dataclass
class FitError(Exception):
    pod: PodInfo
    num_all_nodes: int
    diagnosis: Diagnosis
    # The algorithm's Prepared (state and filters), for preemption.
    prepared: Any = field(default=None, compare=False)

    def __str__(self) -> str:
        return fit_error_message(self.num_all_nodes, self.diagnosis)


def reasons_histogram(statuses: Any) -> list[str]:
    counts: dict[str, int] = {}
    for st in statuses:
        for r in st.reasons:
            counts[r] = counts.get(r, 0) + 1
    # Sorted as strings, count first, like upstream ("10 x" sorts before "2 y").
    return sorted(f"{n} {r}" for r, n in counts.items())


def fit_error_message(num_all_nodes: int, d: Diagnosis) -> str:
    """`0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had ... .`"""
    msg = f"0/{num_all_nodes} nodes are available:"
    if d.pre_filter_msg:
        msg += f" {d.pre_filter_msg}."
    else:
        hist = reasons_histogram(d.node_statuses.values())
        if hist:
            msg += f" {', '.join(hist)}."
    if d.post_filter_msg:
        msg += f" {d.post_filter_msg}"
    return msg
