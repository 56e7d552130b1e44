"""The grpc probe's hand-made HTTP/2 call against a real grpcio server on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from timonel.node_agent.agent.grpcprobe import grpc_check, parse_status
from timonel.node_agent.agent.handlers import Target

# service name -> HealthCheckResponse.status
STATUS = {"": 1, "db": 2}


def check(request: bytes, context: grpc.ServicerContext) -> bytes:
    service = request[2:].decode() if request else ""  # field 1: tag, length, bytes
    if service not in STATUS:
        context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
    return bytes([0x08, STATUS[service]])


@pytest.fixture(scope="module")
def health_port() -> Iterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(check)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(None)


def test_parse_status() -> None:
    assert parse_status(b"") == 0
    assert parse_status(b"\x08\x01") == 1
    assert parse_status(b"\x12\x03abc\x08\x02") == 2  # an unknown field is skipped


async def test_serving_not_serving_and_unknown(health_port: Any) -> None:
    target = Target(None, "127.0.0.1")
    out = await grpc_check(target, health_port, "", 5)
    assert (out.ok, out.message) == (True, "service healthy")
    out = await grpc_check(target, health_port, "db", 5)
    assert (out.ok, out.message) == (False, 'service unhealthy (responded with "NOT_SERVING")')
    out = await grpc_check(target, health_port, "nope", 5)
    assert not out.ok and "without a response" in out.message and "'nope'" in out.message


async def test_nothing_listening() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = await grpc_check(Target(None, "127.0.0.1"), port, "", 2)
    assert not out.ok
    assert out.message == f'timeout: failed to connect service "127.0.0.1:{port}" within 2s: connection refused'
