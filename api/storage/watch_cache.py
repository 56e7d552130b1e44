"""The watch cache: one etcd watch per resource, fanned out to every client.

Each resource type gets a `ResourceCache` on first use. It lists the
resource once, then follows one etcd watch, keeping the current objects and
a bounded window of recent events. Client watches are served from it, so a
thousand watchers cost one etcd stream. A client asking to resume from a
revision older than the window gets 410 Expired and relists (what every
Kubernetes client does); so does a client that reads too slowly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from timonel.api import jsonutil
from timonel.api.errors import ApiError
from timonel.api.storage.etcd import CompactedError, Store, decode

log = logging.getLogger(__name__)

WINDOW = 10_000  # events kept per resource
WATCHER_QUEUE = 10_000  # events buffered per client before it is cut off as too slow


@dataclass
class Event:
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    prev: dict[str, Any] | None
    revision: int
    _json: bytes | None = field(default=None, repr=False)

    def line(self) -> bytes:
        """The watch event as one JSON line, serialized once for all watchers."""
        if self._json is None:
            self._json = jsonutil.dumps({"type": self.type, "object": self.obj}) + b"\n"
        return self._json


Filter = Callable[[dict[str, Any]], bool]


class Watcher:
    def __init__(self, cache: ResourceCache, match: Filter) -> None:
        self.cache = cache
        self.match = match
        self.queue: asyncio.Queue[Event | ApiError] = asyncio.Queue(WATCHER_QUEUE)
        self.closed = False

    def offer(self, ev: Event) -> None:
        if self.closed:
            return
        out = _filtered(ev, self.match)
        if out is None:
            return
        try:
            self.queue.put_nowait(out)
        except asyncio.QueueFull:
            self.fail(ApiError(410, "watch closed: the client read too slowly; relist", "Expired"))

    def fail(self, err: ApiError) -> None:
        if self.closed:
            return
        self.closed = True
        self.cache.watchers.discard(self)
        # Make room so the error is always delivered.
        while self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(err)

    def close(self) -> None:
        self.closed = True
        self.cache.watchers.discard(self)


def _filtered(ev: Event, match: Filter) -> Event | None:
    """Selector semantics of a watch: objects moving out of the selection are
    DELETED for this watcher, objects moving in are ADDED."""
    now = match(ev.obj)
    if ev.type == "MODIFIED" and ev.prev is not None:
        before = match(ev.prev)
        if now and before:
            return ev
        if now:
            return Event("ADDED", ev.obj, ev.prev, ev.revision)
        if before:
            return Event("DELETED", ev.obj, ev.prev, ev.revision)
        return None
    return ev if now else None


class ResourceCache:
    def __init__(self, store: Store, prefix: str, window: int = WINDOW) -> None:
        self.store = store
        self.prefix = prefix
        self.objects: dict[str, dict[str, Any]] = {}
        self.events: deque[Event] = deque(maxlen=window)
        self.rev = 0  # every event up to here is applied
        self.oldest = 0  # a watch may resume from any revision >= this
        self.watchers: set[Watcher] = set()
        self._progress: asyncio.Queue[int] = asyncio.Queue()
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"watch-cache {self.prefix}")
        await self._ready.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        for w in list(self.watchers):
            w.fail(ApiError(410, "the server is shutting down; relist", "Expired"))

    async def _relist(self) -> None:
        objects: dict[str, dict[str, Any]] = {}
        start: str | None = None
        rev = 0
        while True:
            kvs, rev_read, more = await self.store.list(self.prefix, revision=rev, limit=1000,
                                                        start=start)
            rev = rev or rev_read
            for kv in kvs:
                objects[kv.key] = decode(kv.value, kv.mod_revision)
            if not more or not kvs:
                break
            start = kvs[-1].key + "\0"
        self.objects = objects
        self.events.clear()
        self.rev = rev
        self.oldest = rev
        for w in list(self.watchers):
            w.fail(ApiError(410, "the watch cache was rebuilt; relist", "Expired"))

    async def _run(self) -> None:
        backoff = 0.1
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                    self._ready.set()
                async for item in self.store.watch(self.prefix, self.rev + 1, self._progress):
                    backoff = 0.1
                    if isinstance(item, int):
                        await self._advance(item)
                    else:
                        await self._apply(item)
            except asyncio.CancelledError:
                raise
            except CompactedError:
                log.warning("watch cache fell behind compaction, relisting prefix=%s", self.prefix)
                need_list = True
            except Exception as e:
                log.warning("watch cache stream broke prefix=%s err=%r; resuming", self.prefix, e)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _apply(self, batch: list[Any]) -> None:
        for we in batch:
            prev = self.objects.get(we.key)
            if we.type == "DELETE":
                self.objects.pop(we.key, None)
                if prev is None:
                    continue
                obj = decode(we.value, we.revision) if we.value else dict(prev)
                obj["metadata"]["resourceVersion"] = str(we.revision)
                ev = Event("DELETED", obj, prev, we.revision)
            else:
                obj = decode(we.value, we.revision)
                self.objects[we.key] = obj
                ev = Event("MODIFIED" if prev is not None else "ADDED", obj, prev, we.revision)
            if len(self.events) == self.events.maxlen:
                self.oldest = self.events[0].revision
            self.events.append(ev)
            for w in list(self.watchers):
                w.offer(ev)
        await self._advance(batch[-1].revision)

    async def _advance(self, rev: int) -> None:
        if rev > self.rev:
            async with self._changed:
                self.rev = rev
                self._changed.notify_all()

    async def wait_fresh(self, rev: int, timeout: float = 3.0) -> None:
        """Wait until the cache has seen every event up to `rev`.

        Upstream answers 504 "Too large resource version" after 3 s.
        """
        if rev <= self.rev:
            return
        self._progress.put_nowait(rev)
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(lambda: self.rev >= rev)
        except TimeoutError:
            raise ApiError(504, f"Too large resource version: {rev}, current: {self.rev}",
                           "Timeout", retry_after=1) from None

    async def sync_with_storage(self) -> None:
        """Make the cache at least as fresh as etcd is now (a consistent read)."""
        await self.wait_fresh(await self.store.current_revision())

    def snapshot(self, match: Filter) -> tuple[list[dict[str, Any]], int]:
        return [o for o in self.objects.values() if match(o)], self.rev

    def watch(self, from_rev: int, match: Filter) -> tuple[Watcher, list[Event]]:
        """Register a watcher for events after `from_rev`; also return the
        buffered events it must replay first. 410 if that is no longer known."""
        if from_rev < self.oldest:
            raise ApiError(410, f"too old resource version: {from_rev} ({self.oldest})", "Expired")
        replay = []
        for ev in self.events:
            if ev.revision > from_rev:
                out = _filtered(ev, match)
                if out is not None:
                    replay.append(out)
        w = Watcher(self, match)
        self.watchers.add(w)
        return w, replay


class WatchCaches:
    """The caches of all resources, created on first use."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.caches: dict[str, ResourceCache] = {}
        self._lock = asyncio.Lock()

    async def get(self, prefix: str) -> ResourceCache:
        cache = self.caches.get(prefix)
        if cache is None:
            async with self._lock:
                cache = self.caches.get(prefix)
                if cache is None:
                    cache = ResourceCache(self.store, prefix)
                    self.caches[prefix] = cache
        await cache.start()
        return cache

    def peek(self, prefix: str, key: str) -> dict[str, Any] | None:
        """The object at `key` as the running cache of `prefix` has it (shared: read only);
        None when there is no such cache (none is started) or it does not hold `key`."""
        cache = self.caches.get(prefix)
        return cache.objects.get(key) if cache is not None else None

    async def stop(self) -> None:
        for c in self.caches.values():
            await c.stop()

    def watcher_count(self) -> int:
        return sum(len(c.watchers) for c in self.caches.values())
