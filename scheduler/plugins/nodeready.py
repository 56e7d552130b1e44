"""NodeReady: no placement on a node whose Ready condition is not True.

Upstream expresses this with the node.kubernetes.io/not-ready:NoSchedule
taint the node lifecycle controller adds; checking the condition itself
also covers the window before the taint is written. Pods that tolerate that
taint (daemon pods) may still go there."""

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

NAME = "NodeReady"
REASON = "node(s) were not ready"
TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}


def filter(state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
    if node.ready or tolerated(pod.tolerations, TAINT):
        return None
    return unresolvable(REASON)


def new(args: dict[str, Any] | None = None) -> Plugin:
    return Plugin(NAME, node_local=True, filter=filter, events=frozenset({NODE_ADD, NODE_UPDATE}))
