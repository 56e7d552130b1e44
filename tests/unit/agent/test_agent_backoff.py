"""Restart back-off: the first restart at once, then 10 s doubling to 5 min while it keeps failing."""

from __future__ import annotations

import time
from typing import Any

from timonel.node_agent.agent import pods
from timonel.node_agent.agent.pods import AgentContext, BackoffEntry, _restart_or_wait
from timonel.node_agent.agent.status import PodRuntimeState
from timonel.node_agent.runtime.api import runtime_pb2 as pb

POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1"}, "spec": {"containers": [{"name": "a"}]}}


class RecordingRuntime:
    def __init__(self) -> None:
        self.removed: list[str] = []

    def remove_container(self, cid: str) -> None:
        self.removed.append(cid)


class RecordingEvents:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    async def event(self, obj: Any, type_: str, reason: str, message: str) -> None:
        self.events.append((reason, message))


def exited(attempt: int, seconds_ago: float) -> pb.ContainerStatus:
    return pb.ContainerStatus(id=f"c{attempt}", metadata=pb.ContainerMetadata(name="a", attempt=attempt),
                              state=pb.CONTAINER_EXITED, exit_code=1,
                              finished_at=int((time.time() - seconds_ago) * 1e9))


def context() -> tuple[AgentContext, RecordingRuntime, RecordingEvents]:
    rt, ev = RecordingRuntime(), RecordingEvents()
    ctx = AgentContext(client=None, runtime=rt, recorder=ev, node="n", data_dir="/nonexistent")  # type: ignore[arg-type]
    return ctx, rt, ev


async def test_back_off_sequence() -> None:
    ctx, rt, ev = context()
    c = POD["spec"]["containers"][0]  # type: ignore[index]
    state = PodRuntimeState()
    # First crash: restarted at once, and the next one will wait 10 s.
    assert await _restart_or_wait(ctx, POD, c, [exited(0, 0.1)], state) == 1
    assert ctx.backoff[("u-1", "a")].delay == pods.BACKOFF_INITIAL and not state.waiting
    # Second crash just now: CrashLoopBackOff, one BackOff event however often it is asked.
    hist = [exited(1, 0.1), exited(0, 5)]
    for _ in range(3):
        assert await _restart_or_wait(ctx, POD, c, hist, state) is None
    assert state.waiting["a"].reason == "CrashLoopBackOff" and "back-off 10s" in state.waiting["a"].message
    assert [r for r, _ in ev.events] == ["BackOff"]
    # Ten seconds after it ended: restarted; the run before the last is removed; next wait 20 s.
    hist = [exited(1, 11), exited(0, 20)]
    assert await _restart_or_wait(ctx, POD, c, hist, PodRuntimeState()) == 2
    assert rt.removed == ["c0"] and ctx.backoff[("u-1", "a")].delay == 20
    # Capped at five minutes.
    ctx.backoff[("u-1", "a")] = BackoffEntry(pods.BACKOFF_MAX, time.monotonic())
    assert await _restart_or_wait(ctx, POD, c, [exited(5, 301)], PodRuntimeState()) == 6
    assert ctx.backoff[("u-1", "a")].delay == pods.BACKOFF_MAX


async def test_back_off_starts_over_after_a_long_good_run() -> None:
    ctx, _, _ = context()
    c = POD["spec"]["containers"][0]  # type: ignore[index]
    ctx.backoff[("u-1", "a")] = BackoffEntry(160, time.monotonic() - 2 * pods.BACKOFF_MAX - 1)
    assert await _restart_or_wait(ctx, POD, c, [exited(7, 0.1)], PodRuntimeState()) == 8
    assert ctx.backoff[("u-1", "a")].delay == pods.BACKOFF_INITIAL
