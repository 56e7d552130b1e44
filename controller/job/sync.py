"""One reconcile of one Job (upstream's syncJob and its helpers): count
finished pods through the tracking finalizer, create or delete pods to
match parallelism, and set the terminal conditions."""

from __future__ import annotations

import asyncio
import copy
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from timonel.api import meta
from timonel.api.client.events import NORMAL, WARNING
from timonel.api.errors import ApiError
from timonel.controller.job import backoff, indexes
from timonel.controller.job import conditions as jc
from timonel.controller.job.podspec import (
    TRACKING_FINALIZER,
    generate_name,
    has_tracking_finalizer,
    indexes_to_create,
    int_or,
    is_indexed,
    is_pod_failed,
    is_suspended,
    mutate_for_job,
    past_backoff_limit_on_failure,
    pods_to_remove,
    want_active,
)
from timonel.controller.pods import (
    PODS,
    create_pod,
    delete_pod,
    filter_active_pods,
    is_pod_ready,
    parse_time,
    slow_start_batch,
)

if TYPE_CHECKING:
    from timonel.controller.job.controller import JobController

log = logging.getLogger(__name__)

JOBS = ("batch/v1", "Job")
Obj = dict[str, Any]
# Upstream's MaxPodCreateDeletePerSync and MaxUncountedPods.
MAX_PER_SYNC = 500
MAX_UNCOUNTED = 500


def job_key(job: Obj) -> str:
    return f"{meta.namespace_of(job)}/{meta.name_of(job)}"


def pod_key(pod: Obj) -> str:
    return f"{meta.namespace_of(pod)}/{meta.name_of(pod)}"


def _uid(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def _is_terminating(pod: Obj) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp")) and _phase(pod) not in (
        "Succeeded", "Failed")


async def remove_tracking_finalizer(client: Any, pod: Obj) -> bool:
    """Remove the tracking finalizer, leaving any other finalizer alone (a
    JSON patch that tests the list it replaces). True when gone or removed."""
    uid = _uid(pod)
    for _ in range(3):
        fins = list((pod.get("metadata") or {}).get("finalizers") or [])
        if TRACKING_FINALIZER not in fins:
            return True
        ops = [{"op": "test", "path": "/metadata/uid", "value": uid},
               {"op": "test", "path": "/metadata/finalizers", "value": fins},
               {"op": "replace", "path": "/metadata/finalizers",
                "value": [f for f in fins if f != TRACKING_FINALIZER]}]
        try:
            await client.patch(PODS, meta.namespace_of(pod), meta.name_of(pod), ops,
                               patch_type="json")
            return True
        except ApiError as e:
            if e.code == 404:
                return True
            if e.code not in (409, 422):
                raise
        try:
            pod = await client.get(PODS, meta.namespace_of(pod), meta.name_of(pod))
        except ApiError as e:
            if e.code == 404:
                return True
            raise
        if _uid(pod) != uid:
            return True
    return False


class JobSync:
    """One reconcile of one Job (upstream's syncJob and its helpers)."""

    def __init__(self, ctl: JobController, key: str, job: Obj) -> None:
        self.ctl = ctl
        self.client = ctl.client
        self.key = key
        self.job = job
        self.spec: Obj = job.get("spec") or {}
        self.status: Obj = job.setdefault("status", {})
        self.now = meta.now()
        unc = self.status.get("uncountedTerminatedPods") or {}
        self.uncounted_succeeded: list[str] = list(unc.get("succeeded") or [])
        self.uncounted_failed: list[str] = list(unc.get("failed") or [])
        self.finished: Obj | None = None

    @property
    def completions(self) -> int | None:
        c = self.spec.get("completions")
        return None if c is None else int(c)

    async def run(self) -> None:
        ctl, job, status = self.ctl, self.job, self.status
        old_status = copy.deepcopy(status)
        satisfied = ctl.expectations.satisfied(self.key)
        pods = await ctl._pods_for(job)
        active_pods = filter_active_pods(pods)
        active = len(active_pods)
        ready = sum(1 for p in active_pods if is_pod_ready(p))
        terminating = sum(1 for p in pods if _is_terminating(p))
        expected_rm = ctl.finalizer_expectations.get(self.key, set())
        counted = set(self.uncounted_succeeded) | set(self.uncounted_failed)
        fresh = [p for p in pods if has_tracking_finalizer(p) and _uid(p) not in expected_rm
                 and _uid(p) not in counted]
        new_succeeded = [p for p in fresh if _phase(p) == "Succeeded"]
        new_failed = [p for p in fresh if _phase(p) != "Succeeded" and is_pod_failed(p)]
        succeeded = int(status.get("succeeded") or 0) + len(new_succeeded) + len(
            self.uncounted_succeeded)
        failed = int(status.get("failed") or 0) + len(new_failed) + len(self.uncounted_failed)
        if not status.get("startTime") and not is_suspended(job):
            status["startTime"] = self.now
        self.backoff_record = backoff.next_record(
            ctl.backoff.get(self.key, backoff.BackoffRecord()), new_succeeded, new_failed)

        if jc.is_true(job, jc.SUCCESS_CRITERIA_MET):
            self.finished = jc.find(job, jc.SUCCESS_CRITERIA_MET)
        elif jc.is_true(job, jc.FAILURE_TARGET):
            target = jc.find(job, jc.FAILURE_TARGET) or {}
            self.finished = jc.new_condition(jc.FAILED, target.get("reason", ""),
                                             target.get("message", ""), self.now)
        else:
            limit = int_or(self.spec.get("backoffLimit"), 6)
            if failed > limit or past_backoff_limit_on_failure(job, pods):
                self.finished = jc.new_condition(jc.FAILURE_TARGET, *jc.BACKOFF_LIMIT_EXCEEDED,
                                                 self.now)
            elif self._past_deadline():
                self.finished = jc.new_condition(jc.FAILURE_TARGET, *jc.DEADLINE_EXCEEDED,
                                                 self.now)
            elif self.spec.get("activeDeadlineSeconds") is not None and not is_suspended(job):
                ctl.queue.add_after(self.key, max(0.5, self._deadline_left()))

        self.prev_indexes: set[int] = set()
        self.succeeded_indexes: set[int] = set()
        if is_indexed(job):
            completions = self.completions or 0
            self.prev_indexes = indexes.parse(status.get("completedIndexes"), completions)
            self.succeeded_indexes = set(self.prev_indexes)
            for p in pods:
                ix = indexes.pod_index(p)
                if (_phase(p) == "Succeeded" and has_tracking_finalizer(p) and
                        0 <= ix < completions and _uid(p) not in expected_rm):
                    self.succeeded_indexes.add(ix)
            succeeded = len(self.succeeded_indexes)

        suspend_changed = False
        if self.finished is not None:
            deleted_ready, deleted = await self._delete_active(active_pods)
            if deleted != active or not satisfied:
                # Pods may be left (or not yet in the cache): finish later.
                self.finished = None
            active -= deleted
            terminating += deleted
            ready -= deleted_ready
        else:
            manage_called = False
            if satisfied and not (job.get("metadata") or {}).get("deletionTimestamp"):
                active = await self._manage(active_pods, succeeded)
                manage_called = True
            want = self.completions
            complete = (succeeded > 0 and active == 0) if want is None else (
                succeeded >= want and active == 0)
            if complete:
                self.finished = jc.new_condition(jc.SUCCESS_CRITERIA_MET,
                                                 *jc.COMPLETIONS_REACHED, self.now)
            elif manage_called:
                suspend_changed = await self._suspend_condition()

        self.terminating = terminating
        status["active"] = active
        status["ready"] = ready
        status["terminating"] = terminating
        needs_flush = suspend_changed or any(
            old_status.get(k) != status.get(k) for k in ("active", "ready", "terminating",
                                                         "startTime"))
        await self._track(pods, needs_flush)

    def _past_deadline(self) -> bool:
        return self.spec.get("activeDeadlineSeconds") is not None and not is_suspended(
            self.job) and self._deadline_left() <= 0

    def _deadline_left(self) -> float:
        start = parse_time(self.status.get("startTime"))
        if start is None:
            return float(self.spec.get("activeDeadlineSeconds") or 0)
        elapsed = (datetime.now(UTC) - start).total_seconds()
        return float(self.spec["activeDeadlineSeconds"]) - elapsed

    async def _suspend_condition(self) -> bool:
        conds = self.status.setdefault("conditions", [])
        if is_suspended(self.job):
            if jc.ensure(conds, jc.SUSPENDED, "True", "JobSuspended", "Job suspended", self.now):
                await self.ctl.recorder.event(self.job, NORMAL, "Suspended", "Job suspended")
                return True
        elif jc.ensure(conds, jc.SUSPENDED, "False", "JobResumed", "Job resumed", self.now):
            await self.ctl.recorder.event(self.job, NORMAL, "Resumed", "Job resumed")
            # activeDeadlineSeconds counts time running, not time suspended.
            self.status["startTime"] = self.now
            return True
        if not conds:
            self.status.pop("conditions", None)
        return False

    # -- pods ------------------------------------------------------------------------

    async def _delete_active(self, pods: list[Obj]) -> tuple[int, int]:
        """Delete pods keeping their finalizers (they are counted as failed)."""
        results = await asyncio.gather(
            *(delete_pod(self.client, self.ctl.recorder, p, self.job) for p in pods),
            return_exceptions=True)
        deleted = deleted_ready = 0
        for pod, r in zip(pods, results, strict=True):
            if isinstance(r, asyncio.CancelledError):
                raise r
            if isinstance(r, BaseException):
                log.warning("deleting job pod failed pod=%s err=%s", pod_key(pod), r)
                continue
            deleted += 1
            deleted_ready += is_pod_ready(pod)
        return deleted_ready, deleted

    async def _manage(self, active_pods: list[Obj], succeeded: int) -> int:
        """Create or delete pods to match parallelism; returns the new active count."""
        ctl, job = self.ctl, self.job
        active = len(active_pods)
        want = want_active(job, succeeded, active)
        remove = pods_to_remove(job, active_pods, max(0, active - want), self.succeeded_indexes)
        if remove:
            remove = remove[:MAX_PER_SYNC]
            ctl.expectations.expect_deletions_of(self.key, [pod_key(p) for p in remove])
            removed = 0
            for pod in remove:
                # Pods removed for scaling down are not failures: drop the
                # finalizer first so they are never counted.
                try:
                    await remove_tracking_finalizer(self.client, pod)
                    if await delete_pod(self.client, ctl.recorder, pod, job):
                        removed += 1
                    else:
                        ctl.expectations.deletion_observed_of(self.key, pod_key(pod))
                except ApiError:
                    ctl.expectations.deletion_observed_of(self.key, pod_key(pod))
                    raise
            return active - removed
        diff = min(want - active, MAX_PER_SYNC)
        if diff <= 0:
            return active
        wait = backoff.remaining(self.backoff_record, datetime.now(UTC), ctl.backoff_base,
                                 ctl.backoff_max)
        if wait > 0:
            log.debug("job pod creation backing off job=%s wait=%.1fs", self.key, wait)
            ctl.queue.add_after(self.key, wait)
            return active
        todo: list[int | None]
        if is_indexed(job):
            todo = list(indexes_to_create(job, diff, self.succeeded_indexes, active_pods))
        else:
            todo = [None] * diff
        if not todo:
            return active
        template = self.spec.get("template") or {}
        ctl.expectations.expect_creations(self.key, len(todo))
        pending = iter(todo)

        async def create_one() -> None:
            index = next(pending)
            await create_pod(self.client, ctl.recorder, template, job,
                             generate_name=generate_name(job, index),
                             mutate=lambda pod: mutate_for_job(pod, job, index))

        created, error = await slow_start_batch(len(todo), 1, create_one)
        skipped = len(todo) - created
        for _ in range(skipped):
            ctl.expectations.creation_observed(self.key)
        if error is not None:
            raise error
        return active + created

    # -- counting and finishing ----------------------------------------------------------

    def _clean_uncounted(self, with_finalizer: set[str]) -> bool:
        """Move UIDs whose pods lost the finalizer from the uncounted lists
        into the counters."""
        changed = False
        keep = [u for u in self.uncounted_succeeded if u in with_finalizer]
        if len(keep) != len(self.uncounted_succeeded):
            self.status["succeeded"] = int(self.status.get("succeeded") or 0) + len(
                self.uncounted_succeeded) - len(keep)
            self.uncounted_succeeded = keep
            changed = True
        keep = [u for u in self.uncounted_failed if u in with_finalizer]
        if len(keep) != len(self.uncounted_failed):
            self.status["failed"] = int(self.status.get("failed") or 0) + len(
                self.uncounted_failed) - len(keep)
            self.uncounted_failed = keep
            changed = True
        return changed

    async def _track(self, pods: list[Obj], needs_flush: bool) -> None:
        ctl, job = self.ctl, self.job
        indexed = is_indexed(job)
        completions = self.completions or 0
        expected_rm = ctl.finalizer_expectations.get(self.key, set())
        with_finalizer = {_uid(p) for p in pods
                          if has_tracking_finalizer(p) and _uid(p) not in expected_rm}
        needs_flush |= self._clean_uncounted(with_finalizer)
        job_deleting = bool((job.get("metadata") or {}).get("deletionTimestamp"))
        failing = self.finished is not None and self.finished["type"] in (jc.FAILURE_TARGET,
                                                                          jc.FAILED)
        to_release: list[Obj] = []
        new_indexes: list[int] = []
        reached_max = False
        if indexed:
            pods = sorted(pods, key=indexes.pod_index)
        unc_s, unc_f = set(self.uncounted_succeeded), set(self.uncounted_failed)
        for pod in pods:
            uid = _uid(pod)
            if not has_tracking_finalizer(pod) or uid in expected_rm:
                continue
            failed = is_pod_failed(pod)
            if not (job_deleting or self.finished is not None or _phase(pod) == "Succeeded"
                    or failed):
                continue
            to_release.append(pod)
            if _phase(pod) == "Succeeded" and uid not in unc_f:
                if indexed:
                    ix = indexes.pod_index(pod)
                    if 0 <= ix < completions and ix not in self.prev_indexes:
                        new_indexes.append(ix)
                        needs_flush = True
                elif uid not in unc_s:
                    self.uncounted_succeeded.append(uid)
                    unc_s.add(uid)
                    needs_flush = True
            elif failed or failing:
                ix = indexes.pod_index(pod)
                if uid not in unc_f and (not indexed or 0 <= ix < completions):
                    self.uncounted_failed.append(uid)
                    unc_f.add(uid)
                    needs_flush = True
            if len(new_indexes) + len(self.uncounted_succeeded) + len(
                    self.uncounted_failed) >= MAX_UNCOUNTED:
                reached_max = True
                break
        if indexed:
            self.succeeded_indexes |= set(new_indexes)
            text = indexes.format_intervals(self.succeeded_indexes)
            if text != (self.status.get("completedIndexes") or ""):
                needs_flush = True
            if text:
                self.status["completedIndexes"] = text
            else:
                self.status.pop("completedIndexes", None)
            self.status["succeeded"] = len(self.succeeded_indexes)
        conds = self.status.setdefault("conditions", [])
        if self.finished is not None and self.finished["type"] == jc.FAILURE_TARGET:
            conds.append(self.finished)
            needs_flush = True
            self.finished = jc.new_condition(jc.FAILED, self.finished["reason"],
                                             self.finished["message"], self.now)
        if self.finished is not None and self.finished["type"] == jc.SUCCESS_CRITERIA_MET:
            if not jc.is_true(job, jc.SUCCESS_CRITERIA_MET):
                conds.append(self.finished)
                needs_flush = True
            self.finished = jc.new_condition(jc.COMPLETE, self.finished.get("reason", ""),
                                             self.finished.get("message", ""), self.now)
        if not conds:
            self.status.pop("conditions", None)

        if needs_flush:
            await self._write_status()
            ctl.backoff[self.key] = self.backoff_record
            needs_flush = False
        if to_release:
            uids = [_uid(p) for p in to_release]
            ctl.finalizer_expectations.setdefault(self.key, set()).update(uids)
            results = await asyncio.gather(
                *(remove_tracking_finalizer(self.client, p) for p in to_release),
                return_exceptions=True)
            error: BaseException | None = None
            for pod, r in zip(to_release, results, strict=True):
                if r is True:
                    with_finalizer.discard(_uid(pod))
                else:
                    ctl.finalizer_expectations[self.key].discard(_uid(pod))
                    if isinstance(r, BaseException):
                        error = error or r
            needs_flush |= self._clean_uncounted(with_finalizer)
            if error is not None:
                if needs_flush:
                    await self._write_status()
                raise error
        finished = not reached_max and self._enact_finished()
        if finished or needs_flush:
            await self._write_status()
            if finished:
                await self._record_finished()

    def _enact_finished(self) -> bool:
        if self.finished is None or self.uncounted_succeeded or self.uncounted_failed:
            return False
        if self.terminating > 0:
            return False
        cond = self.finished
        conds = self.status.setdefault("conditions", [])
        jc.ensure(conds, cond["type"], "True", cond.get("reason", ""), cond.get("message", ""),
                  self.now)
        if cond["type"] == jc.COMPLETE:
            self.status["completionTime"] = self.now
        return True

    async def _record_finished(self) -> None:
        cond = self.finished or {}
        job = self.job
        if cond.get("type") == jc.COMPLETE:
            completions = self.completions
            if completions is not None and int(self.status.get("succeeded") or 0) > completions:
                await self.ctl.recorder.event(job, WARNING, "TooManySucceededPods",
                                              "Too many succeeded pods running after completion "
                                              "count reached")
            await self.ctl.recorder.event(job, NORMAL, "Completed", "Job completed")
        else:
            await self.ctl.recorder.event(job, WARNING, cond.get("reason", ""),
                                          cond.get("message", ""))
        self.ctl.backoff.pop(self.key, None)
        log.info("job finished job=%s condition=%s reason=%s", self.key, cond.get("type"),
                 cond.get("reason"))

    def _serialized_status(self) -> Obj:
        """The status as upstream serializes it: zero counters omitted, the
        uncounted lists only when non-empty, `ready`/`terminating` always."""
        status = dict(self.status)
        unc: Obj = {}
        if self.uncounted_succeeded:
            unc["succeeded"] = list(self.uncounted_succeeded)
        if self.uncounted_failed:
            unc["failed"] = list(self.uncounted_failed)
        status["uncountedTerminatedPods"] = unc
        for k in ("active", "succeeded", "failed"):
            if not status.get(k):
                status.pop(k, None)
        return status

    async def _write_status(self) -> None:
        body = {**self.job, "status": self._serialized_status()}
        updated = await self.client.update_status(JOBS, body)
        self.job["metadata"]["resourceVersion"] = updated["metadata"]["resourceVersion"]
