"""A thread pool that runs queued work in priority order, then first come first served.

When the agent starts many pods at once, their RunPodSandbox calls arrive
together and fill the queue; each pod's CreateContainer comes only after its
sandbox, and waited behind all the sandboxes queued before it (~0.5 s for
100 pods). Until then no container started, so the shims and inits (processes
of their own, the other CPU) had nothing to do while this process worked
through sandboxes. Serving work for pods already under way before new pods
(`LATER`) lets containers start while sandboxes are still being made.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

T = TypeVar("T")

SOON, LATER = 0, 1  # LATER: work that begins something new (a pod), behind work that finishes it
_LAST = 1 << 30  # a thread's end

_Item = tuple[int, int, "Future[Any] | None", "Callable[[], Any] | None"]


class PriorityPool(Executor):
    def __init__(self, max_workers: int, thread_name_prefix: str = "pool"):
        self._queue: queue.PriorityQueue[_Item] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._max = max_workers
        self._prefix = thread_name_prefix
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for work; a new one starts only when none is
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return self.submit_at(SOON, lambda: fn(*args, **kwargs))

    def submit_at(self, priority: int, fn: Callable[[], T]) -> Future[T]:
        """Queue `fn` behind what is queued with the same or a lower `priority`."""
        fut: Future[T] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new work after shutdown")
            self._queue.put((priority, next(self._seq), fut, fn))
            if self._idle:
                self._idle -= 1
            elif len(self._threads) < self._max:
                t = threading.Thread(target=self._work, name=f"{self._prefix}_{len(self._threads)}", daemon=True)
                self._threads.append(t)
                t.start()
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while True:
                    try:
                        _, _, fut, _ = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if fut is not None:
                        fut.cancel()
            for _ in self._threads:
                self._queue.put((_LAST, next(self._seq), None, None))  # behind what is still queued
            threads = list(self._threads)
        if wait:
            for t in threads:
                t.join()

    def _work(self) -> None:
        while True:
            _, _, fut, fn = self._queue.get()
            if fut is None or fn is None:
                return
            ok, result, error = False, None, None
            if fut.set_running_or_notify_cancel():
                try:
                    result, ok = fn(), True
                except BaseException as e:
                    error = e
            with self._lock:  # free before the caller hears: work it submits next needs no new thread
                self._idle += 1
            if ok:
                fut.set_result(result)
            elif error is not None:
                fut.set_exception(error)
            # Not kept while this thread waits for the next: a result or a traceback's frames.
            del fut, fn, result, error
