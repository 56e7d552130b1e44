"""The scheduling queue: priority order, backoff, unschedulable pods moved
by the events their rejecting plugins care about."""

from __future__ import annotations

import asyncio

from tests.unit.scheduler.conftest import info, pod
from timonel.scheduler.framework import NODE_ADD, POD_ADD
from timonel.scheduler.queue import ACTIVE, BACKOFF, UNSCHEDULABLE, SchedulingQueue


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_highest_priority_first_then_oldest() -> None:
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    for name, prio in (("old-low", 0), ("high", 10), ("new-low", 0)):
        q.add(info(pod(name, priority=prio)))
        clock.t += 1
    order = [(await q.pop()).info.name for _ in range(3)]
    assert order == ["high", "old-low", "new-low"]


async def test_backoff_doubles_up_to_the_cap() -> None:
    q = SchedulingQueue(initial_backoff=1, max_backoff=10)
    assert [q.backoff_duration(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


async def test_unschedulable_pods_wait_for_a_relevant_event() -> None:
    clock = Clock()
    q = SchedulingQueue(initial_backoff=1, max_backoff=10, clock=clock)
    q.add(info(pod("p")))
    qp = await q.pop()
    q.add_unschedulable(qp, frozenset({NODE_ADD}))
    assert q.counts()[UNSCHEDULABLE] == 1
    assert q.move_all(POD_ADD) == 0  # the rejecting plugins do not care
    clock.t += 5  # past its backoff
    assert q.move_all(NODE_ADD) == 1
    assert q.counts()[ACTIVE] == 1
    assert (await q.pop()).attempts == 2


async def test_moved_pod_still_backing_off_waits_in_backoff() -> None:
    q = SchedulingQueue(initial_backoff=0.05, max_backoff=0.05)
    q.add(info(pod("p")))
    qp = await q.pop()
    q.add_unschedulable(qp, None)
    q.move_all(NODE_ADD)
    assert q.counts()[BACKOFF] == 1
    got = await asyncio.wait_for(q.pop(), 5)
    assert got.info.name == "p"


async def test_flush_retries_long_unschedulable_pods_and_delete_forgets() -> None:
    clock = Clock()
    q = SchedulingQueue(max_unschedulable=300, clock=clock)
    for name in ("a", "b"):
        q.add(info(pod(name)))
    a, b = await q.pop(), await q.pop()
    q.add_unschedulable(a, frozenset())
    q.add_unschedulable(b, frozenset())
    q.delete(b.info.key)
    clock.t += 301
    assert q.flush_unschedulable() == 1
    assert (await q.pop()).info.name == "a"
    q.done(a.info.key)
    assert q.counts() == {"active": 0, "backoff": 0, "unschedulable": 0, "inFlight": 0}
