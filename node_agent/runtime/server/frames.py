"""Serving the unary calls as frames (api/frames.py) with the gRPC server's own servicers.

A connection carries one call at a time. A call that may wait for long
(a container's exit, an exec, a pull) is cancelled when its client hangs up,
as gRPC cancels it; the quick ones are simply awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from ..api import frames

log = logging.getLogger(__name__)

Handler = Callable[[Any, Any], Awaitable[Any]]
# Calls that block until something else happens: hung-up clients must not leave them behind.
_WAITING = frozenset({"WaitContainer", "ExecSync", "StopContainer", "StopPodSandbox", "PullImage", "ImportImage"})


class Aborted(Exception):
    """What `context.abort` raises, as grpc.aio's does: the call ends with this status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


class _Context:
    """The part of grpc.aio.ServicerContext the servicers use."""

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise Aborted(code, details)


_CONTEXT = _Context()


def handlers(servicers: Mapping[str, object]) -> dict[str, tuple[frames.Method, Handler]]:
    """Each unary method's path -> (its method, the servicer's bound method); `servicers` by
    service name ("RuntimeService")."""
    table: dict[str, tuple[frames.Method, Handler]] = {}
    for path, m in frames.UNARY.items():
        handler = getattr(servicers.get(m.service), m.name, None)
        if handler is not None:  # else the call is UNIMPLEMENTED, as gRPC has it
            table[path] = (m, handler)
    return table


async def start(path: str, table: dict[str, tuple[frames.Method, Handler]], mode: int) -> asyncio.Server:
    """Listen on `path` (created with `mode`: no one else may connect in between)."""
    old_umask = os.umask(0o777 & ~mode)
    try:
        server = await asyncio.start_unix_server(lambda r, w: _serve(table, r, w), path)
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    return server


async def _serve(table: dict[str, tuple[frames.Method, Handler]], reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readexactly(frames.REQUEST.size)
            except asyncio.IncompleteReadError:
                return  # the client closed the connection between calls
            size, name_len = frames.REQUEST.unpack(head)
            if size > frames.MAX_MESSAGE:
                writer.write(frames.answer_frame(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
                                                 f"request of {size} bytes exceeds {frames.MAX_MESSAGE}".encode()))
                await writer.drain()
                return  # its payload is not read: the connection cannot go on
            body = await reader.readexactly(name_len + size)
            answer = await _call(table, body[:name_len].decode(errors="replace"), body[name_len:], reader)
            if answer is None:
                return  # the client hung up during the call
            writer.write(answer)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _call(table: dict[str, tuple[frames.Method, Handler]], path: str, payload: bytes,
                reader: asyncio.StreamReader) -> bytes | None:
    entry = table.get(path)
    if entry is None:
        return _error(grpc.StatusCode.UNIMPLEMENTED, f"Method not found: {path}")
    method, handler = entry
    try:
        request = method.request.FromString(payload)
    except DecodeError:
        return _error(grpc.StatusCode.INTERNAL, "Exception deserializing request!")
    try:
        if method.name in _WAITING:
            response = await _unless_hung_up(handler(request, _CONTEXT), reader)
            if response is None:
                return None
        else:
            response = await handler(request, _CONTEXT)
    except Aborted as e:
        return _error(e.code, e.details)
    except Exception as e:
        log.exception("rpc=%s msg=unexpected error", method.name)
        return _error(grpc.StatusCode.UNKNOWN, f"Unexpected {type(e)}: {e}")
    out = response.SerializeToString()
    if len(out) > frames.MAX_MESSAGE:
        return _error(grpc.StatusCode.RESOURCE_EXHAUSTED, f"response of {len(out)} bytes exceeds {frames.MAX_MESSAGE}")
    return frames.answer_frame(frames.OK, out)


async def _unless_hung_up(work: Awaitable[Any], reader: asyncio.StreamReader) -> Any | None:
    """`work`'s result, or None (and `work` cancelled) if the client hangs up first: it sends
    nothing more until it has its answer, so anything readable is its end."""
    task = asyncio.ensure_future(work)
    hangup = asyncio.ensure_future(reader.read(1))
    try:
        await asyncio.wait((task, hangup), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not hangup.done():
            hangup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hangup  # the stream's next read must not find this one still waiting
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return None
    return task.result()


def _error(code: grpc.StatusCode, details: str) -> bytes:
    return frames.answer_frame(code.value[0], details.encode())
