"""Job conditions and status helpers (batch/v1 JobCondition shapes)."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

COMPLETE, FAILED = "Complete", "Failed"
SUCCESS_CRITERIA_MET, FAILURE_TARGET = "SuccessCriteriaMet", "FailureTarget"
SUSPENDED = "Suspended"

BACKOFF_LIMIT_EXCEEDED = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")
COMPLETIONS_REACHED = ("CompletionsReached", "Reached expected number of succeeded pods")


def new_condition(type_: str, reason: str, message: str, now: str,
                  status: str = "True") -> Obj:
    return {"type": type_, "status": status, "lastProbeTime": now, "lastTransitionTime": now,
            "reason": reason, "message": message}


def find(job: Obj, type_: str) -> Obj | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == type_:
            return c
    return None


def is_true(job: Obj, type_: str) -> bool:
    c = find(job, type_)
    return c is not None and c.get("status") == "True"


def is_finished(job: Obj) -> bool:
    """Complete or Failed (upstream's IsJobFinished)."""
    return is_true(job, COMPLETE) or is_true(job, FAILED)


def finish_time(job: Obj) -> str | None:
    """When a finished Job finished: the transition of its terminal condition."""
    for type_ in (COMPLETE, FAILED):
        c = find(job, type_)
        if c is not None and c.get("status") == "True":
            return str(c.get("lastTransitionTime") or "") or None
    return None


def ensure(conditions: list[Obj], type_: str, status: str, reason: str, message: str,
           now: str) -> bool:
    """Set a condition in place (upstream's ensureJobConditionStatus): a new
    one is added only when its status is True; the transition time moves only
    when the status changes. Returns whether anything changed."""
    for c in conditions:
        if c.get("type") != type_:
            continue
        if c.get("status") == status and c.get("reason") == reason and c.get("message") == message:
            return False
        if c.get("status") != status:
            c["lastTransitionTime"] = now
        c.update(status=status, reason=reason, message=message, lastProbeTime=now)
        return True
    if status != "True":
        return False
    conditions.append(new_condition(type_, reason, message, now, status))
    return True
