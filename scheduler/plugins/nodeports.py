"""NodePorts: a hostPort can be used once per node, protocol and host IP
(0.0.0.0 conflicts with every IP)."""

from __future__ import annotations

from typing import Any

from timonel.scheduler.framework import (
    NODE_ADD,
    POD_DELETE,
    SKIP,
    CycleState,
    Plugin,
    Status,
    unschedulable,
)
from timonel.scheduler.nodeinfo import NodeInfo, Snapshot
from timonel.scheduler.podinfo import PodInfo

NAME = "NodePorts"
REASON = "node(s) didn't have free ports for the requested pod ports"
ANY_IP = "0.0.0.0"


def pre_filter(state: CycleState, pod: PodInfo, snap: Snapshot) -> Status | None:
    return None if pod.ports else SKIP


def conflicts(used: dict[tuple[str, int], dict[str, int]], ports: list[tuple[str, str, int]]) -> bool:
    for proto, ip, port in ports:
        ips = used.get((proto, port))
        if ips and (ip == ANY_IP or ANY_IP in ips or ip in ips):
            return True
    return False


def filter(state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
    if node.used_ports and conflicts(node.used_ports, pod.ports):
        return unschedulable(REASON)
    return None


def new(args: dict[str, Any] | None = None) -> Plugin:
    return Plugin(NAME, node_local=True, pre_filter=pre_filter, filter=filter,
                  events=frozenset({NODE_ADD, POD_DELETE}))
