"""Deployment status and conditions, as upstream computes them: the counts
`kubectl rollout status` reads, `Available`, and `Progressing` with its
reasons and the progress deadline. Pure functions of the objects and a
clock, so the rules are unit-tested."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from timonel.api import meta
from timonel.controller.deployment.util import (
    actual_replicas_sum,
    available_replicas_sum,
    deployment_complete,
    deployment_progressing,
    max_unavailable,
    ready_replicas_sum,
    replicas,
    spec_replicas_sum,
)
from timonel.controller.pods import parse_time

Obj = dict[str, Any]

PROGRESSING, AVAILABLE, REPLICA_FAILURE = "Progressing", "Available", "ReplicaFailure"

# Progressing reasons (upstream's deployment/util).
REPLICA_SET_UPDATED = "ReplicaSetUpdated"
FAILED_RS_CREATE = "ReplicaSetCreateError"
NEW_REPLICA_SET = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
# Available reasons.
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

MAX_INT32 = 2**31 - 1


def _fmt(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def new_condition(ctype: str, status: str, reason: str, message: str,
                  now: datetime | None = None) -> Obj:
    stamp = _fmt(now) if now is not None else meta.now()
    return {"type": ctype, "status": status, "lastUpdateTime": stamp,
            "lastTransitionTime": stamp, "reason": reason, "message": message}


def get_condition(status: Obj, ctype: str) -> Obj | None:
    for c in status.get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == ctype:
            return c
    return None


def set_condition(status: Obj, cond: Obj) -> None:
    """Upstream's SetDeploymentCondition: nothing changes when status and
    reason are the same; the transition time stays while the status does."""
    cur = get_condition(status, cond["type"])
    if cur is not None and cur.get("status") == cond["status"] and \
            cur.get("reason") == cond["reason"]:
        return
    if cur is not None and cur.get("status") == cond["status"]:
        cond = {**cond, "lastTransitionTime": cur.get("lastTransitionTime")}
    status["conditions"] = [*(c for c in status.get("conditions") or []
                              if c.get("type") != cond["type"]), cond]


def remove_condition(status: Obj, ctype: str) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != ctype]
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)


def has_progress_deadline(d: Obj) -> bool:
    value = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return value is not None and int(value) != MAX_INT32


def progress_deadline(d: Obj) -> int:
    return int((d.get("spec") or {}).get("progressDeadlineSeconds") or 0)


def calculate_status(all_rss: list[Obj | None], new_rs: Obj | None, d: Obj,
                     now: datetime | None = None) -> Obj:
    """Counts from the ReplicaSets' statuses and the Available condition
    (upstream's calculateStatus); zero counts are left out, as upstream's
    omitempty does."""
    available = available_replicas_sum(all_rss)
    unavailable = max(spec_replicas_sum(all_rss) - available, 0)
    old = d.get("status") or {}
    status: Obj = {}
    counts = {
        "observedGeneration": int((d.get("metadata") or {}).get("generation") or 0),
        "replicas": actual_replicas_sum(all_rss),
        "updatedReplicas": actual_replicas_sum([new_rs]),
        "readyReplicas": ready_replicas_sum(all_rss),
        "availableReplicas": available,
        "unavailableReplicas": unavailable,
    }
    status.update({k: v for k, v in counts.items() if v})
    conditions = [dict(c) for c in old.get("conditions") or [] if isinstance(c, dict)]
    if conditions:
        status["conditions"] = conditions
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    if available >= replicas(d) - max_unavailable(d):
        set_condition(status, new_condition(AVAILABLE, "True", MIN_AVAILABLE,
                                            "Deployment has minimum availability.", now))
    else:
        set_condition(status, new_condition(AVAILABLE, "False", MIN_UNAVAILABLE,
                                            "Deployment does not have minimum availability.", now))
    return status


def timed_out(d: Obj, status: Obj, now: datetime | None = None) -> bool:
    """No progress recorded for progressDeadlineSeconds (upstream's DeploymentTimedOut)."""
    if not has_progress_deadline(d):
        return False
    cond = get_condition(status, PROGRESSING)
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return False
    now = now or datetime.now(UTC)
    return (now - since).total_seconds() > progress_deadline(d)


def rollout_status(all_rss: list[Obj | None], new_rs: Obj | None, d: Obj,
                   replica_failure: Obj | None = None, now: datetime | None = None) -> Obj:
    """The status with Progressing worked out (upstream's syncRolloutStatus):
    complete, progressing, or past its deadline."""
    status = calculate_status(all_rss, new_rs, d, now)
    if not has_progress_deadline(d):
        remove_condition(status, PROGRESSING)
    current = get_condition(d.get("status") or {}, PROGRESSING)
    complete = int(status.get("replicas") or 0) == int(status.get("updatedReplicas") or 0) and \
        current is not None and current.get("reason") == NEW_RS_AVAILABLE
    if has_progress_deadline(d) and not complete:
        name = meta.name_of(new_rs) if new_rs is not None else ""
        if deployment_complete(d, status):
            msg = f'ReplicaSet "{name}" has successfully progressed.' if new_rs is not None \
                else f'Deployment "{meta.name_of(d)}" has successfully progressed.'
            set_condition(status, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, msg, now))
        elif deployment_progressing(d, status):
            msg = f'ReplicaSet "{name}" is progressing.' if new_rs is not None \
                else f'Deployment "{meta.name_of(d)}" is progressing.'
            cond = new_condition(PROGRESSING, "True", REPLICA_SET_UPDATED, msg, now)
            # Progress moves lastUpdateTime even when the reason stays, which
            # set_condition alone would not do.
            if current is not None:
                if current.get("status") == "True":
                    cond["lastTransitionTime"] = current.get("lastTransitionTime")
                remove_condition(status, PROGRESSING)
            set_condition(status, cond)
        elif timed_out(d, status, now):
            msg = f'ReplicaSet "{name}" has timed out progressing.' if new_rs is not None \
                else f'Deployment "{meta.name_of(d)}" has timed out progressing.'
            set_condition(status, new_condition(PROGRESSING, "False", TIMED_OUT, msg, now))
    if replica_failure is not None:
        set_condition(status, replica_failure)
    else:
        remove_condition(status, REPLICA_FAILURE)
    return status


def replica_failure(all_rss: list[Obj | None], new_rs: Obj | None) -> Obj | None:
    """The first ReplicaFailure of the ReplicaSets, new one first, as a
    Deployment condition."""
    ordered = [new_rs, *(rs for rs in all_rss if rs is not new_rs)]
    for rs in ordered:
        if rs is None:
            continue
        cond = get_condition(rs.get("status") or {}, REPLICA_FAILURE)
        if cond is not None:
            stamp = cond.get("lastTransitionTime") or meta.now()
            return {"type": REPLICA_FAILURE, "status": cond.get("status", "True"),
                    "lastUpdateTime": stamp, "lastTransitionTime": stamp,
                    "reason": cond.get("reason", ""), "message": cond.get("message", "")}
    return None


def stuck_requeue_after(d: Obj, status: Obj, now: datetime | None = None) -> float | None:
    """When to look again at a rollout that made no progress, to notice its
    deadline passing (upstream's requeueStuckDeployment); None: no need."""
    current = get_condition(d.get("status") or {}, PROGRESSING)
    if not has_progress_deadline(d) or current is None:
        return None
    if deployment_complete(d, status) or current.get("reason") == TIMED_OUT:
        return None
    since = parse_time(current.get("lastUpdateTime"))
    if since is None:
        return None
    now = now or datetime.now(UTC)
    after = progress_deadline(d) - (now - since).total_seconds()
    return 0.0 if after < 1 else after + 1


def paused_condition(d: Obj, now: datetime | None = None) -> Obj | None:
    """The Progressing condition pausing or resuming calls for, if any
    (upstream's checkPausedConditions)."""
    if not has_progress_deadline(d):
        return None
    cond = get_condition(d.get("status") or {}, PROGRESSING)
    if cond is not None and cond.get("reason") == TIMED_OUT:
        return None
    paused_exists = cond is not None and cond.get("reason") == PAUSED
    paused = bool((d.get("spec") or {}).get("paused"))
    if paused and not paused_exists:
        return new_condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused", now)
    if not paused and paused_exists:
        return new_condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed", now)
    return None
