"""The scheduling queue: active, backoff and unschedulable pods.

- active: a heap, highest priority first, then the earliest queued;
- backoff: pods that failed recently wait 1 s, doubling per attempt up to
  10 s, before they return to active;
- unschedulable: pods no node fits; they wait for a cluster event that may
  change that (a node added or changed, a pod deleted...) — only events
  the plugins that rejected them care about — or at most five minutes.

All of it runs on the event loop; `pop` is the only coroutine.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from timonel.scheduler.podinfo import Key, PodInfo

ACTIVE, BACKOFF, UNSCHEDULABLE, IN_FLIGHT = "active", "backoff", "unschedulable", "inFlight"


@dataclass(slots=True)
class QueuedPod:
    info: PodInfo
    timestamp: float  # when it (re)entered the queue, for ordering
    initial: float  # when it was first queued, for latency metrics
    attempts: int = 0
    where: str = ACTIVE
    backoff_until: float = 0.0
    unschedulable_since: float = 0.0
    seq: int = 0
    # The events its last rejection waits for (None: any event).
    events: frozenset[str] | None = None
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class SchedulingQueue:
    def __init__(self, initial_backoff: float = 1.0, max_backoff: float = 10.0,
                 max_unschedulable: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_unschedulable = max_unschedulable
        self.clock = clock
        self.pods: dict[Key, QueuedPod] = {}
        self._unschedulable: dict[Key, QueuedPod] = {}
        self._heap: list[tuple[int, float, int, Key]] = []
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._closed = False

    # -- sizes (metrics) --------------------------------------------------------

    def counts(self) -> dict[str, int]:
        out = {ACTIVE: 0, BACKOFF: 0, UNSCHEDULABLE: 0, IN_FLIGHT: 0}
        for q in self.pods.values():
            out[q.where] += 1
        return out

    def __contains__(self, key: Key) -> bool:
        return key in self.pods

    # -- adding ---------------------------------------------------------------

    def _push(self, q: QueuedPod) -> None:
        self._unschedulable.pop(q.info.key, None)
        q.where = ACTIVE
        q.seq = next(self._seq)
        if q.timer is not None:
            q.timer.cancel()
            q.timer = None
        heapq.heappush(self._heap, (-q.info.priority, q.timestamp, q.seq, q.info.key))
        self._wakeup.set()

    def add(self, info: PodInfo) -> None:
        """A new pending pod (or one seen again after a relist)."""
        q = self.pods.get(info.key)
        if q is not None:
            q.info = info
            return
        now = self.clock()
        q = QueuedPod(info, now, now)
        self.pods[info.key] = q
        self._push(q)

    def update(self, info: PodInfo) -> None:
        """A pending pod changed: maybe it fits now."""
        q = self.pods.get(info.key)
        if q is None:
            self.add(info)
            return
        q.info = info
        if q.where == UNSCHEDULABLE:
            self._requeue(q)

    def delete(self, key: Key) -> None:
        self._unschedulable.pop(key, None)
        q = self.pods.pop(key, None)
        if q is not None and q.timer is not None:
            q.timer.cancel()

    # -- taking -----------------------------------------------------------------

    def _pop_ready(self) -> QueuedPod | None:
        while self._heap:
            _, _, seq, key = heapq.heappop(self._heap)
            q = self.pods.get(key)
            if q is None or q.where != ACTIVE or q.seq != seq:
                continue  # stale heap entry
            q.where = IN_FLIGHT
            q.attempts += 1
            return q
        return None

    async def pop(self) -> QueuedPod:
        while True:
            q = self._pop_ready()
            if q is not None:
                return q
            self._wakeup.clear()
            await self._wakeup.wait()

    def has_ready(self) -> bool:
        """Whether an active pod may be waiting (stale heap entries count)."""
        return bool(self._heap)

    def pop_nowait(self) -> QueuedPod | None:
        return self._pop_ready()

    def done(self, key: Key) -> None:
        """The pod's cycle ended with it placed (or gone): forget it."""
        q = self.pods.get(key)
        if q is not None and q.where == IN_FLIGHT:
            del self.pods[key]

    def num_unschedulable(self) -> int:
        return len(self._unschedulable)

    # -- failures ------------------------------------------------------------------

    def backoff_duration(self, attempts: int) -> float:
        d = self.initial_backoff * (2 ** max(0, attempts - 1))
        return min(d, self.max_backoff)

    def add_unschedulable(self, q: QueuedPod, events: frozenset[str] | None) -> None:
        """No node fits: wait for a relevant event (or the periodic flush)."""
        if self.pods.get(q.info.key) is not q:
            return  # deleted meanwhile
        now = self.clock()
        q.where = UNSCHEDULABLE
        self._unschedulable[q.info.key] = q
        q.unschedulable_since = now
        q.backoff_until = now + self.backoff_duration(q.attempts)
        q.events = events

    def add_backoff(self, q: QueuedPod) -> None:
        """An error (e.g. the bind failed): retry after the backoff."""
        if self.pods.get(q.info.key) is not q:
            self.pods[q.info.key] = q
        now = self.clock()
        q.backoff_until = now + self.backoff_duration(q.attempts)
        self._to_backoff(q)

    def _to_backoff(self, q: QueuedPod) -> None:
        self._unschedulable.pop(q.info.key, None)
        q.where = BACKOFF
        delay = max(0.0, q.backoff_until - self.clock())
        if q.timer is not None:
            q.timer.cancel()
        q.timer = asyncio.get_running_loop().call_later(delay, self._backoff_done, q)

    def _backoff_done(self, q: QueuedPod) -> None:
        q.timer = None
        if self.pods.get(q.info.key) is q and q.where == BACKOFF:
            q.timestamp = self.clock()
            self._push(q)

    def _requeue(self, q: QueuedPod) -> None:
        if q.backoff_until > self.clock():
            self._to_backoff(q)
        else:
            q.timestamp = self.clock()
            self._push(q)

    def move_all(self, event: str) -> int:
        """A cluster event: unschedulable pods whose rejecting plugins care
        go back to active (or finish their backoff first)."""
        moved = 0
        for q in list(self._unschedulable.values()):
            if q.events is None or event in q.events:
                self._requeue(q)
                moved += 1
        return moved

    def flush_unschedulable(self) -> int:
        """Pods unschedulable for longer than max_unschedulable are retried anyway."""
        cutoff = self.clock() - self.max_unschedulable
        moved = 0
        for q in list(self._unschedulable.values()):
            if q.unschedulable_since <= cutoff:
                self._requeue(q)
                moved += 1
        return moved
