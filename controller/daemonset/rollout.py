"""Rolling updates of DaemonSets: how many pods may be down or doubled up,
and which ones to replace now (upstream's rollingUpdate)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from timonel.controller.history import POD_REVISION_LABEL

Obj = dict[str, Any]


def scaled(value: Any, total: int, round_up: bool) -> int:
    """An IntOrString against `total`: ints as they are, "25%" of total."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if not text.endswith("%"):
        raise ValueError(f"invalid value {value!r}: must be an integer or a percentage like '10%'")
    try:
        pct = int(text[:-1])
    except ValueError:
        raise ValueError(f"invalid value {value!r}: must be an integer or a percentage "
                         "like '10%'") from None
    exact = pct * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def surge_and_unavailable(ds: Obj, desired: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) for `desired` nodes; both 0 means 1 unavailable."""
    ru = (((ds.get("spec") or {}).get("updateStrategy") or {}).get("rollingUpdate")) or {}
    surge = scaled(ru.get("maxSurge", 0), desired, True)
    unavailable = scaled(ru.get("maxUnavailable", 1), desired, True)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def is_updated(pod: Obj, hash_: str) -> bool:
    return ((pod.get("metadata") or {}).get("labels") or {}).get(POD_REVISION_LABEL) == hash_


def split_new_old(pods: list[Obj], hash_: str) -> tuple[Obj | None, Obj | None, bool]:
    """(new pod, old pod, ok) among a node's live pods; not ok when there
    are two of either kind (the manage loop removes the extra first)."""
    new = old = None
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        if is_updated(pod, hash_):
            if new is not None:
                return None, None, False
            new = pod
        else:
            if old is not None:
                return None, None, False
            old = pod
    return new, old, True


def plan(node_pods: dict[str, list[Obj]], hash_: str, max_surge: int, max_unavailable: int,
         available: Callable[[Obj], bool]) -> tuple[list[Obj], list[str]]:
    """(old pods to delete, nodes that get a new pod now) for one pass."""
    to_delete: list[Obj] = []
    if max_surge == 0:
        unavailable = 0
        replace_now: list[Obj] = []
        candidates: list[Obj] = []
        for node in sorted(node_pods):
            new, old, ok = split_new_old(node_pods[node], hash_)
            if not ok or (new is None) == (old is None):
                unavailable += 1
            elif new is not None:
                if not available(new):
                    unavailable += 1
            elif old is not None:
                if not available(old):
                    replace_now.append(old)
                elif unavailable < max_unavailable:
                    candidates.append(old)
        room = min(max(0, max_unavailable - unavailable), len(candidates))
        return replace_now + candidates[:room], []
    # Surge: a node with an unavailable old pod gets its new pod at once; up
    # to maxSurge more nodes run a new pod next to an available old one,
    # whose old pod goes once the new one is available.
    surging = 0
    allowed: list[str] = []
    candidate_nodes: list[str] = []
    for node in sorted(node_pods):
        new, old, ok = split_new_old(node_pods[node], hash_)
        if not ok:
            surging += 1
            continue
        if old is None:
            continue
        if new is None:
            if not available(old):
                allowed.append(node)
            elif surging < max_surge:
                candidate_nodes.append(node)
            continue
        if not available(new):
            surging += 1
            continue
        to_delete.append(old)
    room = min(max(0, max_surge - surging), len(candidate_nodes))
    return to_delete, allowed + candidate_nodes[:room]
