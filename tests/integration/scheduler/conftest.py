"""Scheduler integration tests run against an API server of their own, so
the node counts in failure messages ("0/3 nodes are available") are exact
and no other test's nodes or pods get in the way."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from tests.integration.conftest import ApiServer, start_server
from tests.integration.fakenodes import FakeNodes
from timonel.api.client import Client
from timonel.api.errors import ApiError
from timonel.scheduler import Scheduler, SchedulerConfiguration

PODS = ("v1", "Pod")
NODES = ("v1", "Node")
EVENTS = ("v1", "Event")


@pytest.fixture(scope="module")
def sched_server() -> Iterator[ApiServer]:
    d = tempfile.mkdtemp(prefix="timonel-sched-")
    server = start_server(os.path.join(d, "server"))
    yield server
    server.stop()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
async def client(sched_server: ApiServer) -> AsyncIterator[Client]:
    async with Client.from_kubeconfig(sched_server.kubeconfig) as c:
        yield c
        # Every test starts from a cluster without nodes.
        for n in (await c.list(NODES))["items"]:
            with contextlib.suppress(ApiError):
                await c.delete(NODES, "", n["metadata"]["name"])


@pytest.fixture
async def ns(client: Client, request: pytest.FixtureRequest) -> str:
    name = f"s-{request.node.name.lower().replace('_', '-')[:40]}-{os.urandom(2).hex()}"
    await client.create(("v1", "Namespace"), {"apiVersion": "v1", "kind": "Namespace",
                                              "metadata": {"name": name}})
    return name


@contextlib.asynccontextmanager
async def running_scheduler(client: Client, config: SchedulerConfiguration | None = None
                            ) -> AsyncIterator[Scheduler]:
    config = config or SchedulerConfiguration(pod_initial_backoff_seconds=0.2,
                                              pod_max_backoff_seconds=1.0)
    sched = Scheduler(client, config, seed=7)
    task = asyncio.create_task(sched.run())
    try:
        assert await sched.informers.wait_synced(30)
        yield sched
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def pod(name: str, cpu: str = "100m", memory: str = "64Mi", **spec: Any) -> dict[str, Any]:
    labels = spec.pop("labels", {})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                                     "resources": {"requests": {"cpu": cpu, "memory": memory}}}],
                     **spec}}


async def wait_for(fn: Callable[[], Awaitable[Any]], timeout: float = 30.0,
                   what: str = "condition") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while True:
        last = await fn()
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not met in {timeout}s (last: {last!r})")
        await asyncio.sleep(0.1)


async def placements(client: Client, ns: str, names: list[str],
                     timeout: float = 30.0) -> dict[str, str]:
    """Wait until every named pod is bound; pod name -> node."""
    async def bound() -> dict[str, str] | None:
        items = (await client.list(PODS, ns))["items"]
        out = {p["metadata"]["name"]: p["spec"].get("nodeName") for p in items}
        if all(out.get(n) for n in names):
            return {n: out[n] for n in names}
        return None
    result: dict[str, str] = await wait_for(bound, timeout, f"pods {names} bound")
    return result


async def events_for(client: Client, ns: str, name: str, reason: str) -> list[dict[str, Any]]:
    items = (await client.list(EVENTS, ns))["items"]
    return [e for e in items if e["involvedObject"]["name"] == name and e["reason"] == reason]


__all__ = ["FakeNodes", "events_for", "placements", "pod", "running_scheduler", "wait_for"]
