"""A rate-limited work queue with client-go's workqueue semantics.

Controllers put keys (usually `namespace/name`) in, workers take them out.
The guarantees that make level-triggered loops simple:
- a key waiting in the queue is there once, however often it was added
  (the `dirty` set): ten changes to one object cost one reconcile;
- a key is never handed to two workers at once (the `processing` set): a key
  added while being processed is queued again only when `done` is called;
- failures are retried later, per key, with exponential backoff
  (`add_rate_limited`) until `forget` resets it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


class ShutDown(Exception):
    """The queue was shut down and is empty: the worker should return."""


class RateLimiter(Protocol):
    def when(self, item: Hashable) -> float:
        """Seconds to wait before `item` is retried (counts a failure)."""
        ...

    def forget(self, item: Hashable) -> None: ...

    def num_requeues(self, item: Hashable) -> int: ...


class ItemExponentialRateLimiter:
    """base * 2**failures per item, capped (client-go: 5 ms up to 1000 s)."""

    def __init__(self, base: float = 0.005, cap: float = 1000.0) -> None:
        self.base = base
        self.cap = cap
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        n = self._failures.get(item, 0)
        self._failures[item] = n + 1
        if n >= 64:  # 2**64 overflows any cap; skip the float math
            return self.cap
        return min(self.cap, self.base * 2 ** n)

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter:
    """An overall token bucket (qps, burst) across all items, like client-go's
    BucketRateLimiter: a storm of failures cannot exceed `qps` retries."""

    def __init__(self, qps: float = 10.0, burst: int = 100,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def when(self, item: Hashable) -> float:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def forget(self, item: Hashable) -> None:
        pass

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """The longest wait any of the limiters asks for."""

    def __init__(self, *limiters: RateLimiter) -> None:
        self.limiters = limiters

    def when(self, item: Hashable) -> float:
        return max(limiter.when(item) for limiter in self.limiters)

    def forget(self, item: Hashable) -> None:
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self.limiters)


def default_controller_rate_limiter() -> RateLimiter:
    """client-go's DefaultControllerRateLimiter: per-item 5 ms..1000 s, and
    10 qps / burst 100 overall."""
    return MaxOfRateLimiter(ItemExponentialRateLimiter(0.005, 1000.0), BucketRateLimiter(10, 100))


class WorkQueue(Generic[K]):
    def __init__(self, rate_limiter: RateLimiter | None = None, name: str = "") -> None:
        self.name = name
        self.rate_limiter: RateLimiter = rate_limiter or ItemExponentialRateLimiter()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        # Items waiting for add_after: when they are due, and their timer.
        self._waiting: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._nonempty = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._shutting_down = False

    def __len__(self) -> int:
        """Items ready to be handed out (not those processing or waiting)."""
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, item: K) -> None:
        if self._shutting_down or item in self._dirty:
            return
        self._dirty.add(item)
        if item in self._processing:
            # Queued again by done(): never two workers on one key.
            return
        self._queue.append(item)
        self._idle.clear()
        self._nonempty.set()

    def add_after(self, item: K, delay: float) -> None:
        """Add `item` once `delay` seconds have passed; of several pending
        delays for one item the earliest wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        pending = self._waiting.get(item)
        if pending is not None:
            if pending[0] <= due:
                return
            pending[1].cancel()
        self._idle.clear()
        self._waiting[item] = (due, loop.call_at(due, self._due, item))

    def _due(self, item: K) -> None:
        self._waiting.pop(item, None)
        self.add(item)
        self._check_idle()

    def add_rate_limited(self, item: K) -> None:
        """Retry `item` after its backoff (which doubles on every call)."""
        self.add_after(item, self.rate_limiter.when(item))

    def forget(self, item: K) -> None:
        """Reset the backoff of `item` (call after it was processed fine)."""
        self.rate_limiter.forget(item)

    def num_requeues(self, item: K) -> int:
        return self.rate_limiter.num_requeues(item)

    async def get(self) -> K:
        """The next item; the caller must call `done(item)` when finished.
        Raises ShutDown once the queue is shut down and drained."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown(self.name)
            self._nonempty.clear()
            await self._nonempty.wait()
        item = self._queue.popleft()
        self._processing.add(item)
        self._dirty.discard(item)
        return item

    def done(self, item: K) -> None:
        self._processing.discard(item)
        if item in self._dirty:
            self._queue.append(item)
            self._nonempty.set()
        self._check_idle()

    def _check_idle(self) -> None:
        if not self._queue and not self._processing and not self._waiting:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Until nothing is queued, processing or waiting for a delay."""
        await self._idle.wait()

    def shutdown(self) -> None:
        """Stop accepting items; workers get what is queued, then ShutDown."""
        self._shutting_down = True
        for _, handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        self._check_idle()
        self._nonempty.set()


async def run_workers(queue: WorkQueue[K], process: Callable[[K], Awaitable[None]],
                      workers: int = 1, *, max_retries: int | None = None) -> None:
    """The standard controller loop: `workers` tasks take keys and run
    `process(key)`; a failure is retried with the key's backoff (dropped
    after `max_retries` if given), a success resets the backoff. Returns when
    the queue is shut down and drained; cancel it to stop at once."""

    async def worker() -> None:
        while True:
            try:
                item = await queue.get()
            except ShutDown:
                return
            try:
                await process(item)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                retries = queue.num_requeues(item)
                if max_retries is not None and retries >= max_retries:
                    log.error("dropping item after retries queue=%s item=%s retries=%d err=%r",
                              queue.name, item, retries, e)
                    queue.forget(item)
                else:
                    log.warning("processing failed, will retry queue=%s item=%s retries=%d "
                                "err=%r", queue.name, item, retries, e)
                    queue.add_rate_limited(item)
            else:
                queue.forget(item)
            finally:
                queue.done(item)

    await asyncio.gather(*(worker() for _ in range(workers)))
