"""Whether a toleration tolerates a taint: one rule for the scheduler, the
node lifecycle controller and the DaemonSet controller."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    """Upstream's Toleration.ToleratesTaint: an empty effect matches every
    effect, an empty key with Exists matches every key, Equal (the default
    operator) compares values, Exists ignores them."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    if op == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def tolerated_by_any(taint: dict[str, Any], tolerations: Iterable[dict[str, Any]]) -> bool:
    return any(tolerates(t, taint) for t in tolerations)
