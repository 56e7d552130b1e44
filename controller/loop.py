"""The standard controller loop: wait for the informer caches, then work the
queue until cancelled (client-go's WaitForCacheSync + worker goroutines).

Workers start only once every cache holds its first list: a sync that ran
on a half-filled cache would see pods missing and create them again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import TypeVar

from timonel.api.client import Informer, WorkQueue, run_workers

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


async def run_loop(queue: WorkQueue[K], informers: Iterable[Informer],
                   process: Callable[[K], Awaitable[None]], workers: int) -> None:
    try:
        for inf in informers:
            await inf.wait_synced()
        log.info("caches synced, starting workers controller=%s workers=%d", queue.name, workers)
        await run_workers(queue, process, workers)
    finally:
        # Handlers of the shared informers outlive this loop: let them add
        # to a queue that ignores them.
        queue.shutdown()
