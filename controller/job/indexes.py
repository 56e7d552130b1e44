"""Completion indexes of Indexed Jobs: the `batch.kubernetes.io/job-completion-index`
annotation on pods and the `status.completedIndexes` interval string
("1,3-5,7") upstream writes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
UNKNOWN = -1


def pod_index(pod: dict[str, Any]) -> int:
    """The pod's completion index, UNKNOWN when missing or malformed (the
    annotation wins over the label, as upstream)."""
    md = pod.get("metadata") or {}
    raw = (md.get("annotations") or {}).get(COMPLETION_INDEX)
    if raw is None:
        raw = (md.get("labels") or {}).get(COMPLETION_INDEX)
    if raw is None:
        return UNKNOWN
    text = str(raw)
    if not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        return UNKNOWN
    return int(text)


def parse(text: str | None, completions: int) -> set[int]:
    """The indexes of an interval string, dropping malformed parts and
    indexes outside [0, completions) like upstream's parseIndexesFromString."""
    out: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        first, sep, last = part.partition("-")
        try:
            lo = int(first)
            hi = int(last) if sep else lo
        except ValueError:
            continue
        if lo < 0 or hi < lo:
            continue
        out.update(range(lo, min(hi, completions - 1) + 1))
    return out


def format_intervals(indexes: Iterable[int]) -> str:
    """Sorted indexes as upstream's compact string: runs of three or more
    become `a-b`, a run of two stays `a,b`."""
    items = sorted(set(indexes))
    parts: list[str] = []
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        if j == i:
            parts.append(str(items[i]))
        elif j == i + 1:
            parts.extend((str(items[i]), str(items[j])))
        else:
            parts.append(f"{items[i]}-{items[j]}")
        i = j + 1
    return ",".join(parts)


def first_pending(count: int, completions: int, *exclude: set[int]) -> list[int]:
    """The `count` lowest indexes below `completions` not in any of `exclude`."""
    out: list[int] = []
    taken = set().union(*exclude) if exclude else set()
    for ix in range(completions):
        if len(out) >= count:
            break
        if ix not in taken:
            out.append(ix)
    return out
