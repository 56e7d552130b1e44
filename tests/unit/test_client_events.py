"""The event recorder's correlation: dedupe, combining similar events, per-object rate limit."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from timonel.api.client import events
from timonel.api.client.events import (
    AGGREGATE_MAX_EVENTS,
    AGGREGATE_PREFIX,
    NORMAL,
    SPAM_BURST,
    EventRecorder,
)


class RecordingClient:
    """Records the writes the recorder makes; answers like the API server would."""

    def __init__(self) -> None:
        self.creates: list[dict[str, Any]] = []
        self.patches: list[tuple[str, dict[str, Any]]] = []

    async def create(self, rtype: Any, obj: dict[str, Any], namespace: str = "") -> dict[str, Any]:
        self.creates.append(obj)
        return obj

    async def patch(self, rtype: Any, namespace: str, name: str, body: dict[str, Any],
                    patch_type: str = "") -> dict[str, Any]:
        self.patches.append((name, body))
        return body


RS = {"kind": "ReplicaSet", "apiVersion": "apps/v1",
      "metadata": {"name": "web-1", "namespace": "default", "uid": "u1"}}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(events.time, "monotonic", lambda: now[0])
    return now


async def test_same_message_is_counted_not_written_again(clock: list[float]) -> None:
    client = RecordingClient()
    rec = EventRecorder(client, "kubelet")  # type: ignore[arg-type]
    for _ in range(3):
        await rec.event(RS, NORMAL, "BackOff", "Back-off restarting")
    assert len(client.creates) == 1
    assert [p[1]["count"] for p in client.patches] == [2, 3]


async def test_similar_events_are_combined_after_ten_messages(clock: list[float]) -> None:
    client = RecordingClient()
    rec = EventRecorder(client, "replicaset-controller")  # type: ignore[arg-type]
    for i in range(20):
        await rec.event(RS, NORMAL, "SuccessfulCreate", f"Created pod: web-1-{i}")
    # Nine events of their own, then one combined event counted up.
    plain = [e for e in client.creates if not e["message"].startswith(AGGREGATE_PREFIX)]
    combined = [e for e in client.creates if e["message"].startswith(AGGREGATE_PREFIX)]
    assert len(plain) == AGGREGATE_MAX_EVENTS - 1
    assert len(combined) == 1 and combined[0]["message"] == AGGREGATE_PREFIX + "Created pod: web-1-9"
    assert client.patches[-1][1]["count"] == 20 - AGGREGATE_MAX_EVENTS + 1
    assert client.patches[-1][1]["message"] == AGGREGATE_PREFIX + "Created pod: web-1-19"
    # Another reason is another group.
    await rec.event(RS, NORMAL, "SuccessfulDelete", "Deleted pod: web-1-0")
    assert client.creates[-1]["message"] == "Deleted pod: web-1-0"


async def test_each_object_gets_a_burst_then_one_write_per_five_minutes(clock: list[float]) -> None:
    client = RecordingClient()
    rec = EventRecorder(client, "kubelet")  # type: ignore[arg-type]

    def writes() -> int:
        return len(client.creates) + len(client.patches)

    for i in range(40):
        await rec.event(RS, NORMAL, f"Reason{i}", "m")
    assert writes() == int(SPAM_BURST)
    # Another object has its own budget.
    other = {**RS, "metadata": {**RS["metadata"], "uid": "u2", "name": "web-2"}}
    await rec.event(other, NORMAL, "Reason0", "m")
    assert writes() == int(SPAM_BURST) + 1
    clock[0] += 299.0
    await rec.event(RS, NORMAL, "Later", "m")
    assert writes() == int(SPAM_BURST) + 1
    clock[0] += 2.0
    await rec.event(RS, NORMAL, "Later", "m")
    assert writes() == int(SPAM_BURST) + 2


async def test_background_recorder_returns_at_once_and_writes_in_order(clock: list[float]) -> None:
    client = RecordingClient()
    rec = EventRecorder(client, "kubelet", background=True)  # type: ignore[arg-type]
    pod = {**RS, "kind": "Pod", "metadata": {**RS["metadata"], "uid": "p1"}}
    for reason in ("Pulled", "Created", "Started"):
        await rec.event(pod, NORMAL, reason, reason.lower())
    assert client.creates == []  # queued: the caller did not wait for the writes
    await rec.flush()
    assert [e["reason"] for e in client.creates] == ["Pulled", "Created", "Started"]
    await rec.event(pod, NORMAL, "Started", "started")  # the same again: counted, after the create
    await rec.close()
    assert [p[1]["count"] for p in client.patches] == [2]


async def test_background_recorder_keeps_to_its_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    client = RecordingClient()
    rec = EventRecorder(client, "kubelet", background=True, qps=50.0, burst=5)  # type: ignore[arg-type]
    slept: list[float] = []
    real_sleep = events.asyncio.sleep

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(events.asyncio, "sleep", sleep)
    for i in range(8):
        await rec.event({**RS, "metadata": {**RS["metadata"], "uid": f"u{i}"}}, NORMAL, "Created", f"c{i}")
    await rec.close()
    assert len(client.creates) == 8
    assert len(slept) == 3 and all(0 < s <= 1 / 50 + 1e-9 for s in slept)  # 5 at once, then 50 per second


async def test_background_recorder_drops_when_its_queue_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    client = RecordingClient()
    monkeypatch.setattr(events, "MAX_QUEUED", 3)
    rec = EventRecorder(client, "kubelet", background=True)  # type: ignore[arg-type]
    for i in range(5):  # the writer has not run yet: the queue takes 3
        await rec.event({**RS, "metadata": {**RS["metadata"], "uid": f"u{i}"}}, NORMAL, "Created", f"c{i}")
    await rec.close()
    assert len(client.creates) == 3


async def test_background_writer_holds_events_while_busy_up_to_max_delay() -> None:
    client = RecordingClient()
    busy = [True]
    rec = EventRecorder(client, "kubelet", background=True, busy=lambda: busy[0],  # type: ignore[arg-type]
                        max_delay=0.4)
    await rec.event(RS, NORMAL, "Started", "Started container c")
    await asyncio.sleep(0.2)
    assert client.creates == []  # held: the component is busy
    busy[0] = False
    await asyncio.wait_for(rec.flush(), 2)
    assert [e["reason"] for e in client.creates] == ["Started"]
    busy[0] = True  # busy for good: an event still goes out after max_delay
    start = time.monotonic()
    await rec.event(RS, NORMAL, "Killing", "Stopping container c")
    await asyncio.wait_for(rec.flush(), 2)
    assert [e["reason"] for e in client.creates] == ["Started", "Killing"]
    assert 0.35 <= time.monotonic() - start < 1.5
    await rec.close()
