"""Watch over HTTP: newline-terminated JSON events, served from the watch cache.

Starting points follow upstream's resourceVersion semantics for watch:
- unset: the current state as ADDED events, then changes (consistent);
- "0": the cached state as ADDED events, then changes;
- N: changes after N (410 Expired when N is older than the cache window);
- sendInitialEvents=true (streaming list, kubectl 1.37's `delete` and
  `rollout status`): the current state as ADDED events, then a BOOKMARK
  annotated `k8s.io/initial-events-end: "true"`, then changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiohttp import web

from timonel.api import meta
from timonel.api.errors import ApiError
from timonel.api.server import codec
from timonel.api.server.context import Server
from timonel.api.server.objects import prefix_of
from timonel.api.server.rest import build_filter
from timonel.api.server.routing import RequestInfo
from timonel.api.server.tables import to_table
from timonel.api.storage.watch_cache import Event, Filter

DEFAULT_TIMEOUT = 1800.0


def _scope(match: Filter, info: RequestInfo) -> Filter:
    ns, name = info.namespace, info.name
    if not ns and not name:
        return match

    def scoped(o: dict[str, Any]) -> bool:
        if ns and meta.namespace_of(o) != ns:
            return False
        if name and meta.name_of(o) != name:
            return False
        return match(o)

    return scoped


async def watch(server: Server, request: web.Request, info: RequestInfo) -> web.StreamResponse:
    rtype = info.rtype
    q = request.query
    match = _scope(build_filter(request, rtype), info)
    rv = q.get("resourceVersion", "")
    send_initial = codec.query_bool(request, "sendInitialEvents")
    bookmarks = codec.query_bool(request, "allowWatchBookmarks")
    timeout = float(codec.query_int(request, "timeoutSeconds", 0)) or DEFAULT_TIMEOUT
    table_version = codec.table_version(request.headers.get("Accept", ""))
    include_object = q.get("includeObject", "Metadata")
    if send_initial and q.get("resourceVersionMatch") != "NotOlderThan":
        raise ApiError(422, "resourceVersionMatch: Forbidden: sendInitialEvents requires setting "
                       "resourceVersionMatch to NotOlderThan", "Invalid")
    if rv and not rv.isdigit():
        raise ApiError(400, f'invalid resource version "{rv}": resourceVersion must be an integer')

    cache = await server.caches.get(prefix_of(rtype))
    initial: list[dict[str, Any]] = []
    if send_initial or rv == "":
        if rv and rv != "0":
            await cache.wait_fresh(int(rv))
        elif rv == "":
            await cache.sync_with_storage()
        initial, from_rev = cache.snapshot(match)
    elif rv == "0":
        initial, from_rev = cache.snapshot(match)
    else:
        from_rev = int(rv)
        await cache.wait_fresh(from_rev)
    # No await between the snapshot and registering: no event can slip between.
    try:
        watcher, replay = cache.watch(from_rev, match)
    except ApiError as e:
        # As upstream's watch cache: once the request is accepted, even a
        # too-old resourceVersion is reported inside the stream (200 + ERROR).
        return await _error_stream(request, e)

    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                   "Cache-Control": "no-cache, private"})
    resp.enable_chunked_encoding()
    metrics = server.metrics
    if metrics is not None:
        metrics.watch_started(rtype.plural)
    try:
        await resp.prepare(request)

        headers_sent = False

        def encode(ev: Event) -> bytes:
            nonlocal headers_sent
            if table_version is None:
                return ev.line()
            # Like upstream, only the first Table of a watch carries the columns.
            table = to_table([ev.obj], rtype, include_object=include_object,
                             include_headers=not headers_sent,
                             api_version=f"meta.k8s.io/{table_version}")
            headers_sent = True
            return codec.dumps({"type": ev.type, "object": table}) + b"\n"

        def bookmark(rev: int, initial_end: bool = False) -> bytes:
            md: dict[str, Any] = {"resourceVersion": str(rev)}
            if initial_end:
                md["annotations"] = {"k8s.io/initial-events-end": "true"}
            return codec.dumps({"type": "BOOKMARK", "object": {
                "kind": rtype.kind, "apiVersion": rtype.api_version, "metadata": md}}) + b"\n"

        chunk = bytearray()
        for obj in sorted(initial, key=lambda o: (meta.namespace_of(o), meta.name_of(o))):
            chunk += encode(Event("ADDED", obj, None, meta.resource_version(obj)))
            if len(chunk) > 256 * 1024:
                await resp.write(bytes(chunk))
                chunk.clear()
        if send_initial:
            # kubectl needs this bookmark to finish its initial sync, even if it
            # did not ask for bookmarks explicitly.
            chunk += bookmark(from_rev, initial_end=True)
        for ev in replay:
            chunk += encode(ev)
        if chunk:
            await resp.write(bytes(chunk))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                item = await asyncio.wait_for(watcher.queue.get(),
                                              min(left, server.bookmark_interval))
            except TimeoutError:
                if bookmarks and time.monotonic() < deadline:
                    await resp.write(bookmark(cache.rev))
                continue
            out = bytearray()
            ended = False
            # Drain what is already queued into one write.
            while True:
                if isinstance(item, ApiError):
                    out += codec.dumps({"type": "ERROR", "object": item.status()}) + b"\n"
                    ended = True
                    break
                out += encode(item)
                if watcher.queue.empty() or len(out) > 256 * 1024:
                    break
                item = watcher.queue.get_nowait()
            await resp.write(bytes(out))
            if ended:
                break
        with contextlib.suppress(ConnectionError):
            await resp.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        watcher.close()
        if metrics is not None:
            metrics.watch_ended(rtype.plural)
    return resp


async def _error_stream(request: web.Request, err: ApiError) -> web.StreamResponse:
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write(codec.dumps({"type": "ERROR", "object": err.status()}) + b"\n")
    await resp.write_eof()
    return resp
