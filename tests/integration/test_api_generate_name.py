"""generateName collisions are retried with a new name (upstream since 1.32, KEP-4420)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from timonel.api import meta, resources
from timonel.api.errors import ApiError
from timonel.api.server.objects import GENERATE_NAME_RETRIES, Objects, key_of
from timonel.api.storage.etcd import Store
from timonel.api.storage.etcd_process import EtcdProcess
from timonel.api.storage.watch_cache import WatchCaches


def _cm(name: str = "", generate: str = "") -> dict:
    md = {"name": name} if name else {"generateName": generate}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": {"k": "v"}}


def _names(seq: list[str]) -> Iterator[str]:
    yield from seq
    raise AssertionError("generate_name called more often than expected")


async def test_taken_generated_names_are_generated_again(etcd: EtcdProcess,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store([etcd.endpoint])
    await store.connect()
    objects = Objects(store, WatchCaches(store))
    rtype = resources.lookup("", "v1", "configmaps")
    assert rtype is not None
    ns = f"gen-{meta.new_uid()[:8]}"
    try:
        for taken in ("gen-aaaaa", "gen-bbbbb"):
            await objects.create(rtype, ns, _cm(taken))
        names = _names(["gen-aaaaa", "gen-bbbbb", "gen-ccccc"])
        monkeypatch.setattr(meta, "generate_name", lambda base: next(names))
        made = await objects.create(rtype, ns, _cm(generate="gen-"))
        assert made["metadata"]["name"] == "gen-ccccc"
        # Every try taken: the last name's 409, after the bounded retries.
        always = _names(["gen-aaaaa"] * (GENERATE_NAME_RETRIES + 1))
        monkeypatch.setattr(meta, "generate_name", lambda base: next(always))
        with pytest.raises(ApiError) as err:
            await objects.create(rtype, ns, _cm(generate="gen-"))
        assert err.value.code == 409
        # A name the client chose is never changed.
        with pytest.raises(ApiError) as err:
            await objects.create(rtype, ns, _cm("gen-aaaaa"))
        assert err.value.code == 409
    finally:
        for name in ("gen-aaaaa", "gen-bbbbb", "gen-ccccc"):
            kv = await store.get(key_of(rtype, ns, name))
            if kv is not None:
                await store.delete(kv.key, kv.mod_revision)
        await store.close()
