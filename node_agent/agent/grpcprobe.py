"""The `grpc` probe: one grpc.health.v1.Health/Check call over plaintext HTTP/2.

grpcio's channels open their sockets on their own threads, so they cannot be
put in the pod's network namespace; this speaks the few HTTP/2 frames one
unary call needs over a socket made there (handlers.connect). Response
headers are not decoded (HPACK with Huffman coding): the verdict comes from
the response message alone, and a call answered without one is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time

from .handlers import Outcome, Target, connect, hostport, net_error

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7
END_STREAM, ACK, END_HEADERS, PADDED = 0x1, 0x1, 0x4, 0x8
STATUSES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
METHOD = "/grpc.health.v1.Health/Check"


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _literal(name_index: int, name: str, value: str) -> bytes:
    """A header field literal without indexing (plain strings, no Huffman)."""
    out = _hpack_int(name_index, 4, 0x00)
    if not name_index:
        out += _hpack_int(len(name), 7, 0x00) + name.encode()
    return out + _hpack_int(len(value.encode()), 7, 0x00) + value.encode()


def request_frames(authority: str, service: str) -> bytes:
    # Static table: 3 is ":method: POST", 6 ":scheme: http", 4 ":path", 1 ":authority".
    block = (bytes([0x83, 0x86]) + _literal(4, "", METHOD) + _literal(1, "", authority)
             + _literal(0, "content-type", "application/grpc") + _literal(0, "te", "trailers")
             + _literal(0, "user-agent", "kube-probe/1.31"))
    msg = b""
    if service:
        raw = service.encode()
        msg = b"\x0a" + _varint(len(raw)) + raw
    body = b"\x00" + struct.pack(">I", len(msg)) + msg
    return (PREFACE + _frame(SETTINGS, 0, 0, b"") + _frame(HEADERS, END_HEADERS, 1, block)
            + _frame(DATA, END_STREAM, 1, body))


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def parse_status(message: bytes) -> int:
    """HealthCheckResponse.status (field 1, varint); 0 when absent."""
    i, status = 0, 0
    while i < len(message):
        key, i = _read_varint(message, i)
        field_no, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(message, i)
            if field_no == 1:
                status = value
        elif wire == 2:
            length, i = _read_varint(message, i)
            i += length
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
    return status


def _read_varint(b: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(b):
            raise ValueError("truncated protobuf varint")
        byte = b[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7


async def _call(sock: socket.socket, authority: str, service: str) -> int | None:
    """The health status, or None when the call ended without a response message."""
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        writer.write(request_frames(authority, service))
        await writer.drain()
        data = bytearray()
        while True:
            head = await reader.readexactly(9)
            length = int.from_bytes(head[:3], "big")
            kind, flags, stream = head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
            payload = await reader.readexactly(length)
            if kind == SETTINGS and not flags & ACK:
                writer.write(_frame(SETTINGS, ACK, 0, b""))
            elif kind == PING and not flags & ACK:
                writer.write(_frame(PING, ACK, 0, payload))
            elif kind == GOAWAY or (kind == RST_STREAM and stream == 1):
                return None
            elif kind == DATA and stream == 1:
                if flags & PADDED:
                    payload = payload[1:len(payload) - payload[0]]
                data += payload
                if len(data) >= 5 and len(data) >= 5 + int.from_bytes(data[1:5], "big"):
                    return parse_status(bytes(data[5:5 + int.from_bytes(data[1:5], "big")]))
            if stream == 1 and flags & END_STREAM:
                return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def grpc_check(target: Target, port: int, service: str, timeout: float) -> Outcome:
    """Success when the server answers SERVING for `service` ("" = the server as a whole)."""
    addr = hostport(target.pod_ip, port)
    deadline = time.monotonic() + timeout
    try:
        sock = await connect(target, target.pod_ip, port, deadline)
    except (OSError, TimeoutError) as e:
        return Outcome(False, f'timeout: failed to connect service "{addr}" within {timeout:g}s: '
                              f"{net_error(e)}")
    try:
        status = await asyncio.wait_for(_call(sock, addr, service), max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        return Outcome(False, f"timeout: health rpc did not complete within {timeout:g}s")
    except (OSError, ValueError, asyncio.IncompleteReadError) as e:
        return Outcome(False, f"error: health rpc probe failed: {net_error(e)}")
    finally:
        sock.close()
    if status is None:
        return Outcome(False, "error: health rpc probe failed: the call ended without a response; "
                              "does the server implement grpc.health.v1.Health"
                              + (f" for service {service!r}" if service else "") + "?")
    if status != 1:
        return Outcome(False, f'service unhealthy (responded with "{STATUSES.get(status, str(status))}")')
    return Outcome(True, "service healthy")
