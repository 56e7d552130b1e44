"""NodeUnschedulable: a cordoned node (spec.unschedulable) takes no new pods,
unless the pod tolerates the node.kubernetes.io/unschedulable taint."""

from __future__ import annotations

from typing import Any

from timonel.scheduler.framework import (
    NODE_ADD,
    NODE_UPDATE,
    CycleState,
    Plugin,
    Status,
    unresolvable,
)
from timonel.scheduler.nodeinfo import NodeInfo
from timonel.scheduler.plugins.tainttoleration import tolerated
from timonel.scheduler.podinfo import PodInfo

NAME = "NodeUnschedulable"
REASON = "node(s) were unschedulable"
TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


def filter(state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
    if not node.unschedulable or tolerated(pod.tolerations, TAINT):
        return None
    return unresolvable(REASON)


def new(args: dict[str, Any] | None = None) -> Plugin:
    return Plugin(NAME, node_local=True, filter=filter, events=frozenset({NODE_ADD, NODE_UPDATE}))
