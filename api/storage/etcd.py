"""Objects in etcd: compare-and-swap writes, consistent ranges, raw watches.

Values are the object's JSON without `metadata.resourceVersion`: the resource
version *is* the etcd mod revision of the key, filled in on every read, so it
can never disagree with what etcd holds.

We talk to etcd through aetcd's connection and generated stubs, but build the
requests ourselves: aetcd's helpers lack range limits, revisions and the
watch progress requests the watch cache needs.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import aetcd
import grpc
from aetcd import rpc

from timonel.api import jsonutil
from timonel.api.errors import ApiError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KV:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int

    def decode(self) -> dict[str, Any]:
        return decode(self.value, self.mod_revision)


@dataclass(frozen=True)
class WatchEvent:
    type: str  # "PUT" or "DELETE"
    key: str
    value: bytes  # for DELETE: the previous value
    revision: int  # the event's mod revision
    prev_value: bytes | None


# etcd answers ranges of up to its own request limit per object; keep room
# for many of them in one response (gRPC's default cap is 4 MiB).
GRPC_OPTIONS = {"grpc.max_receive_message_length": 256 * 1024 * 1024}


class CompactedError(Exception):
    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"revision compacted; oldest available is {compact_revision}")
        self.compact_revision = compact_revision


class NotFoundInStore(Exception):
    pass


class CasFailed(Exception):
    """The key changed (or appeared/vanished) since the caller read it."""

    def __init__(self, current: KV | None) -> None:
        super().__init__("compare-and-swap failed")
        self.current = current


def decode(value: bytes, mod_revision: int) -> dict[str, Any]:
    obj: dict[str, Any] = jsonutil.loads_trusted(value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(mod_revision)
    return obj


def encode(obj: dict[str, Any]) -> bytes:
    meta = obj.get("metadata") or {}
    if "resourceVersion" in meta:
        obj = dict(obj)
        obj["metadata"] = {k: v for k, v in meta.items() if k != "resourceVersion"}
    return jsonutil.dumps(obj)


def resource_of(key: str) -> str:
    """`pods` for `/registry/pods/ns/name`: the label of etcd latency metrics."""
    parts = key.split("/", 3)
    return parts[2] if len(parts) > 2 and parts[1] == "registry" else ""


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key with this prefix."""
    b = bytearray(prefix)
    for i in range(len(b) - 1, -1, -1):
        if b[i] < 0xFF:
            b[i] += 1
            return bytes(b[: i + 1])
    return b"\0"


def parse_endpoints(endpoints: str | list[str]) -> list[tuple[str, int]]:
    items = endpoints.split(",") if isinstance(endpoints, str) else endpoints
    out = []
    for e in items:
        e = e.strip()
        if not e:
            continue
        u = urlparse(e if "://" in e else f"http://{e}")
        if u.scheme not in ("http", ""):
            raise ValueError(f"etcd endpoint {e!r}: only plain http:// endpoints are supported")
        out.append((u.hostname or "127.0.0.1", u.port or 2379))
    if not out:
        raise ValueError("no etcd endpoints given")
    return out


class Store:
    """One etcd client shared by the whole API server.

    With several endpoints (an etcd cluster) requests go to the first one that
    answers; on an unavailable error the next is tried.
    """

    def __init__(self, endpoints: str | list[str],
                 observe: Callable[[str, str, float], None] | None = None) -> None:
        self.endpoints = parse_endpoints(endpoints)
        self._active = 0
        self._client: aetcd.Client | None = None
        self._observe = observe
        self._lock = asyncio.Lock()

    async def connect(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            for i in range(len(self.endpoints)):
                idx = (self._active + i) % len(self.endpoints)
                host, port = self.endpoints[idx]
                client = aetcd.Client(host=host, port=port, timeout=10, options=GRPC_OPTIONS)
                try:
                    await client.connect()
                    assert client.kvstub is not None
                    await client.kvstub.Range(rpc.RangeRequest(key=b"/", limit=1), timeout=2)
                except Exception as e:  # any failure: try the next endpoint
                    last = e
                    await client.close()
                    continue
                old, self._client, self._active = self._client, client, idx
                if old is not None:
                    await old.close()
                log.info("etcd connected endpoint=%s:%s", host, port)
                return
            await asyncio.sleep(0.2)
        raise ConnectionError(f"cannot reach etcd at {self.endpoints}: {last}")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    @property
    def channel(self) -> grpc.aio.Channel:
        assert self._client is not None and self._client.channel is not None
        return self._client.channel

    async def _call(self, op: str, fn: Callable[[Any], Any], req: Any, key: str = "") -> Any:
        """Run one unary RPC, failing over to another endpoint when one is down."""
        for attempt in range(len(self.endpoints) + 1):
            client = self._client
            if client is None:
                raise ApiError(503, "storage is not connected")
            t0 = time.perf_counter()
            try:
                res = await fn(client)(req, timeout=10)
            except grpc.aio.AioRpcError as e:
                if e.code() in (grpc.StatusCode.UNAVAILABLE,) and attempt < len(self.endpoints):
                    async with self._lock:
                        if self._client is client:
                            self._active = (self._active + 1) % len(self.endpoints)
                            try:
                                await self.connect(timeout=5)
                            except ConnectionError:
                                pass
                    continue
                if e.code() == grpc.StatusCode.OUT_OF_RANGE:
                    raise CompactedError(0) from e
                raise ApiError(503 if e.code() == grpc.StatusCode.UNAVAILABLE else 500,
                               f"storage error: {e.details()}") from e
            if self._observe is not None:
                self._observe(op, resource_of(key), time.perf_counter() - t0)
            return res
        raise ApiError(503, "storage unavailable")

    # -- reads ---------------------------------------------------------------

    async def get(self, key: str) -> KV | None:
        res = await self._call("get", lambda c: c.kvstub.Range, rpc.RangeRequest(key=key.encode()), key)
        if not res.kvs:
            return None
        kv = res.kvs[0]
        return KV(key, kv.value, kv.mod_revision, kv.create_revision)

    async def list(self, prefix: str, *, revision: int = 0, limit: int = 0,
                   start: str | None = None) -> tuple[list[KV], int, bool]:
        """Keys under `prefix` at one revision: (kvs, revision read at, more left).

        `start` resumes after a previous page (inclusive start key).
        """
        p = prefix.encode()
        req = rpc.RangeRequest(
            key=start.encode() if start else p, range_end=prefix_end(p),
            revision=revision, limit=limit,
        )
        res = await self._call("list", lambda c: c.kvstub.Range, req, prefix)
        kvs = [KV(kv.key.decode(), kv.value, kv.mod_revision, kv.create_revision) for kv in res.kvs]
        return kvs, res.header.revision, bool(res.more)

    async def count(self, prefix: str) -> int:
        p = prefix.encode()
        res = await self._call("count", lambda c: c.kvstub.Range,
                               rpc.RangeRequest(key=p, range_end=prefix_end(p), count_only=True))
        return int(res.count)

    async def current_revision(self) -> int:
        res = await self._call("revision", lambda c: c.kvstub.Range,
                               rpc.RangeRequest(key=b"/", limit=1, count_only=True))
        return int(res.header.revision)

    # -- writes (all compare-and-swap) ---------------------------------------

    async def create(self, key: str, value: bytes) -> int:
        """Put `key` only if absent. Returns the new revision; CasFailed if it exists."""
        k = key.encode()
        req = rpc.TxnRequest(
            compare=[rpc.Compare(key=k, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL,
                                 create_revision=0)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k))],
        )
        res = await self._call("create", lambda c: c.kvstub.Txn, req, key)
        if not res.succeeded:
            raise CasFailed(_first_kv(key, res))
        return int(res.header.revision)

    async def update(self, key: str, value: bytes, expected_revision: int) -> int:
        """Replace `key` only if its mod revision is still `expected_revision`."""
        k = key.encode()
        req = rpc.TxnRequest(
            compare=[rpc.Compare(key=k, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL,
                                 mod_revision=expected_revision)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k))],
        )
        res = await self._call("update", lambda c: c.kvstub.Txn, req, key)
        if not res.succeeded:
            raise CasFailed(_first_kv(key, res))
        return int(res.header.revision)

    async def delete(self, key: str, expected_revision: int) -> int:
        """Delete `key` only if its mod revision is still `expected_revision`."""
        k = key.encode()
        req = rpc.TxnRequest(
            compare=[rpc.Compare(key=k, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL,
                                 mod_revision=expected_revision)],
            success=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k))],
        )
        res = await self._call("delete", lambda c: c.kvstub.Txn, req, key)
        if not res.succeeded:
            raise CasFailed(_first_kv(key, res))
        return int(res.header.revision)

    async def compact(self, revision: int) -> None:
        await self._call("compact", lambda c: c.kvstub.Compact,
                         rpc.CompactionRequest(revision=revision, physical=True))

    # -- watch ---------------------------------------------------------------

    async def watch(self, prefix: str, start_revision: int,
                    progress: asyncio.Queue[int] | None = None,
                    ) -> AsyncIterator[builtins.list[WatchEvent] | int]:
        """Yield batches of events under `prefix` from `start_revision` on.

        Also yields a bare int (a revision) on progress notifications, i.e.
        when etcd confirms that every event up to it has been delivered. Put
        anything on `progress` to ask etcd for such a notification.
        Raises CompactedError if `start_revision` is no longer available.
        """
        p = prefix.encode()
        create = rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
            key=p, range_end=prefix_end(p), start_revision=start_revision, prev_kv=True,
        ))
        requests: asyncio.Queue[Any] = asyncio.Queue()
        requests.put_nowait(create)

        async def request_iter() -> AsyncIterator[Any]:
            pump = asyncio.ensure_future(_pump_progress(progress, requests)) if progress else None
            try:
                while True:
                    yield await requests.get()
            finally:
                if pump:
                    pump.cancel()

        stub = rpc.WatchStub(self.channel)
        call = stub.Watch(request_iter())
        try:
            async for res in call:
                if res.compact_revision:
                    raise CompactedError(res.compact_revision)
                if res.canceled:
                    raise ConnectionError(f"etcd canceled the watch: {res.cancel_reason}")
                if res.created and not res.events:
                    continue
                if not res.events:
                    yield int(res.header.revision)
                    continue
                batch = []
                for ev in res.events:
                    kv = ev.kv
                    is_delete = ev.type == rpc.Event.DELETE
                    prev = ev.prev_kv.value if ev.HasField("prev_kv") else None
                    batch.append(WatchEvent(
                        "DELETE" if is_delete else "PUT", kv.key.decode(),
                        (prev or b"") if is_delete else kv.value, kv.mod_revision, prev,
                    ))
                yield batch
        finally:
            call.cancel()


async def _pump_progress(progress: asyncio.Queue[int], requests: asyncio.Queue[Any]) -> None:
    while True:
        await progress.get()
        requests.put_nowait(rpc.WatchRequest(progress_request=rpc.WatchProgressRequest()))


def _first_kv(key: str, txn_response: Any) -> KV | None:
    for r in txn_response.responses:
        if r.WhichOneof("response") == "response_range" and r.response_range.kvs:
            kv = r.response_range.kvs[0]
            return KV(key, kv.value, kv.mod_revision, kv.create_revision)
    return None
