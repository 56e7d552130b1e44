"""Informers against a real API server, including one that restarts and one
that answers 410: the cache must always converge to what the server has."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.integration.conftest import ApiServer, start_server
from timonel.api.client import Backoff, Client, Informer, InformerFactory
from timonel.api.client.informer import node_name_index
from timonel.api.kubeconfig import ClusterConfig
from timonel.api.storage.etcd_process import EtcdProcess, free_port

CM = ("v1", "ConfigMap")
POD = ("v1", "Pod")
FAST = Backoff(initial=0.1, factor=2.0, cap=1.0, jitter=0.2)


def cm(name: str, data: str = "1") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"v": data}}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.deleted: dict[str, dict[str, Any]] = {}

    def attach(self, inf: Informer) -> None:
        inf.add_handler(self.on_add, self.on_update, self.on_delete)

    def on_add(self, obj: dict[str, Any]) -> None:
        self.events.append(("add", obj["metadata"]["name"], obj.get("data", {}).get("v", "")))

    async def on_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.events.append(("update", new["metadata"]["name"], new.get("data", {}).get("v", "")))

    def on_delete(self, obj: dict[str, Any]) -> None:
        self.deleted[obj["metadata"]["name"]] = obj
        self.events.append(("delete", obj["metadata"]["name"], obj.get("data", {}).get("v", "")))


async def eventually(cond: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")
        await asyncio.sleep(0.05)


def names(inf: Informer) -> list[str]:
    return sorted(o["metadata"]["name"] for o in inf.list())


@pytest.fixture
async def client(api_server: ApiServer) -> AsyncIterator[Client]:
    c = Client.from_kubeconfig(api_server.kubeconfig)
    yield c
    await c.close()


async def test_informer_sees_add_update_delete(client: Client, namespace: str) -> None:
    await client.create(CM, cm("before"), namespace=namespace)
    inf = Informer(client, CM, namespace, backoff=FAST)
    rec = Recorder()
    rec.attach(inf)
    inf.start()
    try:
        assert await inf.wait_synced(30)
        assert names(inf) == ["before"]
        await client.create(CM, cm("a"), namespace=namespace)
        await client.patch(CM, namespace, "a", {"data": {"v": "2"}})
        await client.delete(CM, namespace, "before")
        await eventually(lambda: len(rec.events) >= 4, what="4 events")
        assert rec.events == [("add", "before", "1"), ("add", "a", "1"), ("update", "a", "2"),
                              ("delete", "before", "1")]
        assert names(inf) == ["a"]
        assert inf.get(namespace, "a")["data"] == {"v": "2"}
        assert inf.get(namespace, "before") is None
    finally:
        await inf.stop()


async def test_label_selector_informer_and_node_index(client: Client, namespace: str) -> None:
    def pod(name: str, app: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"app": app}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}

    for name, app in (("w1", "web"), ("w2", "web"), ("d1", "db")):
        await client.create(POD, pod(name, app), namespace=namespace)
    factory = InformerFactory(client, backoff=FAST)
    inf = factory.informer(POD, namespace, label_selector="app=web")
    assert factory.informer(POD, namespace, label_selector="app=web") is inf
    inf.add_index("node", node_name_index)
    factory.start()
    try:
        assert await factory.wait_synced(30)
        assert names(inf) == ["w1", "w2"]
        binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "w1"},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"}}
        await client.post_subresource(POD, namespace, "w1", "binding", binding)
        await eventually(lambda: len(inf.by_index("node", "node-a")) == 1, what="index")
        assert inf.by_index("node", "node-a")[0]["metadata"]["name"] == "w1"
        # Moving out of the selector is a delete for this informer.
        await client.patch(POD, namespace, "w2", {"metadata": {"labels": {"app": "other"}}})
        await eventually(lambda: names(inf) == ["w1"], what="w2 to leave the selection")
    finally:
        await factory.stop()


async def test_resync_redelivers_unchanged_objects(client: Client, namespace: str) -> None:
    await client.create(CM, cm("still"), namespace=namespace)
    inf = Informer(client, CM, namespace, resync_period=0.2, backoff=FAST)
    resyncs: list[str] = []

    def on_update(old: dict[str, Any], new: dict[str, Any]) -> None:
        if old is new:
            resyncs.append(new["metadata"]["name"])

    inf.add_handler(on_update=on_update)
    inf.start()
    try:
        await eventually(lambda: len(resyncs) >= 2, what="two resyncs")
        assert set(resyncs) == {"still"}
    finally:
        await inf.stop()


def _config(server: ApiServer, url: str) -> ClusterConfig:
    return ClusterConfig(server=url, ca_pem=server.ca_pem, token=server.token)


async def test_informer_heals_after_server_restart_with_changes_it_missed(
        etcd: EtcdProcess, caplog: pytest.LogCaptureFixture) -> None:
    """Server A dies; while it is down, server B (same etcd) changes, deletes and
    adds objects; A comes back. The informer (talking only to A) cannot resume
    its watch (A's fresh watch cache starts after those changes: 410) and must
    relist, end with the server's state and report each missed change, the
    missed delete with the last object it knew."""
    caplog.set_level(logging.INFO, logger="timonel.api.client.watcher")
    d = tempfile.mkdtemp(prefix="timonel-client-restart-")
    port = free_port()
    a = start_server(d, etcd.endpoint, port=port)
    b: ApiServer | None = None
    client = Client(_config(a, a.url), retries=1, retry_backoff=FAST)
    ns = f"restart-{os.urandom(3).hex()}"
    inf = Informer(client, CM, ns, backoff=FAST)
    try:
        await client.create(("v1", "Namespace"), {"metadata": {"name": ns}})
        for name in ("keep", "change", "gone"):
            await client.create(CM, cm(name), namespace=ns)
        rec = Recorder()
        rec.attach(inf)
        inf.start()
        assert await inf.wait_synced(30)
        await eventually(lambda: len(rec.events) == 3, what="initial adds")
        rec.events.clear()

        a.proc.kill()  # a crash: no graceful goodbye to the watch
        a.proc.wait()
        b = start_server(d, etcd.endpoint)
        async with Client(_config(b, b.url)) as other:
            await other.patch(CM, ns, "change", {"data": {"v": "2"}})
            await other.delete(CM, ns, "gone")
            await other.create(CM, cm("new"), namespace=ns)
        b.stop()
        b = None
        await asyncio.sleep(0.5)
        assert names(inf) == ["change", "gone", "keep"]  # cannot know yet

        a = start_server(d, etcd.endpoint, port=port)
        await eventually(lambda: names(inf) == ["change", "keep", "new"], 60, "heal")
        await eventually(lambda: len(rec.events) >= 3, what="diff events")
        assert sorted(rec.events) == [("add", "new", "1"), ("delete", "gone", "1"),
                                      ("update", "change", "2")]
        assert rec.deleted["gone"]["metadata"]["namespace"] == ns
        assert inf.get(ns, "change")["data"] == {"v": "2"}
        assert any("watch expired, relisting" in r.getMessage() for r in caplog.records)

        await client.create(CM, cm("after"), namespace=ns)
        await eventually(lambda: "after" in names(inf), what="events after healing")
    finally:
        await inf.stop()
        await client.close()
        if b is not None:
            b.stop()
        a.stop()
        shutil.rmtree(d, ignore_errors=True)
