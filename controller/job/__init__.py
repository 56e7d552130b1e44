"""The Job controller (and the TTL-after-finished loop for Jobs).

    run(ctx)   # until cancelled
"""

from __future__ import annotations

import asyncio
import logging

from timonel.controller.context import ControllerContext
from timonel.controller.job.controller import JobController
from timonel.controller.job.ttl import TTLAfterFinished

log = logging.getLogger(__name__)

__all__ = ["run"]


async def run(ctx: ControllerContext) -> None:
    jobs = JobController(ctx)
    ttl = TTLAfterFinished(ctx, jobs.jobs)
    jobs.register()
    ttl.register()
    ctx.informers.start()
    await jobs.jobs.wait_synced()
    await jobs.pods.wait_synced()
    log.info("job controller started")
    async with asyncio.TaskGroup() as tg:
        tg.create_task(jobs.run())
        tg.create_task(ttl.run())
