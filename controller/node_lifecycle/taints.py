"""Taints and tolerations: which taints a pod tolerates, and for how long.

Pure functions over plain dicts (the `spec.taints` of a Node and the
`spec.tolerations` of a Pod), shared by the node lifecycle controller (which
taints nodes and evicts pods) and the DaemonSet controller (which decides
where its pods may run).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from timonel.api.tolerations import tolerated_by_any, tolerates

NO_SCHEDULE, PREFER_NO_SCHEDULE, NO_EXECUTE = "NoSchedule", "PreferNoSchedule", "NoExecute"

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"
DISK_PRESSURE = "node.kubernetes.io/disk-pressure"
PID_PRESSURE = "node.kubernetes.io/pid-pressure"
NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"

# Which node condition in which status means which taint (upstream's
# nodeConditionToTaintKeyStatusMap).
CONDITION_TAINTS: dict[str, dict[str, str]] = {
    "Ready": {"False": NOT_READY, "Unknown": UNREACHABLE},
    "MemoryPressure": {"True": MEMORY_PRESSURE},
    "DiskPressure": {"True": DISK_PRESSURE},
    "NetworkUnavailable": {"True": NETWORK_UNAVAILABLE},
    "PIDPressure": {"True": PID_PRESSURE},
}
# Taint keys this controller owns; others (set by users) are never touched.
CONDITION_TAINT_KEYS = frozenset(k for m in CONDITION_TAINTS.values() for k in m.values())

Taint = dict[str, Any]
Toleration = dict[str, Any]


def untolerated(taints: Iterable[Taint], tolerations: list[Toleration],
                effects: Iterable[str] = (NO_SCHEDULE, NO_EXECUTE)) -> list[Taint]:
    """The taints with one of `effects` that no toleration matches."""
    wanted = set(effects)
    return [t for t in taints if t.get("effect") in wanted and not tolerated_by_any(t, tolerations)]


def no_execute(taints: Iterable[Taint] | None) -> list[Taint]:
    return [t for t in taints or () if isinstance(t, dict) and t.get("effect") == NO_EXECUTE]


def matching_tolerations(taints: list[Taint], tolerations: list[Toleration]
                         ) -> tuple[bool, list[Toleration]]:
    """(all tolerated, the first toleration matching each taint), as
    upstream's GetMatchingTolerations."""
    used: list[Toleration] = []
    for taint in taints:
        for tol in tolerations:
            if tolerates(tol, taint):
                used.append(tol)
                break
        else:
            return False, []
    return True, used


def min_toleration_seconds(used: list[Toleration]) -> float:
    """How long the used tolerations keep a pod: 0 with none, `math.inf`
    when none of them sets tolerationSeconds, else the smallest (negative
    values count as 0)."""
    if not used:
        return 0.0
    best = math.inf
    for tol in used:
        seconds = tol.get("tolerationSeconds")
        if seconds is None:
            continue
        if seconds <= 0:
            return 0.0
        best = min(best, float(seconds))
    return best


def eviction_delay(taints: list[Taint], tolerations: list[Toleration]) -> float | None:
    """Seconds a pod may stay on a node with these NoExecute taints: 0 when
    one is not tolerated, `math.inf` when tolerated forever, None when there
    is no NoExecute taint at all."""
    taints = no_execute(taints)
    if not taints:
        return None
    ok, used = matching_tolerations(taints, tolerations)
    if not ok:
        return 0.0
    return min_toleration_seconds(used)


def same_taint(a: Taint, b: Taint) -> bool:
    """Upstream's MatchTaint: key and effect identify a taint on a node."""
    return a.get("key") == b.get("key") and a.get("effect") == b.get("effect")


def has_taint(taints: Iterable[Taint] | None, key: str, effect: str) -> bool:
    return any(t.get("key") == key and t.get("effect") == effect for t in taints or ())


def condition_taints(node: dict[str, Any]) -> list[Taint]:
    """The NoSchedule taints a node should carry for its conditions and
    `spec.unschedulable` (TaintNodesByCondition)."""
    out: list[Taint] = []
    for cond in (node.get("status") or {}).get("conditions") or []:
        key = CONDITION_TAINTS.get(cond.get("type", ""), {}).get(cond.get("status", ""))
        if key:
            out.append({"key": key, "effect": NO_SCHEDULE})
    if (node.get("spec") or {}).get("unschedulable"):
        out.append({"key": UNSCHEDULABLE, "effect": NO_SCHEDULE})
    return out


def wanted_no_execute(ready_status: str | None) -> Taint | None:
    """The NoExecute taint matching a Ready condition status: not-ready for
    False, unreachable for Unknown, none for True (they are exclusive)."""
    if ready_status == "False":
        return {"key": NOT_READY, "effect": NO_EXECUTE}
    if ready_status == "Unknown":
        return {"key": UNREACHABLE, "effect": NO_EXECUTE}
    return None


def reconcile_taints(current: list[Taint], *, no_schedule: list[Taint],
                     no_execute_taint: Taint | None, manage_no_execute: bool,
                     now: str) -> list[Taint] | None:
    """The node's new taint list, or None when nothing changes. Only the
    taints this controller owns are added or removed (condition NoSchedule
    taints, the unschedulable taint and the not-ready/unreachable NoExecute
    taints); taints kept keep their timeAdded, added ones get `now`."""
    owned_ns = CONDITION_TAINT_KEYS | {UNSCHEDULABLE}
    owned_ne = {NOT_READY, UNREACHABLE}
    keep: list[Taint] = []
    changed = False
    for t in current:
        key, effect = t.get("key"), t.get("effect")
        stale_ns = (effect == NO_SCHEDULE and key in owned_ns
                    and not any(same_taint(t, w) for w in no_schedule))
        stale_ne = (manage_no_execute and effect == NO_EXECUTE and key in owned_ne
                    and (no_execute_taint is None or not same_taint(t, no_execute_taint)))
        if stale_ns or stale_ne:
            changed = True
            continue
        keep.append(t)
    wanted = list(no_schedule)
    if manage_no_execute and no_execute_taint is not None:
        wanted.append(no_execute_taint)
    for w in wanted:
        if not any(same_taint(t, w) for t in keep):
            keep.append({**w, "timeAdded": now})
            changed = True
    return keep if changed else None
