"""The streaming Exec: a process in a container, its stdio carried over one gRPC stream.

Output is read from non-blocking pipes (or the pty master) on the event loop
and sent as it comes, through a bounded queue so a slow client slows the
process down instead of filling the runtime's memory. Input is written from
a worker thread (a full pipe blocks). The exit code is the last message;
output still arriving after the exit is drained for a moment (a background
child may hold the pipe open forever). A client that goes away kills the
process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from typing import Any

from ..api import runtime_pb2 as pb
from ..container import ExecProcess
from .errors import InvalidArgument

log = logging.getLogger(__name__)

_CHUNK = 32 * 1024
_DRAIN_AFTER_EXIT = 2.0
_EOT = b"\x04"  # ^D: end of input on a terminal in canonical mode


def check_start(first: pb.ExecStreamRequest | None) -> tuple[pb.ExecRequest, tuple[int, int] | None]:
    if first is None or not first.HasField("start"):
        raise InvalidArgument("Exec: the first message must carry `start` (container_id, cmd, ...)")
    start = first.start
    if not start.cmd:
        raise InvalidArgument("Exec: cmd is empty; give the command to run")
    if start.tty and start.stderr:
        raise InvalidArgument("Exec: with tty, stderr must be false (a terminal has one output stream)")
    if not (start.stdin or start.stdout or start.stderr):
        raise InvalidArgument("Exec: set at least one of stdin, stdout and stderr")
    size = None
    if first.HasField("resize") and first.resize.width and first.resize.height:
        size = (first.resize.height, first.resize.width)
    return start, size


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(fd, ready)
    try:
        await fut
    finally:
        loop.remove_reader(fd)


async def _pump(fd: int, kind: str, keep: bool, queue: asyncio.Queue[pb.ExecStreamResponse | None]) -> None:
    """Copy `fd` to the queue until EOF, then put None (also after an unexpected error)."""
    os.set_blocking(fd, False)
    try:
        while True:
            await _readable(fd)
            try:
                data = os.read(fd, _CHUNK)
            except BlockingIOError:
                continue
            except OSError:  # EIO: the last holder of the pty's other end closed it
                data = b""
            if not data:
                break
            if keep:
                msg = pb.ExecStreamResponse(stdout=data) if kind == "stdout" else pb.ExecStreamResponse(stderr=data)
                await queue.put(msg)
    except Exception:
        log.exception("exec output=%s msg=reading failed", kind)
    await queue.put(None)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


async def _feed(proc: ExecProcess, requests: AsyncIterator[pb.ExecStreamRequest], tty: bool,
                run: Callable[..., Any]) -> None:
    """Client messages to the process: input, end of input, terminal size."""
    target = proc.master if tty else proc.stdin

    def close_input() -> None:
        nonlocal target
        if tty and proc.master is not None:
            with contextlib.suppress(OSError):
                _write_all(proc.master, _EOT)
        elif proc.stdin is not None:
            os.close(proc.stdin)
            proc.stdin = None
        target = None

    try:
        async for msg in requests:
            if msg.HasField("resize") and msg.resize.width and msg.resize.height:
                proc.resize(msg.resize.height, msg.resize.width)
            if msg.stdin and target is not None:
                try:
                    await run(_write_all, target, msg.stdin)
                except OSError:  # the process closed its input or exited
                    target = None
            if msg.close_stdin and target is not None:
                await run(close_input)
    finally:
        if not tty and proc.stdin is not None:  # the client half-closed: EOF for the process
            await run(close_input)


async def stream(proc: ExecProcess, start: pb.ExecRequest, requests: AsyncIterator[pb.ExecStreamRequest],
                 waits: Executor) -> AsyncIterator[pb.ExecStreamResponse]:
    """Responses for an exec'd process, ending with its exit code; owns and closes `proc`."""
    loop = asyncio.get_running_loop()

    def run(fn: Callable[..., Any], *args: Any) -> Any:
        # `waits`, not the few threads of pod work: a write to a process that does not read
        # its input blocks until it does.
        return loop.run_in_executor(waits, fn, *args)

    queue: asyncio.Queue[pb.ExecStreamResponse | None] = asyncio.Queue(maxsize=16)
    if start.tty:
        assert proc.master is not None
        outputs = [(proc.master, "stdout", start.stdout)]
    else:
        outputs = [(fd, kind, keep) for fd, kind, keep in ((proc.stdout, "stdout", start.stdout),
                                                          (proc.stderr, "stderr", start.stderr))
                   if fd is not None]
    pumps = [asyncio.create_task(_pump(fd, kind, keep, queue)) for fd, kind, keep in outputs]
    feeder = asyncio.create_task(_feed(proc, requests, start.tty, run))
    waiter = asyncio.ensure_future(loop.run_in_executor(waits, proc.wait))
    try:
        remaining = len(pumps)
        deadline: float | None = None
        while remaining:
            if waiter.done() and deadline is None:
                deadline = loop.time() + _DRAIN_AFTER_EXIT
            getter = asyncio.ensure_future(queue.get())
            waitables: set[asyncio.Future[Any]] = {getter} if waiter.done() else {getter, waiter}
            timeout = None if deadline is None else max(deadline - loop.time(), 0)
            done, _ = await asyncio.wait(waitables, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                if deadline is not None and loop.time() >= deadline:
                    break  # something in the background holds the output open
                continue
            item = getter.result()
            if item is None:
                remaining -= 1
            else:
                yield item
        code = await waiter
        yield pb.ExecStreamResponse(exit=pb.ExecExit(exit_code=code if code is not None else 255))
    finally:
        for task in (*pumps, feeder):
            task.cancel()
        await asyncio.gather(*pumps, feeder, return_exceptions=True)
        if not waiter.done():
            proc.kill()
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(waiter), 10)
        if waiter.done():
            proc.close()
        else:  # the helper never reported: closing its socket under the waiting thread is unsafe
            log.error("exec pid=%d msg=no exit reported after kill; leaking its descriptors", proc.pid)
