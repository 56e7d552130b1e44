"""Small helpers over Node and Pod dicts used by the node lifecycle loops."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

from timonel.api.client import Informer

NODES = ("v1", "Node")
PODS = ("v1", "Pod")
LEASES = ("coordination.k8s.io/v1", "Lease")
LEASE_NAMESPACE = "kube-node-lease"
POD_NODE_INDEX = "spec.nodeName"

Obj = dict[str, Any]


def get_condition(obj: Obj, type_: str) -> Obj | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == type_:
            return cond
    return None


def ready_status(node: Obj) -> str | None:
    cond = get_condition(node, "Ready")
    return None if cond is None else str(cond.get("status") or "")


def pod_node(pod: Obj) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


def _node_of(pod: Obj) -> list[str]:
    node = pod_node(pod)
    return [node] if node else []


def ensure_index(informer: Informer, name: str, fn: Callable[[Obj], Iterable[str]]) -> None:
    """Add an index unless another loop sharing the informer already did."""
    try:
        informer.add_index(name, fn)
    except ValueError:
        pass


def ensure_pod_node_index(pods: Informer) -> None:
    ensure_index(pods, POD_NODE_INDEX, _node_of)


def pods_on_node(pods: Informer, node: str) -> list[Obj]:
    return pods.by_index(POD_NODE_INDEX, node)


def set_pod_condition(pod: Obj, cond: Obj, now: str) -> bool:
    """Put `cond` into the pod's status conditions like upstream's
    UpdatePodCondition: lastTransitionTime moves only when the status
    changes. Returns whether anything changed."""
    status = pod.setdefault("status", {})
    conds = status.setdefault("conditions", [])
    for i, old in enumerate(conds):
        if old.get("type") != cond["type"]:
            continue
        new = {**old, **cond}
        if old.get("status") != cond.get("status"):
            new["lastTransitionTime"] = now
        else:
            new["lastTransitionTime"] = old.get("lastTransitionTime") or now
        if new == old:
            return False
        conds[i] = new
        return True
    conds.append({"lastProbeTime": None, "lastTransitionTime": now, **cond})
    return True


def deep_copy(obj: Obj) -> Obj:
    return copy.deepcopy(obj)
