"""Informers: a local, always-converging copy of one resource, with callbacks.

An informer lists the resource, then watches from the list's
resourceVersion, keeping `dict[(namespace, name)] -> object` current and
telling its handlers what changed. It is how every control loop reads the
cluster (DESIGN.md §1 rule 2): reads come from memory, and nothing is ever
lost for good — when the watch cannot resume (410 Expired, or a server
restart) the informer relists and diffs the new list against its cache, so
objects added, changed or deleted while it was away come out as the right
add/update/delete callbacks (a delete with the last object it knew).

Objects handed out (to callbacks, `get`, `list`, `by_index`) are the cached
dicts themselves, shared by every user: copy before changing one.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import inspect
import logging
from collections.abc import Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from timonel.api.client.backoff import Backoff
from timonel.api.client.rest import ApiConnectionError, Client, RType, resolve
from timonel.api.client.watcher import FATAL_CODES, watch_forever
from timonel.api.client.wire import Obj
from timonel.api.errors import ApiError

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects
IndexFunc = Callable[[Obj], Iterable[str]]
# Callbacks may be plain functions or coroutine functions.
AddFunc = Callable[[Obj], Any]
UpdateFunc = Callable[[Obj, Obj], Any]
DeleteFunc = Callable[[Obj], Any]


def key_of(obj: Obj) -> Key:
    md = obj.get("metadata") or {}
    return str(md.get("namespace") or ""), str(md.get("name") or "")


def meta_namespace_key(obj: Obj) -> str:
    """client-go's work-queue key: `namespace/name`, or `name` when cluster-scoped."""
    ns, name = key_of(obj)
    return f"{ns}/{name}" if ns else name


def split_meta_namespace_key(key: str) -> Key:
    ns, sep, name = key.partition("/")
    return (ns, name) if sep else ("", ns)


def namespace_index(obj: Obj) -> list[str]:
    return [key_of(obj)[0]]


def node_name_index(obj: Obj) -> list[str]:
    """Pods by the node they are bound to (unscheduled pods under no value)."""
    node = (obj.get("spec") or {}).get("nodeName")
    return [node] if node else []


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


@dataclass
class _Listener:
    """One handler with its own queue, so a slow handler delays only itself
    and sees events in order."""

    on_add: AddFunc | None
    on_update: UpdateFunc | None
    on_delete: DeleteFunc | None
    queue: asyncio.Queue[tuple[str, Obj, Obj | None]] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None

    def notify(self, kind: str, obj: Obj, old: Obj | None = None) -> None:
        self.queue.put_nowait((kind, obj, old))

    async def run(self, name: str) -> None:
        while True:
            kind, obj, old = await self.queue.get()
            try:
                result: Any = None
                if kind == "add" and self.on_add is not None:
                    result = self.on_add(obj)
                elif kind == "update" and self.on_update is not None:
                    assert old is not None
                    result = self.on_update(old, obj)
                elif kind == "delete" and self.on_delete is not None:
                    result = self.on_delete(obj)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("informer handler failed informer=%s event=%s key=%s", name, kind,
                              meta_namespace_key(obj))


class Informer:
    def __init__(self, client: Client, rtype: RType, namespace: str = "",
                 label_selector: str = "", field_selector: str = "", *,
                 resync_period: float = 0.0, backoff: Backoff | None = None,
                 page_size: int = 500) -> None:
        self.client = client
        self.rtype = resolve(rtype)
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        self.backoff = backoff or Backoff(initial=0.2, factor=2.0, cap=30.0)
        self.page_size = page_size
        # The version of the last list or event applied to the cache.
        self.resource_version = ""
        # Set when the informer gave up (a request the server rejects as wrong).
        self.error: BaseException | None = None
        self._cache: dict[Key, Obj] = {}
        self._index_funcs: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[Key]]] = {}
        self._listeners: list[_Listener] = []
        self._synced = asyncio.Event()
        self._failed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self.name = f"{self.rtype.plural}/{namespace or '*'}" + (
            f"?{label_selector}" if label_selector else "") + (
            f"?{field_selector}" if field_selector else "")

    # -- reading the cache ----------------------------------------------------

    def get(self, namespace: str, name: str) -> Obj | None:
        return self._cache.get((namespace, name))

    def list(self, namespace: str | None = None) -> builtins.list[Obj]:
        if namespace is None:
            return list(self._cache.values())
        return [o for (ns, _), o in self._cache.items() if ns == namespace]

    def keys(self) -> builtins.list[Key]:
        return list(self._cache)

    def __len__(self) -> int:
        return len(self._cache)

    def has_synced(self) -> bool:
        """True once the first list is in the cache."""
        return self._synced.is_set()

    async def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait for the first list; False on timeout. Raises the error that
        made the informer give up, if it did."""
        waiters = [asyncio.ensure_future(self._synced.wait()),
                   asyncio.ensure_future(self._failed.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        if self.error is not None and not self._synced.is_set():
            raise self.error
        return self._synced.is_set()

    # -- indexes ----------------------------------------------------------------

    def add_index(self, name: str, fn: IndexFunc) -> None:
        """Index objects by the values `fn(obj)` returns (e.g. pods by node)."""
        if name in self._index_funcs:
            raise ValueError(f"informer {self.name} already has an index named {name!r}")
        self._index_funcs[name] = fn
        self._indices[name] = {}
        for key, obj in self._cache.items():
            self._index_add(name, fn, key, obj)

    def by_index(self, name: str, value: str) -> builtins.list[Obj]:
        if name not in self._indices:
            raise KeyError(f"informer {self.name} has no index named {name!r}; "
                           f"known: {', '.join(self._indices) or 'none'}")
        keys = self._indices[name].get(value, ())
        return [self._cache[k] for k in keys if k in self._cache]

    def _index_add(self, name: str, fn: IndexFunc, key: Key, obj: Obj) -> None:
        try:
            values = list(fn(obj))
        except Exception:
            log.exception("index function failed informer=%s index=%s key=%s", self.name, name,
                          key)
            return
        index = self._indices[name]
        for v in values:
            index.setdefault(v, set()).add(key)

    def _index_remove(self, key: Key, obj: Obj) -> None:
        for name, fn in self._index_funcs.items():
            index = self._indices[name]
            try:
                values = list(fn(obj))
            except Exception:
                values = [v for v, keys in index.items() if key in keys]
            for v in values:
                keys = index.get(v)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[v]

    # -- handlers ---------------------------------------------------------------

    def add_handler(self, on_add: AddFunc | None = None, on_update: UpdateFunc | None = None,
                    on_delete: DeleteFunc | None = None) -> None:
        """Register callbacks (plain or async). A handler added after the
        cache is filled first gets an add for every object already there."""
        listener = _Listener(on_add, on_update, on_delete)
        for obj in self._cache.values():
            listener.notify("add", obj)
        self._listeners.append(listener)
        with contextlib.suppress(RuntimeError):  # no running loop yet: start() does it
            asyncio.get_running_loop()
            self._start_listener(listener)

    def _start_listener(self, listener: _Listener) -> None:
        if listener.task is None:
            listener.task = asyncio.create_task(listener.run(self.name),
                                                name=f"informer-handler {self.name}")
            self._tasks.append(listener.task)

    def _notify(self, kind: str, obj: Obj, old: Obj | None = None) -> None:
        for listener in self._listeners:
            listener.notify(kind, obj, old)

    # -- the cache --------------------------------------------------------------

    def _store(self, key: Key, obj: Obj) -> Obj | None:
        old = self._cache.get(key)
        if old is not None:
            self._index_remove(key, old)
        obj.setdefault("apiVersion", self.rtype.api_version)
        obj.setdefault("kind", self.rtype.kind)
        self._cache[key] = obj
        for name, fn in self._index_funcs.items():
            self._index_add(name, fn, key, obj)
        return old

    def _remove(self, key: Key) -> Obj | None:
        old = self._cache.pop(key, None)
        if old is not None:
            self._index_remove(key, old)
        return old

    def apply_event(self, etype: str, obj: Obj) -> None:
        """One watch event into the cache and out to the handlers."""
        rv = _rv(obj)
        if rv:
            self.resource_version = rv
        if etype == "BOOKMARK":
            return
        key = key_of(obj)
        if etype == "DELETED":
            old = self._remove(key)
            if old is not None:
                obj.setdefault("apiVersion", self.rtype.api_version)
                obj.setdefault("kind", self.rtype.kind)
                self._notify("delete", obj)
            return
        if etype not in ("ADDED", "MODIFIED"):
            log.warning("unknown watch event type informer=%s type=%s", self.name, etype)
            return
        old = self._store(key, obj)
        if old is None:
            self._notify("add", obj)
        else:
            self._notify("update", obj, old)

    def replace(self, items: builtins.list[Obj], resource_version: str) -> None:
        """A full list into the cache: the diff against what was cached comes
        out as adds, updates (changed resourceVersion) and deletes (with the
        last object known, for objects deleted while the watch was away)."""
        new = {key_of(o): o for o in items}
        for key, obj in new.items():
            old = self._cache.get(key)
            if old is None:
                self._store(key, obj)
                self._notify("add", obj)
            elif _rv(old) != _rv(obj):
                self._store(key, obj)
                self._notify("update", obj, old)
        for key in [k for k in self._cache if k not in new]:
            old = self._remove(key)
            assert old is not None
            self._notify("delete", old)
        self.resource_version = resource_version

    async def _relist(self) -> str:
        result = await self.client.list_all(self.rtype, self.namespace,
                                            label_selector=self.label_selector,
                                            field_selector=self.field_selector,
                                            page_size=self.page_size)
        rv = str((result.get("metadata") or {}).get("resourceVersion") or "")
        self.replace(result["items"], rv)
        log.debug("informer listed informer=%s count=%d rv=%s", self.name, len(self._cache), rv)
        self._synced.set()
        return rv

    # -- running ------------------------------------------------------------------

    def start(self) -> None:
        """Start listing and watching in background tasks (idempotent)."""
        if self._started:
            return
        self._started = True
        for listener in self._listeners:
            self._start_listener(listener)
        self._tasks.append(asyncio.create_task(self._run(), name=f"informer {self.name}"))
        if self.resync_period > 0:
            self._tasks.append(asyncio.create_task(self._resync_loop(),
                                                   name=f"informer-resync {self.name}"))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for listener in self._listeners:
            listener.task = None
        self._started = False

    async def _run(self) -> None:
        try:
            rv = await self._first_list()
            events = watch_forever(self.client, self.rtype, self.namespace, resource_version=rv,
                                   label_selector=self.label_selector,
                                   field_selector=self.field_selector, on_expired=self._relist,
                                   backoff=self.backoff, bookmarks=True)
            async with aclosing(events) as stream:
                async for etype, obj in stream:
                    self.apply_event(etype, obj)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.error("informer stopped informer=%s err=%s", self.name, e)
            self.error = e
            self._failed.set()

    async def _first_list(self) -> str:
        b = self.backoff.fresh()
        while True:
            try:
                return await self._relist()
            except (ApiConnectionError, ApiError) as e:
                if isinstance(e, ApiError) and e.code in FATAL_CODES:
                    raise
                delay = b.next()
                log.warning("informer list failed informer=%s err=%s retry_in=%.1fs",
                            self.name, e, delay)
                await asyncio.sleep(delay)

    async def _resync_loop(self) -> None:
        await self._synced.wait()
        while True:
            await asyncio.sleep(self.resync_period)
            # Re-deliver every object as an update so level-triggered handlers
            # reconcile even when nothing changed (client-go's resync).
            for obj in list(self._cache.values()):
                self._notify("update", obj, obj)


class InformerFactory:
    """One informer per (resource, namespace, selectors), shared by every
    control loop of a process (DESIGN.md §3, controllers)."""

    def __init__(self, client: Client, *, resync_period: float = 0.0,
                 backoff: Backoff | None = None) -> None:
        self.client = client
        self.resync_period = resync_period
        self.backoff = backoff
        self._informers: dict[tuple[str, str, str, str, str, str], Informer] = {}
        self._started = False

    def informer(self, rtype: RType, namespace: str = "", label_selector: str = "",
                 field_selector: str = "") -> Informer:
        """The shared informer; created on first request, started at once if
        the factory already runs."""
        rt = resolve(rtype)
        key = (rt.group, rt.version, rt.plural, namespace, label_selector, field_selector)
        inf = self._informers.get(key)
        if inf is None:
            inf = Informer(self.client, rt, namespace, label_selector, field_selector,
                           resync_period=self.resync_period, backoff=self.backoff)
            self._informers[key] = inf
            if self._started:
                inf.start()
        return inf

    def informers(self) -> builtins.list[Informer]:
        return list(self._informers.values())

    def start(self) -> None:
        self._started = True
        for inf in self._informers.values():
            inf.start()

    async def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until every informer made so far has its first list."""
        results = await asyncio.gather(
            *(inf.wait_synced(timeout) for inf in self._informers.values()))
        return all(results)

    async def stop(self) -> None:
        self._started = False
        await asyncio.gather(*(inf.stop() for inf in self._informers.values()))
