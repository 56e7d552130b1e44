"""Writing decisions to the API server, off the scheduling loop.

Binds go through the pods/binding subresource (the server sets nodeName
once and the PodScheduled condition). Status updates, events and victim
deletions are best effort and bounded: like client-go's event broadcaster,
a backlog beyond `max_backlog` drops the oldest kind of work (events)
instead of slowing scheduling down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from timonel.api import meta
from timonel.api.client import Client
from timonel.api.client.events import hold_while_busy
from timonel.api.errors import ApiError

log = logging.getLogger(__name__)

PODS = ("v1", "Pod")


async def bind(client: Client, pod: dict[str, Any], node: str) -> None:
    md = pod.get("metadata") or {}
    body = {"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": md.get("name"), "namespace": md.get("namespace"),
                         "uid": md.get("uid")},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
    await client.post_subresource(PODS, str(md.get("namespace") or ""), str(md.get("name") or ""),
                                  "binding", body)


def pod_scheduled_condition(pod: dict[str, Any]) -> dict[str, Any] | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == "PodScheduled":
            return c
    return None


async def set_unschedulable(client: Client, pod: dict[str, Any], message: str,
                            nominated: str | None) -> None:
    """PodScheduled=False/Unschedulable with `message`; nominatedNodeName set
    (a name), cleared ("") or left alone (None)."""
    md = pod.get("metadata") or {}
    status: dict[str, Any] = {}
    cond = pod_scheduled_condition(pod)
    if cond is None or cond.get("status") != "False" or cond.get("reason") != "Unschedulable" \
            or cond.get("message") != message:
        status["conditions"] = [{"type": "PodScheduled", "status": "False",
                                 "reason": "Unschedulable", "message": message,
                                 "lastProbeTime": None, "lastTransitionTime": meta.now()}]
    current = (pod.get("status") or {}).get("nominatedNodeName") or ""
    if nominated is not None and nominated != current:
        status["nominatedNodeName"] = nominated or None
    if not status:
        return
    try:
        await client.patch(PODS, str(md.get("namespace") or ""), str(md.get("name") or ""),
                           {"status": status}, patch_type="strategic", subresource="status")
    except (ApiError, ConnectionError) as e:
        if not (isinstance(e, ApiError) and e.code == 404):
            log.info("pod status not updated pod=%s/%s err=%s", md.get("namespace"),
                     md.get("name"), e)


async def clear_nominated(client: Client, pod: dict[str, Any]) -> None:
    """Drop a nomination another pod took over."""
    md = pod.get("metadata") or {}
    with contextlib.suppress(ApiError, ConnectionError):
        await client.patch(PODS, str(md.get("namespace") or ""), str(md.get("name") or ""),
                           {"status": {"nominatedNodeName": None}}, patch_type="strategic",
                           subresource="status")


class Background:
    """A bounded pool of best-effort API writes that yields to binds: while
    `busy()` says binds are in flight, writes wait, so events and status
    updates never take API server capacity from placing pods."""

    def __init__(self, workers: int = 8, max_backlog: int = 20000,
                 busy: Callable[[], bool] | None = None) -> None:
        self.queue: asyncio.Queue[Callable[[], Awaitable[Any]]] = asyncio.Queue()
        self.workers = workers
        self.max_backlog = max_backlog
        self.busy = busy
        self.dropped = 0
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._run(), name="scheduler-writes")
                           for _ in range(self.workers)]

    def submit(self, fn: Callable[[], Awaitable[Any]]) -> None:
        if self.queue.qsize() >= self.max_backlog:
            self.dropped += 1
            return
        self.queue.put_nowait(fn)

    async def _run(self) -> None:
        while True:
            fn = await self.queue.get()
            await hold_while_busy(self.busy, time.monotonic(), max_delay=5.0)
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.info("background write failed err=%s", e)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
