"""Events: what components tell users about objects (`kubectl describe`).

Like client-go's recorder (its EventCorrelator):
- an event about the same object with the same reason and message is not
  written again but counted (`count`, `lastTimestamp`), so a crash-looping
  pod yields one Event, not thousands;
- once 10 events about one object differ only in their message within 10
  minutes, further ones are folded into one "(combined from similar events)"
  event (a ReplicaSet making 1,000 pods writes ~11 Events, not 1,000);
- each source may write about one object in bursts of 25, then one write per
  5 minutes; the rest are dropped.
Writing an event never fails the caller: events are best effort.

With `background=True` (the agent's), event() only queues the event, like
client-go's broadcaster, and one task writes the queue in order, at most
`qps` per second after a burst of `burst` (the kubelet's eventRecordQPS 50,
eventBurst 100): a pod's start does not wait for three event writes, and in
a burst of pod starts the status updates go to the API server first. A full
queue (1,000, as client-go's) drops new events. With `busy`, the writer also
holds each event while busy() says the component has more urgent work (the
agent: a burst of pod syncs in flight), for at most `max_delay` seconds: on two CPUs a
burst of 100 pod starts spent a tenth of its CPU writing their ~270 events
(agent, API server, etcd) while the pods waited to be Ready. An event keeps
the time it happened (firstTimestamp), whenever it is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from timonel.api import meta
from timonel.api.client.rest import Client
from timonel.api.errors import ApiError

log = logging.getLogger(__name__)

EVENTS = ("v1", "Event")
NORMAL, WARNING = "Normal", "Warning"
AGGREGATE_MAX_EVENTS = 10
AGGREGATE_PREFIX = "(combined from similar events): "
SPAM_BURST = 25.0
SPAM_REFILL_PER_SECOND = 1.0 / 300.0
MAX_QUEUED = 1000
BUSY_POLL_SECONDS = 0.05


async def hold_while_busy(busy: Callable[[], bool] | None, since: float, max_delay: float,
                          poll: float = BUSY_POLL_SECONDS) -> None:
    """Wait, polling every `poll` s, while busy() says the component has more urgent work,
    but not past `max_delay` s after `since` (time.monotonic()): how best-effort writes
    (events here, the scheduler's background writes) yield to a burst."""
    while busy is not None and busy() and time.monotonic() - since < max_delay:
        await asyncio.sleep(poll)


def object_reference(obj: dict[str, Any]) -> dict[str, Any]:
    md = obj.get("metadata") or {}
    ref = {"kind": obj.get("kind", ""), "apiVersion": obj.get("apiVersion", ""),
           "name": md.get("name", ""), "uid": md.get("uid", ""),
           "resourceVersion": md.get("resourceVersion", "")}
    if md.get("namespace"):
        ref["namespace"] = md["namespace"]
    return ref


class EventRecorder:
    def __init__(self, client: Client, component: str, host: str = "",
                 cache_seconds: float = 600.0, background: bool = False, qps: float = 0.0,
                 burst: int = 1, busy: Callable[[], bool] | None = None, max_delay: float = 5.0) -> None:
        """`qps` (0: no limit) and `burst` limit the writes of a background recorder;
        `busy` and `max_delay` hold them back while its component has urgent work."""
        self.client = client
        self.background = background
        self.qps, self.burst = qps, burst
        self.busy, self.max_delay = busy, max_delay
        # (object, type, reason, message, timestamp, queued at (monotonic))
        self._queue: asyncio.Queue[tuple[dict[str, Any], str, str, str, str, float]] | None = None
        self._writer: asyncio.Task[None] | None = None
        self.component = component
        self.host = host
        self.cache_seconds = cache_seconds
        # (uid, reason, message) -> (event namespace, event name, count, written at)
        self._seen: dict[tuple[str, str, str], tuple[str, str, int, float]] = {}
        # (uid, type, reason) -> (messages seen, since)
        self._similar: dict[tuple[str, str, str], tuple[set[str], float]] = {}
        # uid -> (tokens, refilled at)
        self._budget: dict[str, tuple[float, float]] = {}

    async def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        if not self.background:
            await self._write(obj, type_, reason, message, meta.now())
            return
        if self._queue is None:
            self._queue = asyncio.Queue(MAX_QUEUED)
            self._writer = asyncio.get_running_loop().create_task(self._write_queued())
        try:
            self._queue.put_nowait((obj, type_, reason, message, meta.now(), time.monotonic()))
        except asyncio.QueueFull:
            log.info("event dropped (queue full) reason=%s object=%s", reason, meta.name_of(obj))

    async def flush(self) -> None:
        """Wait until every queued event has been written (or dropped)."""
        if self._queue is not None:
            await self._queue.join()

    async def close(self, timeout: float = 2.0) -> None:
        """Write what is queued (for up to `timeout` seconds), then stop the writer."""
        if self._writer is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.flush(), timeout)
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        self._writer = self._queue = None

    async def _write_queued(self) -> None:
        assert self._queue is not None
        tokens, at = float(self.burst), time.monotonic()
        while True:
            obj, type_, reason, message, ts, queued = await self._queue.get()
            try:
                await hold_while_busy(self.busy, queued, self.max_delay)
                if self.qps > 0:
                    now = time.monotonic()
                    tokens = min(float(self.burst), tokens + (now - at) * self.qps)
                    at = now
                    if tokens < 1.0:
                        await asyncio.sleep((1.0 - tokens) / self.qps)
                        tokens, at = 1.0, time.monotonic()
                    tokens -= 1.0
                await self._write(obj, type_, reason, message, ts)
            except Exception:  # never let one event stop the writer
                log.exception("event writer failed reason=%s", reason)
            finally:
                self._queue.task_done()

    async def _write(self, obj: dict[str, Any], type_: str, reason: str, message: str, now_ts: str) -> None:
        try:
            await self._record(obj, type_, reason, message, now_ts)
        except (ApiError, ConnectionError) as e:
            log.info("event not recorded reason=%s object=%s err=%s", reason,
                     meta.name_of(obj), e)

    async def _record(self, obj: dict[str, Any], type_: str, reason: str, message: str, now_ts: str) -> None:
        ref = object_reference(obj)
        namespace = ref.get("namespace") or "default"
        mono = time.monotonic()
        combined = self._combined(ref["uid"] or ref["name"], type_, reason, message, mono)
        if combined:
            message = AGGREGATE_PREFIX + message
        if not self._take_token(ref["uid"] or ref["name"], mono):
            log.debug("event dropped (rate limit) reason=%s object=%s", reason, ref["name"])
            return
        # Combined events are one Event per (object, type, reason), whatever the message.
        key = (ref["uid"] or ref["name"], reason, AGGREGATE_PREFIX + type_ if combined else message)
        seen = self._seen.get(key)
        if seen is not None and mono - seen[3] < self.cache_seconds:
            ns, name, count, _ = seen
            try:
                await self.client.patch(EVENTS, ns, name, {"count": count + 1, "lastTimestamp": now_ts,
                                                               "message": message[:1024]},
                                        patch_type="merge")
                self._seen[key] = (ns, name, count + 1, mono)
                return
            except ApiError as e:
                if e.code != 404:
                    raise
        ev = {
            "apiVersion": "v1", "kind": "Event",
            # client-go's naming: the object's name and a nanosecond stamp.
            "metadata": {"name": f"{ref['name']}.{time.time_ns():x}", "namespace": namespace},
            "involvedObject": ref, "reason": reason, "message": message[:1024], "type": type_,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "firstTimestamp": now_ts, "lastTimestamp": now_ts, "count": 1,
            "reportingComponent": self.component, "reportingInstance": self.host or self.component,
        }
        created = await self.client.create(EVENTS, ev, namespace=namespace)
        self._seen[key] = (namespace, created["metadata"]["name"], 1, mono)
        if len(self._seen) > 4096:
            cutoff = mono - self.cache_seconds
            self._seen = {k: v for k, v in self._seen.items() if v[3] >= cutoff}
            self._similar = {k: v for k, v in self._similar.items() if v[1] >= cutoff}
            self._budget = {k: v for k, v in self._budget.items() if v[1] >= cutoff}

    def _combined(self, obj_key: str, type_: str, reason: str, message: str, mono: float) -> bool:
        """True once AGGREGATE_MAX_EVENTS different messages of this object, type
        and reason came within the cache window: the event joins the combined one."""
        key = (obj_key, type_, reason)
        messages, since = self._similar.get(key, (set(), mono))
        if mono - since > self.cache_seconds:
            messages, since = set(), mono
        if len(messages) < AGGREGATE_MAX_EVENTS:
            messages.add(message)
        self._similar[key] = (messages, since)
        # As client-go: the message that makes the tenth, and every one after, is combined.
        return len(messages) >= AGGREGATE_MAX_EVENTS

    def _take_token(self, obj_key: str, mono: float) -> bool:
        tokens, at = self._budget.get(obj_key, (SPAM_BURST, mono))
        tokens = min(SPAM_BURST, tokens + (mono - at) * SPAM_REFILL_PER_SECOND)
        if tokens < 1.0:
            self._budget[obj_key] = (tokens, mono)
            return False
        self._budget[obj_key] = (tokens - 1.0, mono)
        return True
