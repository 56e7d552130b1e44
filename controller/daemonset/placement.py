"""Where a DaemonSet's pods go: which nodes should run one, and what the
pod for a node looks like (upstream's NodeShouldRunDaemonPod, daemon pod
tolerations and node-name affinity).

Pure functions over plain dicts.
"""

from __future__ import annotations

import copy
from typing import Any

from timonel.api import meta
from timonel.controller.node_lifecycle import taints as tt

Obj = dict[str, Any]

# Every daemon pod tolerates node trouble: it is meant to run on every node.
DAEMON_TOLERATIONS: tuple[Obj, ...] = (
    {"key": tt.NOT_READY, "operator": "Exists", "effect": "NoExecute"},
    {"key": tt.UNREACHABLE, "operator": "Exists", "effect": "NoExecute"},
    {"key": tt.DISK_PRESSURE, "operator": "Exists", "effect": "NoSchedule"},
    {"key": tt.MEMORY_PRESSURE, "operator": "Exists", "effect": "NoSchedule"},
    {"key": tt.PID_PRESSURE, "operator": "Exists", "effect": "NoSchedule"},
    {"key": tt.UNSCHEDULABLE, "operator": "Exists", "effect": "NoSchedule"},
)
HOST_NETWORK_TOLERATION: Obj = {"key": tt.NETWORK_UNAVAILABLE, "operator": "Exists",
                                "effect": "NoSchedule"}


def _same_toleration(a: Obj, b: Obj) -> bool:
    """Upstream's MatchToleration: everything but tolerationSeconds."""
    return all((a.get(k) or "") == (b.get(k) or "") for k in ("key", "operator", "value", "effect"))


def add_or_update_tolerations(spec: Obj, tolerations: list[Obj]) -> None:
    """Add each toleration, replacing one equal but for tolerationSeconds
    (so the admission default of 300 s becomes "for ever")."""
    current = spec.setdefault("tolerations", [])
    for tol in tolerations:
        for i, old in enumerate(current):
            if _same_toleration(old, tol):
                current[i] = dict(tol)
                break
        else:
            current.append(dict(tol))


def daemon_tolerations(pod_spec: Obj) -> list[Obj]:
    extra = list(DAEMON_TOLERATIONS)
    if pod_spec.get("hostNetwork"):
        extra.append(HOST_NETWORK_TOLERATION)
    return extra


def _requirement_matches(req: Obj, value: str | None) -> bool:
    op = req.get("operator")
    values = [str(v) for v in req.get("values") or []]
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        if value is None or len(values) != 1:
            return False
        try:
            have, want = int(value), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def _term_matches(term: Obj, node: Obj) -> bool:
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False  # an empty term selects nothing
    labels = meta.labels_of(node)
    if not all(_requirement_matches(r, labels.get(str(r.get("key")))) for r in exprs):
        return False
    for r in fields:
        # metadata.name is the only field selectors support.
        value = meta.name_of(node) if r.get("key") == "metadata.name" else None
        if not _requirement_matches(r, value):
            return False
    return True


def matches_node_affinity(pod_spec: Obj, node: Obj) -> bool:
    """nodeSelector and required node affinity (upstream's GetRequiredNodeAffinity)."""
    labels = meta.labels_of(node)
    for k, v in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    na = (pod_spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = na.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return True
    return any(_term_matches(t, node) for t in required.get("nodeSelectorTerms") or [])


def should_run(ds: Obj, node: Obj) -> tuple[bool, bool]:
    """(should run a new daemon pod here, may keep an existing one here)."""
    spec = copy.deepcopy(((ds.get("spec") or {}).get("template") or {}).get("spec") or {})
    name = meta.name_of(node)
    if spec.get("nodeName") and spec["nodeName"] != name:
        return False, False
    add_or_update_tolerations(spec, daemon_tolerations(spec))
    if not matches_node_affinity(spec, node):
        return False, False
    taints = (node.get("spec") or {}).get("taints") or []
    tolerations = spec.get("tolerations") or []
    if tt.untolerated(taints, tolerations):
        return False, not tt.untolerated(taints, tolerations, effects=(tt.NO_EXECUTE,))
    return True, True


def pin_to_node(spec: Obj, node_name: str) -> None:
    """Replace the required node affinity with one term naming the node, so
    the scheduler places the pod there (upstream's
    ReplaceDaemonSetPodNodeNameNodeAffinity; the node was already checked
    against the DaemonSet's own affinity)."""
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}
    affinity = spec.setdefault("affinity", {})
    na = affinity.setdefault("nodeAffinity", {})
    na["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [term]}


def target_node(pod: Obj) -> str:
    """The node a daemon pod is for: its nodeName, or the one its affinity pins."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    na = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    req = na.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = req.get("nodeSelectorTerms") or []
    if len(terms) != 1:
        return ""
    for f in terms[0].get("matchFields") or []:
        if (f.get("key") == "metadata.name" and f.get("operator") == "In"
                and len(f.get("values") or []) == 1):
            return str(f["values"][0])
    return ""
