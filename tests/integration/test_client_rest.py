"""The async client against a real `timonel server`: verbs, errors, watches."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest

from tests.integration.conftest import ApiServer
from timonel.api.client import ApiConnectionError, Client, retry_on_conflict, watch_forever
from timonel.api.errors import ApiError
from timonel.api.kubeconfig import ClusterConfig
from timonel.api.resources import by_kind
from timonel.api.storage.etcd_process import free_port

CM = ("v1", "ConfigMap")
POD = by_kind("", "Pod")


def cm(name: str, data: str = "1", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels or {}}, "data": {"v": data}}


def rv(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["resourceVersion"])


@pytest.fixture
async def client(api_server: ApiServer) -> AsyncIterator[Client]:
    c = Client.from_kubeconfig(api_server.kubeconfig)
    yield c
    await c.close()


async def test_crud_round_trip(client: Client, namespace: str) -> None:
    created = await client.create(CM, cm("a", labels={"app": "x"}), namespace=namespace)
    assert created["metadata"]["namespace"] == namespace and rv(created)
    got = await client.get(CM, namespace, "a")
    assert got["data"] == {"v": "1"} and rv(got) == rv(created)

    got["data"]["v"] = "2"
    updated = await client.update(CM, got)
    assert updated["data"] == {"v": "2"} and int(rv(updated)) > int(rv(got))

    merged = await client.patch(CM, namespace, "a", {"data": {"w": "3"}})
    assert merged["data"] == {"v": "2", "w": "3"}
    jp = await client.patch(CM, namespace, "a", [{"op": "remove", "path": "/data/w"}],
                            patch_type="json")
    assert jp["data"] == {"v": "2"}

    await client.create(CM, {**cm("b"), "metadata": {"name": "b", "namespace": namespace}})
    listed = await client.list(CM, namespace)
    assert sorted(o["metadata"]["name"] for o in listed["items"]) == ["a", "b"]
    assert listed["kind"] == "ConfigMapList" and listed["metadata"]["resourceVersion"]
    selected = await client.list(CM, namespace, label_selector="app=x")
    assert [o["metadata"]["name"] for o in selected["items"]] == ["a"]

    deleted = await client.delete(CM, namespace, "a")
    assert deleted["metadata"]["name"] == "a"
    with pytest.raises(ApiError) as e:
        await client.get(CM, namespace, "a")
    assert (e.value.code, e.value.reason) == (404, "NotFound")


async def test_list_all_follows_continue_at_one_revision(client: Client, namespace: str) -> None:
    for i in range(7):
        await client.create(CM, cm(f"c{i}", labels={"batch": "yes"}), namespace=namespace)
    page = await client.list(CM, namespace, limit=3)
    assert len(page["items"]) == 3 and page["metadata"].get("continue")
    everything = await client.list_all(CM, namespace, page_size=3)
    assert sorted(o["metadata"]["name"] for o in everything["items"]) == [f"c{i}" for i in range(7)]
    assert "continue" not in everything["metadata"]

    gone = await client.delete_collection(CM, namespace, label_selector="batch=yes")
    assert len(gone["items"]) == 7
    assert (await client.list(CM, namespace))["items"] == []


async def test_stale_update_is_a_409_conflict_and_retry_on_conflict_heals(
        client: Client, namespace: str) -> None:
    first = await client.create(CM, cm("counter", "0"), namespace=namespace)
    second_copy = dict(first, data={"v": "from-a"})
    await client.update(CM, second_copy)
    stale = dict(first, data={"v": "from-b"})
    with pytest.raises(ApiError) as e:
        await client.update(CM, stale)
    assert (e.value.code, e.value.reason) == (409, "Conflict")

    await client.update(CM, {**(await client.get(CM, namespace, "counter")), "data": {"v": "0"}})

    async def increment() -> None:
        async def once() -> None:
            live = await client.get(CM, namespace, "counter")
            live["data"]["v"] = str(int(live["data"]["v"]) + 1)
            await client.update(CM, live)

        await retry_on_conflict(once, steps=20)

    await asyncio.gather(*(increment() for _ in range(6)))
    assert (await client.get(CM, namespace, "counter"))["data"]["v"] == "6"


async def test_errors_carry_the_status(client: Client, namespace: str) -> None:
    await client.create(CM, cm("dup"), namespace=namespace)
    with pytest.raises(ApiError) as e:
        await client.create(CM, cm("dup"), namespace=namespace)
    assert (e.value.code, e.value.reason, e.value.name) == (409, "AlreadyExists", "dup")

    first = await client.get(CM, namespace, "dup")
    await client.patch(CM, namespace, "dup", {"data": {"v": "2"}})
    with pytest.raises(ApiError) as e:
        await client.delete(CM, namespace, "dup", preconditions={"resourceVersion": rv(first)})
    assert e.value.code == 409
    with pytest.raises(ValueError, match="namespace is required"):
        await client.get(CM, "", "dup")


async def test_bad_token_is_401(api_server: ApiServer) -> None:
    cfg = ClusterConfig(server=api_server.url, ca_pem=api_server.ca_pem, token="not-a-token")
    async with Client(cfg) as c:
        with pytest.raises(ApiError) as e:
            await c.list(CM, "default")
    assert e.value.code == 401


async def test_unreachable_server_is_a_connection_error_naming_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with Client(ClusterConfig(server=url), retries=1) as c:
        with pytest.raises(ApiConnectionError) as e:
            await c.get(CM, "default", "x")
        assert url in str(e.value) and isinstance(e.value, ConnectionError)
        with pytest.raises(ApiConnectionError):
            await c.create(CM, cm("x"), namespace="default")
        with pytest.raises(ApiConnectionError):
            async for _ in c.watch(CM, "default"):
                pass


async def test_subresources_binding_and_status(client: Client, namespace: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    await client.create(POD, pod, namespace=namespace)
    await client.post_subresource(POD, namespace, "p", "binding", {
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}})
    bound = await client.get(POD, namespace, "p")
    assert bound["spec"]["nodeName"] == "node-1"

    bound["status"] = {**(bound.get("status") or {}), "phase": "Running"}
    after = await client.update_status(POD, bound)
    assert after["status"]["phase"] == "Running"
    status = await client.get_subresource(POD, namespace, "p", "status")
    assert status["status"]["phase"] == "Running"
    await client.delete(POD, namespace, "p", grace_period_seconds=0)


async def test_watch_resumes_exactly_after_a_resource_version(client: Client,
                                                             namespace: str) -> None:
    a1 = await client.create(CM, cm("a"), namespace=namespace)
    await client.patch(CM, namespace, "a", {"data": {"v": "2"}})
    await client.create(CM, cm("b"), namespace=namespace)
    await client.delete(CM, namespace, "a")
    seen = []
    async with aclosing(client.watch(CM, namespace, resource_version=rv(a1),
                                     timeout_seconds=30)) as events:
        async for etype, obj in events:
            if etype == "BOOKMARK":
                continue
            seen.append((etype, obj["metadata"]["name"]))
            if len(seen) == 3:
                break
    assert seen == [("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a")]


async def test_watch_too_old_version_raises_410(client: Client, namespace: str) -> None:
    # Watch caches start with the server, after it created its system
    # namespaces: revision 1 is always before their window.
    with pytest.raises(ApiError) as e:
        async for _ in client.watch(CM, namespace, resource_version="1", timeout_seconds=10):
            pass
    assert (e.value.code, e.value.reason) == (410, "Expired")


async def test_streaming_list_ends_initial_events_with_a_bookmark(client: Client,
                                                                  namespace: str) -> None:
    for n in ("x", "y"):
        await client.create(CM, cm(n), namespace=namespace)
    seen = []
    async with aclosing(client.watch(CM, namespace, send_initial_events=True,
                                     timeout_seconds=30)) as events:
        async for etype, obj in events:
            seen.append((etype, obj["metadata"].get("name", "")))
            if etype == "BOOKMARK":
                assert obj["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true"
                break
    assert seen == [("ADDED", "x"), ("ADDED", "y"), ("BOOKMARK", "")]


async def test_watch_forever_resumes_after_the_server_ends_the_watch(client: Client,
                                                                    namespace: str) -> None:
    start = (await client.list(CM, namespace))["metadata"]["resourceVersion"]
    seen: list[tuple[str, str]] = []

    async def consume() -> None:
        # Each watch request lasts 1-2 s, so this spans several of them.
        async with aclosing(watch_forever(client, CM, namespace, resource_version=start,
                                          min_timeout=1)) as events:
            async for etype, obj in events:
                seen.append((etype, obj["metadata"]["name"]))

    task = asyncio.create_task(consume())
    try:
        await client.create(CM, cm("one"), namespace=namespace)
        await asyncio.sleep(2.5)
        await client.create(CM, cm("two"), namespace=namespace)
        await asyncio.sleep(2.5)
        await client.delete(CM, namespace, "one")
        for _ in range(200):
            if len(seen) >= 3:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert seen == [("ADDED", "one"), ("ADDED", "two"), ("DELETED", "one")]


async def test_watch_forever_calls_back_on_410_and_goes_on(client: Client,
                                                           namespace: str) -> None:
    relists = 0

    async def relist() -> str:
        nonlocal relists
        relists += 1
        return str((await client.list(CM, namespace))["metadata"]["resourceVersion"])

    name = f"after-{os.urandom(2).hex()}"

    async def first_event() -> tuple[str, str]:
        async with aclosing(watch_forever(client, CM, namespace, resource_version="1",
                                          on_expired=relist)) as events:
            async for etype, obj in events:
                return etype, obj["metadata"]["name"]
        raise AssertionError("watch ended")

    task = asyncio.create_task(first_event())
    for _ in range(100):
        if relists:
            break
        await asyncio.sleep(0.05)
    assert relists == 1
    await client.create(CM, cm(name), namespace=namespace)
    assert await asyncio.wait_for(task, 30) == ("ADDED", name)
