"""The Job controller: run pods to completion, count them, finish the Job.

Counting is crash-safe the way upstream's is: every pod carries the
`batch.kubernetes.io/job-tracking` finalizer; a finished pod's UID first
goes into `status.uncountedTerminatedPods`, then its finalizer is removed,
then the UID moves into the `succeeded`/`failed` counters (Indexed Jobs
record succeeded indexes in `completedIndexes` instead). A restart at any
point neither loses a pod nor counts one twice. The terminal condition
comes in two steps as in newer upstream: `SuccessCriteriaMet` or
`FailureTarget` first, `Complete` or `Failed` once no pod is left running.
"""

from __future__ import annotations

import asyncio
import copy
import logging

from timonel.api import meta
from timonel.api.client import WorkQueue, run_workers
from timonel.api.client.events import WARNING
from timonel.api.errors import ApiError
from timonel.api.selectors import from_label_selector_dict, matches
from timonel.controller import ownership
from timonel.controller.context import ControllerContext
from timonel.controller.expectations import UIDTrackingExpectations
from timonel.controller.job import backoff
from timonel.controller.job import conditions as jc
from timonel.controller.job.podspec import has_tracking_finalizer
from timonel.controller.job.sync import (
    JOBS,
    JobSync,
    Obj,
    job_key,
    pod_key,
    remove_tracking_finalizer,
)
from timonel.controller.pods import PODS, controller_of

log = logging.getLogger(__name__)


def _uid(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


class JobController:
    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.recorder = ctx.recorder
        self.jobs = ctx.informers.informer(JOBS)
        self.pods = ctx.informers.informer(PODS)
        ownership.ensure_ownership_indexes(self.pods)
        self.queue: WorkQueue[str] = WorkQueue(name="job")
        self.orphans: WorkQueue[str] = WorkQueue(name="job-orphan-pods")
        self.expectations = UIDTrackingExpectations()
        # job key -> pod UIDs whose finalizer removal we wait to see
        self.finalizer_expectations: dict[str, set[str]] = {}
        self.backoff: dict[str, backoff.BackoffRecord] = {}
        extra = ctx.options.extra
        self.backoff_base = float(extra.get("job_backoff_base", backoff.DEFAULT_BASE))  # type: ignore[arg-type]
        self.backoff_max = float(extra.get("job_backoff_max", backoff.DEFAULT_MAX))  # type: ignore[arg-type]

    # -- events ------------------------------------------------------------------

    def register(self) -> None:
        self.jobs.add_handler(lambda j: self.queue.add(job_key(j)),
                              lambda o, n: self.queue.add(job_key(n)),
                              lambda j: self.queue.add(job_key(j)))
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    def _job_of(self, pod: Obj, ref: Obj | None = None) -> Obj | None:
        ns = meta.namespace_of(pod)
        return ownership.resolve_controller(ref if ref is not None else controller_of(pod), "Job",
                                            lambda name: self.jobs.get(ns, name))

    def _finalizer_observed(self, key: str, pod: Obj) -> None:
        expected = self.finalizer_expectations.get(key)
        if expected is not None:
            expected.discard(_uid(pod))

    def _pod_added(self, pod: Obj) -> None:
        job = self._job_of(pod)
        if job is None:
            self._orphan(pod)
            return
        key = job_key(job)
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            self.expectations.deletion_observed_of(key, pod_key(pod))
        else:
            self.expectations.creation_observed(key)
        self.queue.add(key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if (old.get("metadata") or {}).get("resourceVersion") == (new.get("metadata") or {}).get(
                "resourceVersion"):
            return
        old_ref, new_ref = controller_of(old), controller_of(new)
        if old_ref != new_ref and old_ref is not None:
            old_job = self._job_of(old, old_ref)
            if old_job is not None:
                self._finalizer_observed(job_key(old_job), new)
                self.queue.add(job_key(old_job))
        job = self._job_of(new)
        if job is None:
            self._orphan(new)
            return
        key = job_key(job)
        if (new.get("metadata") or {}).get("deletionTimestamp"):
            self.expectations.deletion_observed_of(key, pod_key(new))
        if not has_tracking_finalizer(new):
            self._finalizer_observed(key, new)
        self.queue.add(key)

    def _pod_deleted(self, pod: Obj) -> None:
        job = self._job_of(pod)
        if job is None:
            return
        key = job_key(job)
        self.expectations.deletion_observed_of(key, pod_key(pod))
        self._finalizer_observed(key, pod)
        self.queue.add(key)

    def _orphan(self, pod: Obj) -> None:
        if has_tracking_finalizer(pod):
            self.orphans.add(pod_key(pod))
        if controller_of(pod) is None:
            # A Job might adopt it.
            for job in self.jobs.list(meta.namespace_of(pod)):
                try:
                    sel = from_label_selector_dict((job.get("spec") or {}).get("selector"))
                except ApiError:
                    continue
                if matches(sel, meta.labels_of(pod)):
                    self.queue.add(job_key(job))

    # -- running -------------------------------------------------------------------

    async def run(self) -> None:
        workers = max(1, self.ctx.options.workers)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(run_workers(self.queue, self.sync, workers))
            tg.create_task(run_workers(self.orphans, self.sync_orphan, 1))

    async def sync_orphan(self, key: str) -> None:
        """Remove the tracking finalizer from a pod whose Job is gone, or
        nothing would ever let it be deleted."""
        ns, _, name = key.partition("/")
        pod = self.pods.get(ns, name)
        if pod is None or not has_tracking_finalizer(pod):
            return
        ref = controller_of(pod)
        if ref is not None and ref.get("kind") == "Job":
            if self._job_of(pod) is not None:
                return
            try:
                live = await self.client.get(JOBS, ns, str(ref.get("name") or ""))
                if _uid(live) == ref.get("uid"):
                    return
            except ApiError as e:
                if e.code != 404:
                    raise
        log.info("removing job tracking finalizer from orphan pod pod=%s", key)
        await remove_tracking_finalizer(self.client, pod)

    # -- sync ------------------------------------------------------------------------

    async def _pods_for(self, job: Obj) -> list[Obj]:
        try:
            selector = from_label_selector_dict((job.get("spec") or {}).get("selector"))
        except ApiError:
            return ownership.controlled_by(self.pods, job)
        return await ownership.claim(
            self.client, PODS, job, selector, ownership.candidates(self.pods, job),
            can_adopt=ownership.owner_recheck(self.client, JOBS, job))

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        shared = self.jobs.get(ns, name)
        if shared is None:
            self.expectations.delete(key)
            self.finalizer_expectations.pop(key, None)
            self.backoff.pop(key, None)
            return
        if jc.is_finished(shared):
            self.backoff.pop(key, None)
            return
        mode = (shared.get("spec") or {}).get("completionMode") or "NonIndexed"
        if mode not in ("NonIndexed", "Indexed"):
            await self.recorder.event(shared, WARNING, "UnknownCompletionMode",
                                      "Skipped Job sync because completion mode is unknown")
            return
        job = copy.deepcopy(shared)
        await JobSync(self, key, job).run()


