"""Watch semantics: ordering, resume, 410 Expired, streaming lists, selectors."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import requests

from tests.integration.conftest import ApiServer


def cm(name: str, labels: dict | None = None, data: str = "1") -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels or {}}, "data": {"v": data}}


def events(http: requests.Session, url: str, params: dict[str, Any], *, count: int,
           timeout: float = 20.0) -> list[dict]:
    """Read `count` watch events (or until the server ends the stream)."""
    out: list[dict] = []
    with http.get(url, params={"watch": "true", **params}, stream=True, timeout=timeout) as r:
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"].startswith("application/json")
        for line in r.iter_lines():
            if not line:
                continue
            out.append(json.loads(line))
            if len(out) >= count:
                break
    return out


def test_watch_order_and_resume(api_server: ApiServer, http: requests.Session, namespace: str) -> None:
    base = f"{api_server.url}/api/v1/namespaces/{namespace}/configmaps"
    start_rv = http.get(base).json()["metadata"]["resourceVersion"]
    http.post(base, json=cm("a"))
    http.post(base, json=cm("b"))
    obj = http.get(f"{base}/a").json()
    obj["data"] = {"v": "2"}
    http.put(f"{base}/a", json=obj)
    http.delete(f"{base}/b")
    evs = events(http, base, {"resourceVersion": start_rv}, count=4)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [
        ("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
    assert rvs == sorted(rvs) and len(set(rvs)) == 4
    # Resuming from the second event replays exactly what came after it.
    later = events(http, base, {"resourceVersion": str(rvs[1])}, count=2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in later] == [
        ("MODIFIED", "a"), ("DELETED", "b")]


def test_watch_live_events_and_label_selector(api_server: ApiServer, http: requests.Session,
                                              namespace: str) -> None:
    base = f"{api_server.url}/api/v1/namespaces/{namespace}/configmaps"
    rv = http.get(base).json()["metadata"]["resourceVersion"]
    got: list[dict] = []

    def reader() -> None:
        got.extend(events(http, base, {"resourceVersion": rv, "labelSelector": "app=web"}, count=3))

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.5)
    http.post(base, json=cm("other", {"app": "db"}))
    http.post(base, json=cm("w", {"app": "web"}))
    # Moving out of the selection is a DELETED for this watcher, back in an ADDED.
    obj = http.get(f"{base}/w").json()
    obj["metadata"]["labels"] = {"app": "db"}
    obj = http.put(f"{base}/w", json=obj).json()
    obj["metadata"]["labels"] = {"app": "web"}
    http.put(f"{base}/w", json=obj)
    t.join(20)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in got] == [
        ("ADDED", "w"), ("DELETED", "w"), ("ADDED", "w")]


def test_watch_without_resource_version_starts_with_state(api_server: ApiServer, http: requests.Session,
                                                          namespace: str) -> None:
    base = f"{api_server.url}/api/v1/namespaces/{namespace}/configmaps"
    for n in ("x", "y"):
        http.post(base, json=cm(n))
    evs = events(http, base, {}, count=2)
    assert sorted((e["type"], e["object"]["metadata"]["name"]) for e in evs) == [
        ("ADDED", "x"), ("ADDED", "y")]


def test_streaming_list_ends_initial_events_with_bookmark(api_server: ApiServer, http: requests.Session,
                                                          namespace: str) -> None:
    base = f"{api_server.url}/api/v1/namespaces/{namespace}/configmaps"
    http.post(base, json=cm("s1"))
    http.post(base, json=cm("s2"))
    evs = events(http, base, {"sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
                              "allowWatchBookmarks": "true", "fieldSelector": "metadata.name=s2",
                              "timeoutSeconds": "10"}, count=2)
    assert evs[0]["type"] == "ADDED" and evs[0]["object"]["metadata"]["name"] == "s2"
    assert evs[1]["type"] == "BOOKMARK"
    md = evs[1]["object"]["metadata"]
    assert md["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(md["resourceVersion"]) >= int(evs[0]["object"]["metadata"]["resourceVersion"])


def test_watch_too_old_resource_version_is_410(api_server: ApiServer, http: requests.Session,
                                               namespace: str) -> None:
    # LimitRanges have no watch cache yet in this server: it starts now, so a
    # revision from before it is outside its window.
    base = f"{api_server.url}/api/v1/namespaces/{namespace}/limitranges"
    evs = events(http, base, {"resourceVersion": "1"}, count=1)
    assert evs[0]["type"] == "ERROR"
    st = evs[0]["object"]
    assert st["kind"] == "Status" and st["code"] == 410 and st["reason"] == "Expired"


def test_list_continue_after_compaction_is_410(api_server: ApiServer, http: requests.Session,
                                               namespace: str) -> None:
    base = f"{api_server.url}/api/v1/namespaces/{namespace}/configmaps"
    for i in range(3):
        http.post(base, json=cm(f"p{i}"))
    page = http.get(base, params={"limit": "1"}).json()
    token = page["metadata"]["continue"]
    # Compact etcd past the page's revision, as its periodic compaction would.
    http.post(base, json=cm("later"))
    import asyncio

    from timonel.api.storage.etcd import Store

    async def compact() -> None:
        store = Store(api_server.etcd_endpoint)
        await store.connect()
        await store.compact(await store.current_revision())
        await store.close()

    asyncio.run(compact())
    r = http.get(base, params={"limit": "1", "continue": token})
    assert r.status_code == 410 and r.json()["reason"] == "Expired"


