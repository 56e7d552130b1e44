"""Updates start from the watch cache's copy (upstream's GuaranteedUpdate) and let etcd decide."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from timonel.api import meta, resources
from timonel.api.errors import ApiError
from timonel.api.jsonutil import deep_copy
from timonel.api.server.objects import Objects, key_of, prefix_of
from timonel.api.storage.etcd import Store
from timonel.api.storage.etcd_process import EtcdProcess
from timonel.api.storage.watch_cache import WatchCaches

CONFIGMAPS = resources.lookup("", "v1", "configmaps")
assert CONFIGMAPS is not None


class CountingStore(Store):
    gets = 0

    async def get(self, key: str) -> Any:
        self.gets += 1
        return await super().get(key)


@pytest.fixture
async def objects(etcd: EtcdProcess) -> AsyncIterator[tuple[Objects, CountingStore, str]]:
    store = CountingStore([etcd.endpoint])
    await store.connect()
    caches = WatchCaches(store)
    objects = Objects(store, caches)
    ns = f"cache-{meta.new_uid()[:8]}"
    try:
        yield objects, store, ns
    finally:
        await caches.stop()
        kvs, _, _ = await store.list(prefix_of(CONFIGMAPS, ns))
        for kv in kvs:
            await store.delete(kv.key, kv.mod_revision)
        await store.close()


def _set(key: str, value: str) -> Any:
    def mutate(obj: dict) -> dict:
        obj["data"][key] = value
        return obj
    return mutate


async def _cached(objects: Objects, ns: str, name: str, rv: str) -> dict:
    cache = await objects.caches.get(prefix_of(CONFIGMAPS))
    await cache.wait_fresh(int(rv))
    return cache.objects[key_of(CONFIGMAPS, ns, name)]


async def test_an_update_reads_the_cache_not_etcd(objects: tuple[Objects, CountingStore, str]) -> None:
    o, store, ns = objects
    made = await o.create(CONFIGMAPS, ns, {"metadata": {"name": "a"}, "data": {"k": "v"}})
    cached = await _cached(o, ns, "a", made["metadata"]["resourceVersion"])
    before = deep_copy(cached)
    store.gets = 0
    new, _ = await o.update(CONFIGMAPS, ns, "a", _set("k", "w"))
    assert store.gets == 0
    assert new["data"] == {"k": "w"} and int(new["metadata"]["resourceVersion"]) > int(made["metadata"]["resourceVersion"])
    assert cached == before  # the cache's copy is the cache's: never changed in place
    assert (await o.get(CONFIGMAPS, ns, "a"))["data"] == {"k": "w"}


async def test_a_stale_cached_copy_loses_nothing_and_refuses_nothing(
        objects: tuple[Objects, CountingStore, str]) -> None:
    o, _, ns = objects
    made = await o.create(CONFIGMAPS, ns, {"metadata": {"name": "a"}, "data": {"k": "v"}})
    cached = await _cached(o, ns, "a", made["metadata"]["resourceVersion"])
    stale = deep_copy(cached)
    second, _ = await o.update(CONFIGMAPS, ns, "a", _set("k2", "v2"))
    cache = await o.caches.get(prefix_of(CONFIGMAPS))
    await cache.wait_fresh(int(second["metadata"]["resourceVersion"]))
    key = key_of(CONFIGMAPS, ns, "a")
    cache.objects[key] = stale  # as if the cache had not seen the second write yet

    # A write from the stale copy fails its compare-and-swap and is made again on etcd's copy.
    third, _ = await o.update(CONFIGMAPS, ns, "a", _set("k3", "v3"))
    assert third["data"] == {"k": "v", "k2": "v2", "k3": "v3"}

    # A precondition on the current version holds, though the cached copy is older.
    cache.objects[key] = stale
    rv = third["metadata"]["resourceVersion"]

    def precondition(obj: dict) -> dict:
        obj["metadata"]["resourceVersion"] = rv
        obj["data"]["k4"] = "v4"
        return obj
    fourth, _ = await o.update(CONFIGMAPS, ns, "a", precondition)
    assert fourth["data"]["k4"] == "v4"

    # ...and a precondition on an old version is still a conflict.
    def old_precondition(obj: dict) -> dict:
        obj["metadata"]["resourceVersion"] = rv
        return obj
    with pytest.raises(ApiError) as err:
        await o.update(CONFIGMAPS, ns, "a", old_precondition)
    assert err.value.code == 409


async def test_a_copy_of_an_object_deleted_since_is_not_found(objects: tuple[Objects, CountingStore, str]) -> None:
    o, store, ns = objects
    made = await o.create(CONFIGMAPS, ns, {"metadata": {"name": "a"}, "data": {"k": "v"}})
    cached = await _cached(o, ns, "a", made["metadata"]["resourceVersion"])
    stale = deep_copy(cached)
    kv = await store.get(key_of(CONFIGMAPS, ns, "a"))
    assert kv is not None
    await store.delete(kv.key, kv.mod_revision)
    cache = await o.caches.get(prefix_of(CONFIGMAPS))
    cache.objects[key_of(CONFIGMAPS, ns, "a")] = stale
    with pytest.raises(ApiError) as err:
        await o.update(CONFIGMAPS, ns, "a", _set("k", "w"))
    assert err.value.code == 404
