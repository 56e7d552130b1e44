"""Watch fan-out semantics that need no etcd: selector transitions and slow watchers."""

from __future__ import annotations

import asyncio

from timonel.api.errors import ApiError
from timonel.api.storage.watch_cache import Event, ResourceCache, Watcher, _filtered


def obj(name: str, app: str, rv: int = 1) -> dict:
    return {"metadata": {"name": name, "labels": {"app": app}, "resourceVersion": str(rv)}}


def web(o: dict) -> bool:
    return o["metadata"]["labels"].get("app") == "web"


def test_moving_out_of_selection_is_deleted_and_in_is_added() -> None:
    assert _filtered(Event("MODIFIED", obj("a", "db"), obj("a", "web"), 2), web).type == "DELETED"  # type: ignore[union-attr]
    assert _filtered(Event("MODIFIED", obj("a", "web"), obj("a", "db"), 2), web).type == "ADDED"  # type: ignore[union-attr]
    assert _filtered(Event("MODIFIED", obj("a", "web"), obj("a", "web"), 2), web).type == "MODIFIED"  # type: ignore[union-attr]
    assert _filtered(Event("MODIFIED", obj("a", "db"), obj("a", "db"), 2), web) is None
    assert _filtered(Event("ADDED", obj("a", "db"), None, 2), web) is None


async def test_slow_watcher_gets_410_and_is_dropped() -> None:
    cache = ResourceCache(store=None, prefix="/registry/x/")  # type: ignore[arg-type]
    w = Watcher(cache, lambda o: True)
    w.queue = asyncio.Queue(3)
    cache.watchers.add(w)
    for i in range(5):
        w.offer(Event("ADDED", obj(f"o{i}", "web", i), None, i))
    assert w.closed and w not in cache.watchers
    items = [w.queue.get_nowait() for _ in range(w.queue.qsize())]
    assert isinstance(items[-1], ApiError) and items[-1].code == 410


def test_replay_window_and_expiry() -> None:
    cache = ResourceCache(store=None, prefix="/registry/x/", window=3)  # type: ignore[arg-type]
    cache.rev = cache.oldest = 10
    for rev in range(11, 16):
        if len(cache.events) == cache.events.maxlen:
            cache.oldest = cache.events[0].revision
        cache.events.append(Event("ADDED", obj(f"o{rev}", "web", rev), None, rev))
    cache.rev = 15
    _, replay = cache.watch(13, lambda o: True)
    assert [e.revision for e in replay] == [14, 15]
    try:
        cache.watch(11, lambda o: True)
    except ApiError as e:
        assert e.code == 410 and e.reason == "Expired"
    else:
        raise AssertionError("a revision older than the window must be 410")
