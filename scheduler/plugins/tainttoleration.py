"""TaintToleration: NoSchedule/NoExecute taints repel pods that do not
tolerate them (filter); untolerated PreferNoSchedule taints lower a node's
score (fewer is better)."""

from __future__ import annotations

from typing import Any

from timonel.api.tolerations import tolerated_by_any
from timonel.scheduler.framework import (
    NODE_ADD,
    NODE_UPDATE,
    CycleState,
    Plugin,
    Status,
    default_normalize,
    unresolvable,
)
from timonel.scheduler.nodeinfo import NodeInfo, Snapshot
from timonel.scheduler.podinfo import PodInfo

NAME = "TaintToleration"


def tolerated(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    return tolerated_by_any(taint, tolerations)


def first_untolerated(tolerations: list[dict[str, Any]],
                      taints: list[dict[str, Any]]) -> dict[str, Any] | None:
    for taint in taints:
        if not tolerated(tolerations, taint):
            return taint
    return None


def untolerated_message(taint: dict[str, Any]) -> str:
    return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '') or ''}}}"


def filter(state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
    if not node.hard_taints:
        return None
    taint = first_untolerated(pod.tolerations, node.hard_taints)
    if taint is None:
        return None
    return unresolvable(untolerated_message(taint))


def pre_score(state: CycleState, pod: PodInfo, snap: Snapshot,
              nodes: list[NodeInfo]) -> Status | None:
    state[NAME] = [t for t in pod.tolerations if (t.get("effect") or "") in ("", "PreferNoSchedule")]
    return None


def score(state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
    if not node.prefer_taints:
        return 0
    tols = state[NAME]
    return sum(1 for taint in node.prefer_taints if not tolerated(tols, taint))


def normalize(state: CycleState, pod: PodInfo, nodes: list[NodeInfo], scores: list[int]) -> None:
    default_normalize(scores, reverse=True)


def new(args: dict[str, Any] | None = None) -> Plugin:
    return Plugin(NAME, node_local=True, filter=filter, pre_score=pre_score, score=score, normalize=normalize,
                  events=frozenset({NODE_ADD, NODE_UPDATE}))
