"""Work queue semantics: dedupe, one worker per key, delays, retries, shutdown."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Hashable

import pytest

from timonel.api.client.workqueue import ShutDown, WorkQueue, run_workers


class FixedLimiter:
    """Records the retries asked for and answers a fixed delay."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.counts: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        self.counts[item] = self.counts.get(item, 0) + 1
        return self.delay

    def forget(self, item: Hashable) -> None:
        self.counts.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self.counts.get(item, 0)


async def test_keys_waiting_are_deduplicated_and_fifo() -> None:
    q: WorkQueue[str] = WorkQueue()
    for k in ["a", "b", "a", "c", "b", "a"]:
        q.add(k)
    assert len(q) == 3
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]


async def test_key_added_while_processing_waits_for_done_and_comes_back_once() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    item = await q.get()
    q.add("a")
    q.add("a")
    assert len(q) == 0  # not handed to a second worker
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not getter.done()
    q.done(item)
    assert await asyncio.wait_for(getter, 5) == "a"
    q.done("a")
    assert len(q) == 0


async def test_done_without_new_adds_does_not_requeue() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.done(await q.get())
    assert len(q) == 0
    await asyncio.wait_for(q.wait_idle(), 5)


async def test_many_workers_never_process_one_key_at_once_and_see_the_last_add() -> None:
    q: WorkQueue[int] = WorkQueue()
    active: set[int] = set()
    overlaps = 0
    last_seen_gen: dict[int, int] = {}
    gen: dict[int, int] = {}
    rng = random.Random(7)

    async def worker() -> None:
        nonlocal overlaps
        while True:
            try:
                k = await q.get()
            except ShutDown:
                return
            if k in active:
                overlaps += 1
            active.add(k)
            seen = gen.get(k, 0)
            await asyncio.sleep(rng.random() * 0.002)
            last_seen_gen[k] = max(last_seen_gen.get(k, 0), seen)
            active.discard(k)
            q.done(k)

    workers = [asyncio.create_task(worker()) for _ in range(8)]
    for _ in range(2000):
        k = rng.randrange(20)
        gen[k] = gen.get(k, 0) + 1
        q.add(k)
        if rng.random() < 0.3:
            await asyncio.sleep(0)
    await asyncio.wait_for(q.wait_idle(), 30)
    q.shutdown()
    await asyncio.wait_for(asyncio.gather(*workers), 10)
    assert overlaps == 0
    # Level-triggered: after the last add of every key, a worker saw it.
    assert last_seen_gen == gen


async def test_add_after_delays_and_earliest_delay_wins() -> None:
    q: WorkQueue[str] = WorkQueue()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    q.add_after("a", 0.3)
    q.add_after("a", 5.0)  # later: ignored
    q.add_after("b", 5.0)
    q.add_after("b", 0.05)  # earlier: replaces
    first = await asyncio.wait_for(q.get(), 5)
    assert first == "b"
    assert await asyncio.wait_for(q.get(), 5) == "a"
    assert loop.time() - t0 >= 0.3 - 0.01
    assert len(q) == 0


async def test_add_after_zero_is_immediate() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 0)
    assert len(q) == 1


async def test_add_rate_limited_uses_the_limiter_and_forget_resets() -> None:
    rl = FixedLimiter(0.02)
    q: WorkQueue[str] = WorkQueue(rl)
    q.add_rate_limited("a")
    q.add_rate_limited("a")
    assert q.num_requeues("a") == 2
    assert await asyncio.wait_for(q.get(), 5) == "a"
    q.forget("a")
    assert q.num_requeues("a") == 0


async def test_default_limiter_backs_off_exponentially() -> None:
    q: WorkQueue[str] = WorkQueue()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for _ in range(6):  # 5, 10, 20, 40, 80 ms: the 6th waits 160 ms
        q.add_rate_limited("a")
        q.done(await asyncio.wait_for(q.get(), 5))
    assert loop.time() - t0 >= 0.005 + 0.01 + 0.02 + 0.04 + 0.08 + 0.16 - 0.02


async def test_shutdown_drains_queued_items_then_raises() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add_after("late", 10)
    q.shutdown()
    q.add("b")  # ignored once shutting down
    assert await q.get() == "a"
    with pytest.raises(ShutDown):
        await q.get()


async def test_shutdown_wakes_blocked_getters() -> None:
    q: WorkQueue[str] = WorkQueue()
    getters = [asyncio.create_task(q.get()) for _ in range(3)]
    await asyncio.sleep(0.01)
    q.shutdown()
    results = await asyncio.wait_for(asyncio.gather(*getters, return_exceptions=True), 5)
    assert all(isinstance(r, ShutDown) for r in results)


async def test_run_workers_retries_failures_and_forgets_successes() -> None:
    rl = FixedLimiter(0.01)
    q: WorkQueue[str] = WorkQueue(rl, name="t")
    attempts: dict[str, int] = {}

    async def process(key: str) -> None:
        attempts[key] = attempts.get(key, 0) + 1
        if key == "flaky" and attempts[key] < 3:
            raise RuntimeError("not yet")

    runner = asyncio.create_task(run_workers(q, process, workers=2))
    q.add("flaky")
    q.add("fine")
    for _ in range(500):
        if attempts.get("flaky") == 3 and len(q) == 0:
            break
        await asyncio.sleep(0.01)
    assert attempts == {"flaky": 3, "fine": 1}
    assert q.num_requeues("flaky") == 0  # forgotten after success
    q.shutdown()
    await asyncio.wait_for(runner, 5)


async def test_run_workers_drops_after_max_retries() -> None:
    q: WorkQueue[str] = WorkQueue(FixedLimiter(0.001))
    attempts = 0

    async def process(key: str) -> None:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("always")

    runner = asyncio.create_task(run_workers(q, process, max_retries=3))
    q.add("bad")
    await asyncio.sleep(0.05)
    await asyncio.wait_for(q.wait_idle(), 5)
    assert attempts == 4  # the first try and three retries
    q.shutdown()
    await asyncio.wait_for(runner, 5)
