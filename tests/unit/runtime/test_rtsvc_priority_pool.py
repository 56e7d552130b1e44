"""The runtime's ops pool: queued work runs by priority, then in order of arrival."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from timonel.node_agent.runtime.server.priority_pool import LATER, SOON, PriorityPool


def _blocked_pool() -> tuple[PriorityPool, threading.Event]:
    """A one-thread pool whose thread is busy until the event is set."""
    pool = PriorityPool(max_workers=1, thread_name_prefix="t")
    gate = threading.Event()
    started = threading.Event()

    def hold() -> None:
        started.set()
        gate.wait(10)

    pool.submit(hold)
    assert started.wait(5)
    return pool, gate


def test_sooner_work_overtakes_later_work_queued_before_it() -> None:
    pool, gate = _blocked_pool()
    order: list[str] = []
    futures = [pool.submit_at(LATER, lambda: order.append("sandbox 1")),
               pool.submit_at(LATER, lambda: order.append("sandbox 2")),
               pool.submit_at(SOON, lambda: order.append("container 1")),
               pool.submit_at(SOON, lambda: order.append("container 2")),
               pool.submit(lambda: order.append("status"))]
    gate.set()
    for f in futures:
        f.result(5)
    assert order == ["container 1", "container 2", "status", "sandbox 1", "sandbox 2"]
    pool.shutdown()


def test_results_and_exceptions_reach_the_caller_also_through_asyncio() -> None:
    pool = PriorityPool(max_workers=2)

    def boom() -> None:
        raise ValueError("no such sandbox")

    async def main() -> tuple[int, BaseException | None]:
        got = await asyncio.wrap_future(pool.submit_at(LATER, lambda: 6 * 7))
        try:
            await asyncio.wrap_future(pool.submit_at(SOON, boom))
        except ValueError as e:
            return got, e
        return got, None

    got, err = asyncio.run(main())
    assert got == 42 and isinstance(err, ValueError)
    pool.shutdown()


def test_threads_start_only_as_work_needs_them_up_to_the_limit() -> None:
    pool = PriorityPool(max_workers=3)
    for _ in range(5):  # one after another: one thread serves them all
        pool.submit(time.sleep, 0).result(5)
    assert len(pool._threads) == 1
    gate = threading.Event()
    busy = [pool.submit(gate.wait, 10) for _ in range(5)]
    time.sleep(0.1)
    assert len(pool._threads) == 3
    gate.set()
    for f in busy:
        f.result(5)
    pool.shutdown()
    assert not any(t.is_alive() for t in pool._threads)


def test_shutdown_cancels_queued_work_and_refuses_more() -> None:
    pool, gate = _blocked_pool()
    queued = pool.submit_at(LATER, lambda: None)
    pool.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled()
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)
    gate.set()


def test_shutdown_without_cancelling_lets_queued_work_finish() -> None:
    pool, gate = _blocked_pool()
    queued = [pool.submit_at(LATER, lambda: 1), pool.submit_at(SOON, lambda: 2)]
    gate.set()
    pool.shutdown(wait=True)
    assert [f.result(0) for f in queued] == [1, 2]
