"""Leader election through a Lease on a real API server."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Callable

import pytest

from tests.integration.conftest import ApiServer
from timonel.api.client import Client, LeaderElector

LEASE = ("coordination.k8s.io/v1", "Lease")
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
# Short but not tight: renewals every 0.5 s have 3 s before they count as lost.
TIMING = {"lease_duration": 4.0, "renew_deadline": 3.0, "retry_period": 0.5}


@pytest.fixture
async def client(api_server: ApiServer) -> AsyncIterator[Client]:
    c = Client.from_kubeconfig(api_server.kubeconfig)
    yield c
    await c.close()


async def eventually(cond: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


class Candidate:
    def __init__(self, client: Client, lease: str, ns: str, identity: str,
                 release_on_cancel: bool = True) -> None:
        self.elector = LeaderElector(client, lease, ns, identity,
                                     release_on_cancel=release_on_cancel, **TIMING)
        self.leading = False
        self.started = 0
        self.stopped = 0
        self.work_cancelled = False
        self.task: asyncio.Task[None] | None = None

    async def work(self) -> None:
        self.started += 1
        self.leading = True
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.work_cancelled = True
            raise
        finally:
            self.leading = False

    def on_stopped(self) -> None:
        self.stopped += 1

    def start(self) -> None:
        self.task = asyncio.create_task(self.elector.run(self.work, self.on_stopped))

    async def cancel(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


async def test_one_leader_and_takeover_when_it_stops_renewing(client: Client,
                                                               namespace: str) -> None:
    lease = f"ctrl-{os.urandom(2).hex()}"
    a = Candidate(client, lease, namespace, "a", release_on_cancel=False)
    b = Candidate(client, lease, namespace, "b")
    a.start()
    await eventually(lambda: a.leading, what="a to lead")
    b.start()
    await asyncio.sleep(TIMING["lease_duration"] + 1)  # longer than a lease: a keeps renewing
    assert a.leading and not b.leading and b.elector.leader() == "a"
    first = await client.get(LEASE, namespace, lease)
    assert first["spec"]["holderIdentity"] == "a"
    assert first["spec"]["leaseDurationSeconds"] == 4
    assert MICRO_TIME.match(first["spec"]["renewTime"]), first["spec"]["renewTime"]
    assert MICRO_TIME.match(first["spec"]["acquireTime"])
    assert first["spec"]["leaseTransitions"] == 0

    loop = asyncio.get_running_loop()
    await a.cancel()  # like a crash: it stops renewing and does not release
    stopped_at = loop.time()
    assert a.stopped == 1 and a.work_cancelled
    await eventually(lambda: b.leading, 30, "b to take over")
    # b had to see the lease unchanged for a whole lease duration first.
    assert loop.time() - stopped_at >= TIMING["lease_duration"] - TIMING["retry_period"] - 0.5
    taken = await client.get(LEASE, namespace, lease)
    assert taken["spec"]["holderIdentity"] == "b"
    assert taken["spec"]["leaseTransitions"] == 1

    # b releases on a clean stop, so c does not wait out a lease duration.
    await b.cancel()
    released = await client.get(LEASE, namespace, lease)
    assert released["spec"]["holderIdentity"] == ""
    c = Candidate(client, lease, namespace, "c")
    t0 = loop.time()
    c.start()
    await eventually(lambda: c.leading, 30, "c to lead")
    assert loop.time() - t0 < TIMING["lease_duration"]
    await c.cancel()


async def test_leader_steps_down_when_its_lease_is_taken(client: Client,
                                                         namespace: str) -> None:
    lease = f"ctrl-{os.urandom(2).hex()}"
    a = Candidate(client, lease, namespace, "a")
    a.start()
    await eventually(lambda: a.leading, what="a to lead")
    live = await client.get(LEASE, namespace, lease)
    live["spec"]["holderIdentity"] = "intruder"
    await client.update(LEASE, live)
    assert a.task is not None
    await asyncio.wait_for(a.task, 30)  # run() returns once leadership is lost
    assert a.work_cancelled and a.stopped == 1 and not a.elector.is_leader()
    # It lost the lease, so it must not have released the intruder's hold.
    assert (await client.get(LEASE, namespace, lease))["spec"]["holderIdentity"] == "intruder"


async def test_work_that_finishes_releases_the_lease(client: Client, namespace: str) -> None:
    lease = f"ctrl-{os.urandom(2).hex()}"
    elector = LeaderElector(client, lease, namespace, "solo", **TIMING)
    ran = []

    async def work() -> None:
        ran.append(elector.is_leader())

    await asyncio.wait_for(elector.run(work), 30)
    assert ran == [True]
    assert (await client.get(LEASE, namespace, lease))["spec"]["holderIdentity"] == ""
