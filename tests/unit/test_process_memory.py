"""TLS read buffers: smaller per connection, the same bytes through them."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import hashlib
import os
import ssl

import pytest

from timonel.api import pki, tls
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
