"""Pod failure backoff for Jobs: after a failure the next pod waits
base * 2^(failures-1) seconds (upstream: 10 s doubling, at most 10 min),
counting the failures since the last success.

Kept in memory per Job like upstream's backoffStore; the record grows from
the pods each sync newly counts, so it needs nothing but pod finish times.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from timonel.controller.pods import parse_time, pod_condition

DEFAULT_BASE = 10.0
DEFAULT_MAX = 600.0


@dataclass
class BackoffRecord:
    failures_after_last_success: int = 0
    last_failure: datetime | None = None


def finished_time(pod: dict[str, Any]) -> datetime:
    """When a pod finished: its containers' latest finishedAt (all must have
    terminated), else its Ready=False transition, else its deletion minus
    grace period, else its creation (upstream's getFinishedTime)."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    latest: datetime | None = None
    for cs in statuses:
        term = (cs.get("state") or {}).get("terminated")
        t = parse_time((term or {}).get("finishedAt"))
        if t is None:
            latest = None
            break
        latest = t if latest is None or t > latest else latest
    if latest is not None:
        return latest
    ready = pod_condition(pod, "Ready")
    if ready is not None and ready.get("status") == "False":
        t = parse_time(ready.get("lastTransitionTime"))
        if t is not None:
            return t
    md = pod.get("metadata") or {}
    deleted = parse_time(md.get("deletionTimestamp"))
    if deleted is not None:
        return deleted - timedelta(seconds=int(md.get("deletionGracePeriodSeconds") or 0))
    return parse_time(md.get("creationTimestamp")) or datetime.now(UTC)


def next_record(old: BackoffRecord, new_succeeded: list[dict[str, Any]],
                new_failed: list[dict[str, Any]]) -> BackoffRecord:
    """The record after this sync's newly counted pods: a success resets the
    count to the failures that finished after the latest success."""
    if not new_failed and not new_succeeded:
        return old
    failed_times = sorted(finished_time(p) for p in new_failed)
    if not new_succeeded:
        return BackoffRecord(old.failures_after_last_success + len(failed_times),
                             failed_times[-1])
    last_success = max(finished_time(p) for p in new_succeeded)
    after = [t for t in failed_times if t > last_success]
    return BackoffRecord(len(after), after[-1] if after else None)


def backoff_delay(failures: int, base: float = DEFAULT_BASE, cap: float = DEFAULT_MAX) -> float:
    """base * 2^(failures-1), capped; 0 without failures."""
    if failures <= 0:
        return 0.0
    delay = base
    for _ in range(1, failures):
        delay *= 2
        if delay >= cap:
            return cap
    return min(delay, cap)


def remaining(record: BackoffRecord, now: datetime, base: float = DEFAULT_BASE,
              cap: float = DEFAULT_MAX) -> float:
    """Seconds to wait before creating the next pod (0: go ahead)."""
    if record.failures_after_last_success <= 0 or record.last_failure is None:
        return 0.0
    delay = backoff_delay(record.failures_after_last_success, base, cap)
    elapsed = (now - record.last_failure).total_seconds()
    return max(0.0, delay - elapsed)
