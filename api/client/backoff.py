"""Backoff for every retrying loop of the client, and client-go's RetryOnConflict.

Jitter spreads the retries of many clients that failed at the same moment
(an API server restart) so they do not all come back in the same instant.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from timonel.api.errors import ApiError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Backoff:
    """Exponential backoff: `initial * factor**n`, capped, plus up to
    `jitter * delay` of random extra wait."""

    initial: float = 0.2
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.5
    attempt: int = field(default=0, compare=False)
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def peek(self) -> float:
        """The delay before the next attempt, without jitter."""
        return min(self.cap, self.initial * self.factor ** min(self.attempt, 64))

    def next(self) -> float:
        """The next delay (jittered, never above cap), and count the attempt."""
        base = self.peek()
        self.attempt += 1
        if self.jitter <= 0:
            return base
        return min(self.cap, base + self.rng.uniform(0, base * self.jitter))

    def reset(self) -> None:
        self.attempt = 0

    def fresh(self) -> Backoff:
        """A copy with the same policy and no attempts yet (each loop owns one)."""
        return Backoff(self.initial, self.factor, self.cap, self.jitter)

    async def sleep(self) -> float:
        delay = self.next()
        await asyncio.sleep(delay)
        return delay


# client-go's retry.DefaultRetry: 5 steps of 10 ms, factor 1, jitter 0.1.
def default_conflict_backoff() -> Backoff:
    return Backoff(initial=0.01, factor=1.0, cap=0.01, jitter=0.1)


async def retry_on_conflict(fn: Callable[[], Awaitable[T]], *, steps: int = 5,
                            backoff: Backoff | None = None) -> T:
    """Run a read-modify-write `fn` again while it fails with 409 Conflict.

    `fn` must re-read the object itself on every call; the last conflict is
    raised when all `steps` attempts failed. Other errors pass through at once.
    """
    b = backoff.fresh() if backoff is not None else default_conflict_backoff()
    for attempt in range(1, steps + 1):
        try:
            return await fn()
        except ApiError as e:
            if e.reason != "Conflict" or attempt == steps:
                raise
            log.debug("conflict, retrying attempt=%d err=%s", attempt, e.message)
        await b.sleep()
    raise AssertionError("unreachable")
