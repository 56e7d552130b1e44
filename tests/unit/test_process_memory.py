"""Start-up hooks of long-running processes: TLS read buffers (smaller per connection, the same
bytes through them), free heap handed back, start-up objects frozen out of collections."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import gc
import hashlib
import os
import ssl
import weakref

import pytest

from timonel.api import pki, process_memory, tls
from timonel.api.process_memory import TLS_READ_BUFFER, shrink_tls_read_buffers


@pytest.fixture
def restore_buffer_size():
    # Tests that run timonel's main() in this process have already shrunk it: start from asyncio's own.
    before = asyncio.sslproto.SSLProtocol.max_size
    asyncio.sslproto.SSLProtocol.max_size = 256 * 1024
    yield
    asyncio.sslproto.SSLProtocol.max_size = before


def _buffer(writer: asyncio.StreamWriter) -> int:
    return len(writer.transport._ssl_protocol._ssl_buffer)  # type: ignore[attr-defined]


async def test_connections_get_the_small_buffer_and_carry_large_bodies_intact(tmp_path, restore_buffer_size):
    assert asyncio.sslproto.SSLProtocol.max_size > TLS_READ_BUFFER, "nothing to shrink: the test proves nothing"
    shrink_tls_read_buffers()
    files = pki.ensure_tls(str(tmp_path), [])
    payload = os.urandom(3 * 2**20 + 12345)  # many buffers' worth, not a multiple of any of them
    server_buffers: list[int] = []

    async def echo_digest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_buffers.append(_buffer(writer))
        body = await reader.readexactly(len(payload))
        writer.write(hashlib.sha256(body).digest() + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo_digest, "127.0.0.1", 0, ssl=tls.server_ssl_context(files, False))
    port = server.sockets[0].getsockname()[1]
    ctx = ssl.create_default_context(cafile=files.ca_cert)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=ctx), 30)
        writer.write(payload)
        await writer.drain()
        digest = await asyncio.wait_for(reader.readexactly(32), 60)
        back = await asyncio.wait_for(reader.readexactly(len(payload)), 60)
        assert _buffer(writer) == TLS_READ_BUFFER
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    assert server_buffers == [TLS_READ_BUFFER]
    assert digest == hashlib.sha256(payload).digest()
    assert back == payload


def test_a_buffer_smaller_than_a_tls_record_is_refused(restore_buffer_size):
    before = asyncio.sslproto.SSLProtocol.max_size
    with pytest.raises(ValueError, match="smaller than one TLS record"):
        shrink_tls_read_buffers(4096)
    assert asyncio.sslproto.SSLProtocol.max_size == before


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0])


@pytest.mark.skipif(not os.path.exists("/proc/self/status") or process_memory._malloc_trim() is None,
                    reason="needs glibc's malloc_trim and /proc (Linux with glibc)")
def test_release_free_heap_gives_freed_c_heap_back():
    # Many mid-sized blocks (over obmalloc's 512 bytes: glibc's heap), every other one kept,
    # so the free ones are holes glibc keeps without a trim.
    blocks = [bytearray(4000) for _ in range(20_000)]
    keep = blocks[::50]
    del blocks
    before = _rss_kib()
    assert process_memory.release_free_heap() is True
    assert before - _rss_kib() > 20_000  # of the ~78 MB freed, most pages go back
    assert len(keep) == 400


def test_periodic_release_stops_where_libc_has_no_malloc_trim(monkeypatch):
    monkeypatch.setattr(process_memory, "_malloc_trim", lambda: None)
    assert process_memory.release_free_heap() is False
    asyncio.run(asyncio.wait_for(process_memory.release_free_heap_periodically(0.01), 5))


def test_start_up_objects_are_collected_once_then_frozen() -> None:
    class Cycle:
        pass

    garbage = Cycle()
    garbage.me = garbage  # type: ignore[attr-defined]
    gone = weakref.ref(garbage)
    del garbage
    alive = [Cycle()]
    alive.append(alive)  # type: ignore[arg-type]  # a cycle still in use
    try:
        process_memory.freeze_start_up_objects()
        assert gone() is None  # collected before the freeze, not kept forever
        assert gc.get_freeze_count() > 0
        assert gc.is_tracked(alive) and not any(o is alive for o in gc.get_objects())  # frozen
        before = gc.get_freeze_count()
        gc.collect()  # later collections leave the frozen ones alone
        assert gc.get_freeze_count() == before
    finally:
        gc.unfreeze()  # the rest of this test process collects as before
