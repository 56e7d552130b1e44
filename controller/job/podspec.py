"""What a Job's pods look like and which ones to create or remove.

Pure functions over plain dicts; the controller does the API calls.
"""

from __future__ import annotations

import copy
from typing import Any

from timonel.controller.job import indexes
from timonel.controller.pods import is_pod_ready, sort_active_pods

Obj = dict[str, Any]

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"


def int_or(value: Any, default: int) -> int:
    return default if value is None else int(value)


def has_tracking_finalizer(pod: Obj) -> bool:
    return TRACKING_FINALIZER in ((pod.get("metadata") or {}).get("finalizers") or [])


def is_indexed(job: Obj) -> bool:
    return (job.get("spec") or {}).get("completionMode") == "Indexed"


def is_suspended(job: Obj) -> bool:
    return bool((job.get("spec") or {}).get("suspend"))


def is_pod_failed(pod: Obj) -> bool:
    """Failed, or being deleted before it succeeded: a pod deleted by anyone
    (eviction, node loss) counts against backoffLimit, as upstream without
    a podFailurePolicy."""
    phase = (pod.get("status") or {}).get("phase")
    if phase == "Failed":
        return True
    return bool((pod.get("metadata") or {}).get("deletionTimestamp")) and phase != "Succeeded"


def mutate_for_job(pod: Obj, job: Obj, index: int | None) -> None:
    """Turn a pod made from the Job's template into one of its pods: the
    tracking finalizer, and for Indexed Jobs the index as annotation, label,
    hostname and JOB_COMPLETION_INDEX env var."""
    md = pod["metadata"]
    fins = md.setdefault("finalizers", [])
    if TRACKING_FINALIZER not in fins:
        fins.append(TRACKING_FINALIZER)
    if index is None:
        return
    md.setdefault("annotations", {})[indexes.COMPLETION_INDEX] = str(index)
    md.setdefault("labels", {})[indexes.COMPLETION_INDEX] = str(index)
    spec = pod["spec"]
    if not spec.get("hostname"):
        spec["hostname"] = f"{(job.get('metadata') or {}).get('name', '')}-{index}"
    env_var = {"name": COMPLETION_INDEX_ENV, "valueFrom": {"fieldRef": {
        "fieldPath": f"metadata.annotations['{indexes.COMPLETION_INDEX}']"}}}
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            env = c.setdefault("env", [])
            if not any(e.get("name") == COMPLETION_INDEX_ENV for e in env):
                env.append(copy.deepcopy(env_var))


def generate_name(job: Obj, index: int | None) -> str:
    name = (job.get("metadata") or {}).get("name", "")
    return f"{name}-" if index is None else f"{name}-{index}-"


def want_active(job: Obj, succeeded: int, active: int) -> int:
    """How many pods should run now (upstream's manageJob arithmetic)."""
    spec = job.get("spec") or {}
    parallelism = int_or(spec.get("parallelism"), 1)
    completions = spec.get("completions")
    if is_suspended(job):
        return 0
    if completions is None:
        # Any success ends the Job: after one, leave what runs alone.
        return active if succeeded > 0 else parallelism
    return max(0, min(int(completions) - succeeded, parallelism))


def _pod_index_rank(pod: Obj) -> tuple[int, int, str]:
    """Which of several pods of one index to keep: ready, then running, then older."""
    phase = (pod.get("status") or {}).get("phase")
    created = str((pod.get("metadata") or {}).get("creationTimestamp") or "")
    return (0 if is_pod_ready(pod) else 1, 0 if phase == "Running" else 1, created)


def pods_to_remove(job: Obj, active_pods: list[Obj], remove_at_least: int,
                   succeeded_indexes: set[int]) -> list[Obj]:
    """Active pods to delete: for Indexed Jobs first those with a bad,
    out-of-range, already succeeded or duplicated index; then the most
    expendable ones until `remove_at_least` are chosen."""
    chosen: list[Obj] = []
    rest = list(active_pods)
    if is_indexed(job):
        completions = int((job.get("spec") or {}).get("completions") or 0)
        by_index: dict[int, list[Obj]] = {}
        rest = []
        for pod in active_pods:
            ix = indexes.pod_index(pod)
            if ix == indexes.UNKNOWN or ix >= completions or ix in succeeded_indexes:
                chosen.append(pod)
            else:
                by_index.setdefault(ix, []).append(pod)
        for pods in by_index.values():
            ranked = sorted(pods, key=_pod_index_rank)
            rest.append(ranked[0])
            chosen.extend(ranked[1:])
    remove_at_least -= len(chosen)
    if remove_at_least > 0:
        chosen.extend(sort_active_pods(rest)[:remove_at_least])
    return chosen


def indexes_to_create(job: Obj, count: int, succeeded_indexes: set[int],
                      active_pods: list[Obj]) -> list[int]:
    completions = int((job.get("spec") or {}).get("completions") or 0)
    active = {indexes.pod_index(p) for p in active_pods}
    return indexes.first_pending(count, completions, succeeded_indexes, active)


def past_backoff_limit_on_failure(job: Obj, pods: list[Obj]) -> bool:
    """With restartPolicy OnFailure, container restarts of running pods count
    against backoffLimit too."""
    spec = job.get("spec") or {}
    tmpl_spec = (spec.get("template") or {}).get("spec") or {}
    if tmpl_spec.get("restartPolicy") != "OnFailure":
        return False
    restarts = 0
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") in ("Running", "Pending"):
            for key in ("initContainerStatuses", "containerStatuses"):
                restarts += sum(int(c.get("restartCount") or 0) for c in status.get(key) or [])
    limit = int_or(spec.get("backoffLimit"), 6)
    return restarts > 0 if limit == 0 else restarts >= limit
