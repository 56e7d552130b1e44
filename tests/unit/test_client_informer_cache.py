"""The informer's cache, indexes and relist diff, fed directly (no server)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from timonel.api.client.informer import (
    Informer,
    InformerFactory,
    key_of,
    meta_namespace_key,
    node_name_index,
    split_meta_namespace_key,
)
from timonel.api.client.rest import Client
from timonel.api.kubeconfig import ClusterConfig

# Never contacted: these tests feed the informer by hand.
CONFIG = ClusterConfig(server="http://127.0.0.1:1")


def pod(name: str, rv: int, node: str = "", ns: str = "ns") -> dict[str, Any]:
    p: dict[str, Any] = {"metadata": {"name": name, "namespace": ns, "resourceVersion": str(rv)},
                         "spec": {}}
    if node:
        p["spec"]["nodeName"] = node
    return p


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def on_add(self, obj: dict[str, Any]) -> None:
        self.events.append(("add", obj["metadata"]["name"], obj["metadata"]["resourceVersion"]))

    async def on_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        self.events.append(("update", new["metadata"]["name"],
                            f'{old["metadata"]["resourceVersion"]}->{new["metadata"]["resourceVersion"]}'))

    def on_delete(self, obj: dict[str, Any]) -> None:
        self.events.append(("delete", obj["metadata"]["name"], obj["metadata"]["resourceVersion"]))


async def settle(rec: Recorder, n: int) -> list[tuple[str, str, str]]:
    for _ in range(500):
        if len(rec.events) >= n:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.02)
    return rec.events


@pytest.fixture
async def informer() -> Any:
    inf = Informer(Client(CONFIG), ("v1", "Pod"))
    yield inf
    await inf.stop()


async def test_watch_events_update_cache_and_reach_handlers(informer: Informer) -> None:
    rec = Recorder()
    informer.add_handler(rec.on_add, rec.on_update, rec.on_delete)
    informer.replace([pod("a", 1)], "1")
    informer.apply_event("ADDED", pod("b", 2))
    informer.apply_event("MODIFIED", pod("a", 3))
    informer.apply_event("DELETED", pod("b", 4))
    informer.apply_event("DELETED", pod("never-seen", 5))
    informer.apply_event("BOOKMARK", {"metadata": {"resourceVersion": "9"}})
    assert await settle(rec, 4) == [("add", "a", "1"), ("add", "b", "2"), ("update", "a", "1->3"),
                                    ("delete", "b", "4")]
    assert informer.resource_version == "9"
    assert [key_of(o) for o in informer.list()] == [("ns", "a")]
    assert informer.get("ns", "a")["kind"] == "Pod"  # filled in for handlers
    assert informer.get("ns", "b") is None


async def test_relist_diff_emits_what_changed_while_away(informer: Informer) -> None:
    rec = Recorder()
    informer.replace([pod("same", 1), pod("changed", 2), pod("gone", 3)], "3")
    informer.add_handler(rec.on_add, rec.on_update, rec.on_delete)  # late: gets adds first
    await settle(rec, 3)
    rec.events.clear()
    informer.replace([pod("same", 1), pod("changed", 7), pod("new", 8)], "8")
    events = await settle(rec, 3)
    assert sorted(events) == [("add", "new", "8"), ("delete", "gone", "3"),
                              ("update", "changed", "2->7")]
    assert informer.resource_version == "8"
    assert sorted(key_of(o)[1] for o in informer.list()) == ["changed", "new", "same"]


async def test_indexes_follow_updates_and_deletes(informer: Informer) -> None:
    informer.replace([pod("a", 1, "n1"), pod("b", 2, "n1"), pod("c", 3)], "3")
    informer.add_index("node", node_name_index)
    assert sorted(p["metadata"]["name"] for p in informer.by_index("node", "n1")) == ["a", "b"]
    informer.apply_event("MODIFIED", pod("b", 4, "n2"))
    informer.apply_event("MODIFIED", pod("c", 5, "n2"))
    informer.apply_event("DELETED", pod("a", 6, "n1"))
    assert informer.by_index("node", "n1") == []
    assert sorted(p["metadata"]["name"] for p in informer.by_index("node", "n2")) == ["b", "c"]
    informer.replace([pod("c", 5, "n2")], "7")
    assert [p["metadata"]["name"] for p in informer.by_index("node", "n2")] == ["c"]
    with pytest.raises(KeyError, match="no index named 'zone'"):
        informer.by_index("zone", "x")
    with pytest.raises(ValueError):
        informer.add_index("node", node_name_index)


async def test_handler_errors_do_not_stop_other_events(informer: Informer) -> None:
    rec = Recorder()

    def broken(obj: dict[str, Any]) -> None:
        if obj["metadata"]["name"] == "bad":
            raise RuntimeError("handler bug")
        rec.on_add(obj)

    informer.add_handler(on_add=broken)
    informer.apply_event("ADDED", pod("bad", 1))
    informer.apply_event("ADDED", pod("good", 2))
    assert await settle(rec, 1) == [("add", "good", "2")]


async def test_factory_shares_one_informer_per_resource_and_selectors() -> None:
    f = InformerFactory(Client(CONFIG))
    a = f.informer(("v1", "Pod"))
    assert f.informer(("v1", "Pod")) is a
    assert f.informer(("v1", "Pod"), "ns") is not a
    assert f.informer(("v1", "Pod"), label_selector="app=x") is not a
    assert len(f.informers()) == 3
    with pytest.raises(ValueError, match="unknown resource"):
        f.informer(("v1", "Nonsense"))
    await f.stop()


def test_meta_namespace_keys() -> None:
    assert meta_namespace_key(pod("a", 1)) == "ns/a"
    assert meta_namespace_key({"metadata": {"name": "node1"}}) == "node1"
    assert split_meta_namespace_key("ns/a") == ("ns", "a")
    assert split_meta_namespace_key("node1") == ("", "node1")
