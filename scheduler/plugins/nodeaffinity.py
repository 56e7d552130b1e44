"""NodeAffinity: `nodeSelector` and required node affinity terms filter
nodes; preferred terms add their weights to a node's score."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from timonel.api.selectors.messages import go_int
from timonel.scheduler.framework import (
    NODE_ADD,
    NODE_UPDATE,
    SKIP,
    CycleState,
    Plugin,
    Status,
    default_normalize,
    unresolvable,
)
from timonel.scheduler.nodeinfo import NodeInfo, Snapshot
from timonel.scheduler.podinfo import PodInfo

NAME = "NodeAffinity"
REASON = "node(s) didn't match Pod's node affinity/selector"

# A compiled requirement: (labels, node name) -> bool.
Match = Callable[[dict[str, str], str], bool]


def _requirement(expr: Any, field: bool) -> Match:
    if not isinstance(expr, dict):
        return lambda labels, name: False
    key = str(expr.get("key") or "")
    op = expr.get("operator")
    values = [v for v in expr.get("values") or [] if isinstance(v, str)]
    vset = frozenset(values)
    if field:
        # Only metadata.name is a supported node field.
        if key != "metadata.name":
            return lambda labels, name: False
        if op == "In":
            return lambda labels, name: name in vset
        if op == "NotIn":
            return lambda labels, name: name not in vset
        return lambda labels, name: False
    if op == "In":
        return lambda labels, name: labels.get(key) in vset
    if op == "NotIn":
        return lambda labels, name: key not in labels or labels[key] not in vset
    if op == "Exists":
        return lambda labels, name: key in labels
    if op == "DoesNotExist":
        return lambda labels, name: key not in labels
    if op in ("Gt", "Lt") and len(values) == 1:
        want = go_int(values[0])
        if want is None:
            return lambda labels, name: False
        gt = op == "Gt"

        def compare(labels: dict[str, str], name: str) -> bool:
            have = go_int(labels[key]) if key in labels else None
            return have is not None and (have > want if gt else have < want)
        return compare
    return lambda labels, name: False


def compile_term(term: Any) -> list[Match] | None:
    """A NodeSelectorTerm as its requirements (ANDed); None for a term
    with no requirements, which matches nothing."""
    if not isinstance(term, dict):
        return None
    reqs = [_requirement(e, False) for e in term.get("matchExpressions") or []]
    reqs += [_requirement(e, True) for e in term.get("matchFields") or []]
    return reqs or None


def compile_terms(terms: Any) -> list[list[Match] | None]:
    return [compile_term(t) for t in terms or []]


def terms_match(terms: list[list[Match] | None], labels: dict[str, str], name: str) -> bool:
    """NodeSelectorTerms are ORed."""
    return any(reqs is not None and all(r(labels, name) for r in reqs) for reqs in terms)


class RequiredNodeAffinity:
    """nodeSelector AND required node affinity, as upstream's helper of the
    same name (also used by PodTopologySpread's nodeAffinityPolicy)."""

    __slots__ = ("selector", "terms")

    def __init__(self, pod: dict[str, Any]) -> None:
        spec = pod.get("spec") or {}
        sel = spec.get("nodeSelector")
        self.selector: dict[str, str] = sel if isinstance(sel, dict) else {}
        req = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
               .get("requiredDuringSchedulingIgnoredDuringExecution"))
        self.terms = compile_terms(req.get("nodeSelectorTerms")) if isinstance(req, dict) else None

    @property
    def empty(self) -> bool:
        return not self.selector and self.terms is None

    def matches(self, node: NodeInfo) -> bool:
        labels = node.labels
        for k, v in self.selector.items():
            if labels.get(k) != v:
                return False
        return self.terms is None or terms_match(self.terms, labels, node.name)


def pre_filter(state: CycleState, pod: PodInfo, snap: Snapshot) -> Status | None:
    req = RequiredNodeAffinity(pod.pod)
    if req.empty:
        return SKIP
    state[NAME] = req
    return None


def filter(state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
    if state[NAME].matches(node):
        return None
    return unresolvable(REASON)


def pre_score(state: CycleState, pod: PodInfo, snap: Snapshot,
              nodes: list[NodeInfo]) -> Status | None:
    pref = ((((pod.pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {})
            .get("preferredDuringSchedulingIgnoredDuringExecution"))
    terms = []
    for p in pref or []:
        if isinstance(p, dict) and int(p.get("weight") or 0):
            reqs = compile_term(p.get("preference"))
            if reqs is not None:
                terms.append((int(p["weight"]), reqs))
    if not terms:
        return SKIP
    state[NAME + "/score"] = terms
    return None


def score(state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
    total = 0
    labels, name = node.labels, node.name
    for weight, reqs in state[NAME + "/score"]:
        if all(r(labels, name) for r in reqs):
            total += weight
    return total


def normalize(state: CycleState, pod: PodInfo, nodes: list[NodeInfo], scores: list[int]) -> None:
    default_normalize(scores)


def new(args: dict[str, Any] | None = None) -> Plugin:
    return Plugin(NAME, node_local=True, pre_filter=pre_filter, filter=filter, pre_score=pre_score, score=score,
                  normalize=normalize, events=frozenset({NODE_ADD, NODE_UPDATE}))
