"""The streaming Attach: a gRPC stream relayed to the container's shim.

The shim owns the container's stdio and serves it on `attach.sock` in the
state dir (container/attach.py has the frame format); this side only
translates frames to and from gRPC messages. The shim outlives the runtime,
so a restarted runtime attaches the same way. The stream ends with the exit
code when the container exits while attached, without one when the shim
ends the session (input ended on a container without stdin_once); a client
that leaves closes its connection to the shim.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import struct
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass

from ..api import runtime_pb2 as pb
from ..container.attach import FRAME, MAX_FRAME, SIZE, SOCKET, frame
from ..container.state import EXITED
from .containers import _record
from .errors import FailedPrecondition, InvalidArgument
from .runtime import Runtime

log = logging.getLogger(__name__)

_SUN_PATH_MAX = 100  # sockaddr_un's sun_path is 108 bytes with its NUL; keep a margin


@dataclass
class Target:
    cid: str
    socket_path: str
    stdin: bool  # the container has stdin
    tty: bool


def check_start(first: pb.AttachStreamRequest | None) -> pb.AttachRequest:
    if first is None or not first.HasField("start"):
        raise InvalidArgument("Attach: the first message must carry `start` (container_id, stdin, ...)")
    if not first.start.container_id:
        raise InvalidArgument("Attach: start.container_id is empty; give the container to attach to")
    if not (first.start.stdin or first.start.stdout or first.start.stderr):
        raise InvalidArgument("Attach: set at least one of stdin, stdout and stderr")
    return first.start


def target(rt: Runtime, ref: str) -> Target:
    rec = _record(rt, ref)
    st = rt.containers.status(rec.id)
    if st.state == EXITED:
        raise FailedPrecondition(f"container {rec.id} has exited (code {st.exit_code}); "
                                 "attach needs a created or running container")
    spec = rt.containers.spec(rec.id)
    return Target(rec.id, os.path.join(rt.containers.state_dir(rec.id), SOCKET), spec.stdin, spec.tty)


async def _connect(path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if len(path) <= _SUN_PATH_MAX:
        return await asyncio.open_unix_connection(path)
    # A long state dir: reach the socket through a short /proc path to its directory.
    d = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
    try:
        return await asyncio.open_unix_connection(f"/proc/self/fd/{d}/{os.path.basename(path)}")
    finally:
        os.close(d)


def _size_frame(size: pb.TerminalSize) -> bytes | None:
    if not (size.width and size.height):
        return None
    return frame(b"r", SIZE.pack(min(size.height, 0xFFFF), min(size.width, 0xFFFF)))


async def _feed(requests: AsyncIterator[pb.AttachStreamRequest], writer: asyncio.StreamWriter,
                stdin: bool) -> None:
    """Client messages to the shim; the client half-closing ends its input."""
    async for msg in requests:
        if msg.HasField("resize") and (f := _size_frame(msg.resize)) is not None:
            writer.write(f)
        if msg.stdin and stdin:
            for i in range(0, len(msg.stdin), MAX_FRAME):
                writer.write(frame(b"i", msg.stdin[i:i + MAX_FRAME]))
        if msg.close_stdin and stdin:
            writer.write(frame(b"c"))
        await writer.drain()
    if stdin:
        writer.write(frame(b"c"))
        await writer.drain()


async def stream(rt: Runtime, first: pb.AttachStreamRequest | None, requests: AsyncIterator[pb.AttachStreamRequest],
                 ops: Executor) -> AsyncIterator[pb.ExecStreamResponse]:
    """Responses for an attach session; raises before the first one when it cannot start."""
    start = check_start(first)
    loop = asyncio.get_running_loop()
    t = await loop.run_in_executor(ops, target, rt, start.container_id)
    stdin = start.stdin and t.stdin  # as the kubelet: no stdin to attach to is not an error
    try:
        reader, writer = await _connect(t.socket_path)
    except OSError:
        st = await loop.run_in_executor(ops, rt.containers.status, t.cid)
        if st.state == EXITED:
            yield pb.ExecStreamResponse(exit=pb.ExecExit(exit_code=st.exit_code or 0))
            return
        raise FailedPrecondition(f"container {t.cid}: its shim does not serve attach (a container created "
                                 "before attach existed, or its shim is gone); recreate it") from None
    log.info("attach cid=%s stdin=%s tty=%s", t.cid, stdin, t.tty)
    writer.write(frame(b"h", json.dumps({"stdin": stdin, "stdout": start.stdout or t.tty,
                                         "stderr": start.stderr and not t.tty}).encode()))
    if t.tty and first is not None and first.HasField("resize") and (f := _size_frame(first.resize)):
        writer.write(f)
    feeder = asyncio.create_task(_feed(requests, writer, stdin))
    try:
        while True:
            try:
                head = await reader.readexactly(FRAME.size)
                kind, n = FRAME.unpack(head)
                payload = await reader.readexactly(n)
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            if kind == b"o" and (start.stdout or t.tty):
                yield pb.ExecStreamResponse(stdout=payload)
            elif kind == b"e" and start.stderr:
                yield pb.ExecStreamResponse(stderr=payload)
            elif kind == b"x":
                yield pb.ExecStreamResponse(exit=pb.ExecExit(exit_code=struct.unpack(">i", payload)[0]))
                return
        # The shim ended our session, or went away: an exit code only if the container has exited.
        st = await loop.run_in_executor(ops, rt.containers.status, t.cid)
        if st.state == EXITED:
            yield pb.ExecStreamResponse(exit=pb.ExecExit(exit_code=st.exit_code or 0))
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await feeder
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
