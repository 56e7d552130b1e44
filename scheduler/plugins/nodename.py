"""NodeName: a pod that names its node (spec.nodeName) fits only there."""

from __future__ import annotations

from typing import Any

from timonel.scheduler.framework import (
    NODE_ADD,
    SKIP,
    CycleState,
    Plugin,
    Status,
    unresolvable,
)
from timonel.scheduler.nodeinfo import NodeInfo, Snapshot
from timonel.scheduler.podinfo import PodInfo

NAME = "NodeName"
REASON = "node(s) didn't match the requested node name"


def pre_filter(state: CycleState, pod: PodInfo, snap: Snapshot) -> Status | None:
    return None if pod.node_name else SKIP


def filter(state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
    if pod.node_name and pod.node_name != node.name:
        return unresolvable(REASON)
    return None


def new(args: dict[str, Any] | None = None) -> Plugin:
    return Plugin(NAME, node_local=True, pre_filter=pre_filter, filter=filter, events=frozenset({NODE_ADD}))
