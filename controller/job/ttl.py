"""TTL after finished: delete a finished Job (and, in the foreground, its
pods) `ttlSecondsAfterFinished` seconds after it completed or failed
(upstream's ttlafterfinished controller)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from timonel.api import meta
from timonel.api.client import Informer, WorkQueue, run_workers
from timonel.api.errors import ApiError
from timonel.controller.context import ControllerContext
from timonel.controller.job import conditions as jc
from timonel.controller.pods import parse_time

log = logging.getLogger(__name__)

JOBS = ("batch/v1", "Job")


def expires_in(job: dict[str, Any], now: datetime) -> float | None:
    """Seconds until a finished Job with a TTL may be deleted (<= 0: now);
    None when it has no TTL, is not finished, or is already being deleted."""
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    if ttl is None or (job.get("metadata") or {}).get("deletionTimestamp"):
        return None
    finished = parse_time(jc.finish_time(job))
    if finished is None:
        return None
    return (finished - now).total_seconds() + float(ttl)


class TTLAfterFinished:
    def __init__(self, ctx: ControllerContext, jobs: Informer) -> None:
        self.client = ctx.client
        self.jobs = jobs
        self.queue: WorkQueue[str] = WorkQueue(name="ttl-after-finished")

    def register(self) -> None:
        self.jobs.add_handler(self._changed, lambda old, new: self._changed(new))

    def _changed(self, job: dict[str, Any]) -> None:
        if expires_in(job, datetime.now(UTC)) is not None:
            self.queue.add(f"{meta.namespace_of(job)}/{meta.name_of(job)}")

    async def run(self) -> None:
        await run_workers(self.queue, self.sync, 1)

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        job = self.jobs.get(ns, name)
        if job is None:
            return
        left = expires_in(job, datetime.now(UTC))
        if left is None:
            return
        if left > 0:
            self.queue.add_after(key, left)
            return
        # The TTL may have just been changed: decide on the live object.
        try:
            live = await self.client.get(JOBS, ns, name)
        except ApiError as e:
            if e.code == 404:
                return
            raise
        left = expires_in(live, datetime.now(UTC))
        if left is None:
            return
        if left > 0:
            self.queue.add_after(key, left)
            return
        md = live["metadata"]
        log.info("deleting finished job after its TTL job=%s", key)
        try:
            await self.client.delete(JOBS, ns, name, propagation_policy="Foreground",
                                     preconditions={"uid": md["uid"],
                                                    "resourceVersion": md["resourceVersion"]})
        except ApiError as e:
            if e.code not in (404, 409):
                raise
