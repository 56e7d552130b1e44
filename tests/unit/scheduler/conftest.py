"""Small node and pod fixtures for plugin tests, in the style of upstream's
st.MakeNode()/st.MakePod() wrappers but as plain dicts."""

from __future__ import annotations

import itertools
from typing import Any

from timonel.scheduler.framework import CycleState, Plugin, Status
from timonel.scheduler.nodeinfo import NodeInfo, Snapshot
from timonel.scheduler.podinfo import PodInfo, new_pod_info

_uid = itertools.count(1)


def node(name: str, cpu: str = "4", memory: str = "8Gi", pods: str = "110",
         labels: dict[str, str] | None = None, taints: list[dict[str, Any]] | None = None,
         unschedulable: bool = False, ready: bool = True,
         images: list[tuple[list[str], int]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"taints": taints or []}
    if unschedulable:
        spec["unschedulable"] = True
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                   **(labels or {})}},
            "spec": spec,
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods,
                                       "ephemeral-storage": "100Gi"},
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "images": [{"names": n, "sizeBytes": s} for n, s in images or []]}}


def pod(name: str = "", cpu: str | None = None, memory: str | None = None, *,
        namespace: str = "default", labels: dict[str, str] | None = None,
        node_name: str = "", priority: int = 0, **spec: Any) -> dict[str, Any]:
    req = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    container: dict[str, Any] = {"name": "c", "image": spec.pop("image", "app:1")}
    if req:
        container["resources"] = {"requests": req}
    if "ports" in spec:
        container["ports"] = spec.pop("ports")
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name or f"p{next(_uid)}", "namespace": namespace,
                         "uid": f"uid-{next(_uid)}", "labels": labels or {}},
            "spec": {"containers": [container], "nodeName": node_name, "priority": priority,
                     **spec}}


def snapshot(nodes: list[dict[str, Any]], pods: list[dict[str, Any]] = ()) -> Snapshot:  # type: ignore[assignment]
    snap = Snapshot()
    for n in nodes:
        snap.set_node(n)
    for p in pods:
        snap.add_pod(new_pod_info(p))
    return snap


def info(p: dict[str, Any]) -> PodInfo:
    return new_pod_info(p)


def run_filter(plugin: Plugin, p: dict[str, Any], snap: Snapshot,
               node_name: str) -> Status | None:
    """pre_filter then filter on one node, as the framework would."""
    state: CycleState = {}
    pi = new_pod_info(p)
    if plugin.pre_filter is not None:
        st = plugin.pre_filter(state, pi, snap)
        if st is not None:
            if st.code == "Skip":
                return None
            return st
    assert plugin.filter is not None
    return plugin.filter(state, pi, snap.by_name[node_name])


def run_scores(plugin: Plugin, p: dict[str, Any], snap: Snapshot,
               names: list[str] | None = None) -> dict[str, int]:
    """pre_score, score and normalize over the named nodes."""
    state: CycleState = {}
    pi = new_pod_info(p)
    nodes: list[NodeInfo] = [snap.by_name[n] for n in (names or [n.name for n in snap.nodes])]
    if plugin.pre_score is not None:
        st = plugin.pre_score(state, pi, snap, nodes)
        if st is not None and st.code == "Skip":
            return {n.name: 0 for n in nodes}
    assert plugin.score is not None
    scores = [plugin.score(state, pi, n) for n in nodes]
    if plugin.normalize is not None:
        plugin.normalize(state, pi, nodes, scores)
    return {n.name: s for n, s in zip(nodes, scores, strict=True)}
