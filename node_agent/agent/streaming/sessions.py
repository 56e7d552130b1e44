"""Exec and attach over the WebSocket channel protocol.

Exec bridges a client's WebSocket to the runtime's streaming `Exec` gRPC: a
thread reads the (blocking) gRPC stream into an asyncio queue, the client's
stdin and resize messages go the other way, and the exit code ends the
session as a status message. Attach is the same bridge over the runtime's
`Attach` stream (the container's own stdio, served by its shim); it ends in
success whatever the exit code, as the kubelet's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import grpc
from aiohttp import WSMsgType, web

from timonel.node_agent.runtime.client import ExecSession

from . import channels as ch

log = logging.getLogger(__name__)

OUTPUT_QUEUE = 64


def pick_protocol(request: web.Request) -> str | None:
    """The channel protocol for this upgrade: the newest offered we speak;
    `channel.k8s.io` when none is offered (as the kubelet); None when only
    unknown ones are."""
    offered = ch.split_header(request.headers.get("Sec-WebSocket-Protocol", ""))
    if not offered:
        return ch.V1
    return ch.negotiate(offered)


async def open_socket(request: web.Request, protocol: str) -> web.WebSocketResponse:
    # No heartbeat: an exec may sit idle for hours (a shell); TCP keeps it.
    ws = web.WebSocketResponse(protocols=[protocol], max_msg_size=16 << 20)
    await ws.prepare(request)
    return ws


async def send(ws: web.WebSocketResponse, protocol: str, channel: int, data: bytes) -> None:
    msg = ch.encode(protocol, channel, data)
    if isinstance(msg, str):
        await ws.send_str(msg)
    else:
        await ws.send_bytes(msg)


async def finish(ws: web.WebSocketResponse, protocol: str, status: dict[str, Any]) -> None:
    payload = ch.status_payload(protocol, status)
    with contextlib.suppress(ConnectionError, RuntimeError):
        if payload is not None:
            await send(ws, protocol, ch.ERROR, payload)
        await ws.close()


async def run_exec(ws: web.WebSocketResponse, protocol: str, start: Callable[[], ExecSession],
                   cmd: list[str], stdin: bool, stdout: bool, stderr: bool, tty: bool,
                   attach: bool = False) -> None:
    """Run one exec (or `attach`) session on an open WebSocket until the process
    exits (the attach session ends) or the client goes away."""
    loop = asyncio.get_running_loop()
    # Bounded: a slow client slows the reads from the runtime instead of filling memory.
    out: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=OUTPUT_QUEUE)
    closed = threading.Event()
    session = start()

    def put(item: tuple[str, Any]) -> None:
        if not closed.is_set():
            asyncio.run_coroutine_threadsafe(out.put(item), loop).result()

    def pump() -> None:
        try:
            for kind, data in session:
                put((kind, data))
            put(("exit", session.exit_code))
        except grpc.RpcError as e:
            put(("error", e.details() if hasattr(e, "details") else str(e)))
        except (RuntimeError, concurrent.futures.CancelledError):  # the loop is gone: nobody to tell
            pass

    threading.Thread(target=pump, name="exec-pump", daemon=True).start()

    async def read_client() -> None:
        async for msg in ws:
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                continue
            frame = ch.decode(protocol, msg.data)
            if frame is None:
                continue
            if ch.closed_channel(protocol, frame) == ch.STDIN:
                session.close_stdin()
            elif frame.channel == ch.STDIN and stdin and frame.data:
                session.send(frame.data)
            elif frame.channel == ch.RESIZE and tty:
                size = ch.parse_resize(frame.data)
                if size:
                    session.resize(*size)

    reader = asyncio.create_task(read_client())
    try:
        # Tells the client the session is up (the kubelet does the same).
        await send(ws, protocol, ch.STDOUT if stdout else ch.STDERR, b"")
        while True:
            getter = asyncio.create_task(out.get())
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                log.info("exec client went away cmd=%s", cmd[:1])
                return
            kind, data = getter.result()
            if kind == "stdout" and stdout:
                await send(ws, protocol, ch.STDOUT, data)
            elif kind == "stderr" and stderr:
                await send(ws, protocol, ch.STDERR, data)
            elif kind == "exit":
                await finish(ws, protocol, {"metadata": {}, "status": "Success"} if attach
                             else ch.exit_status(data, cmd))
                return
            elif kind == "error":
                what = "error attaching to the container" if attach else "error executing command"
                await finish(ws, protocol, ch.exit_status(None, cmd, f"{what}: {data}"))
                return
    finally:
        closed.set()
        while not out.empty():  # frees a pump blocked on a full queue
            out.get_nowait()
        reader.cancel()
        session.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


def resize_message(rows: int, cols: int) -> bytes:
    return json.dumps({"Width": cols, "Height": rows}).encode()
