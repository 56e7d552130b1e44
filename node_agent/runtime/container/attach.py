"""Attach, the shim's side: the container's own stdio for clients of a unix socket.

The shim owns the container's stdin (a pipe, or the pty master) and reads
its output; it serves `attach.sock` in the state dir, so attach works with
no help from the runtime process (also after a runtime restart). A client
gets the output from the moment it connects, and may write the stdin.

Frames both ways: 1 type byte, 4-byte big-endian length, payload.
- client: `h` JSON {"stdin", "stdout", "stderr"} first; `i` input; `c` end of
  this client's input; `r` terminal size (rows, cols as two uint16).
- shim: `o` stdout, `e` stderr, `x` the exit code (int32), last.

A client's input ending (`c` or leaving) closes the container's stdin when the
container is stdin_once without a tty; otherwise it ends that client's
session (containerd's CRI does the same). Everything is non-blocking: a client
that does not read is dropped rather than stalling the container's log.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import select
import socket
import struct
import time
from dataclasses import dataclass, field

from .console import set_winsize

log = logging.getLogger(__name__)

SOCKET = "attach.sock"
FRAME = struct.Struct(">cI")
SIZE = struct.Struct(">HH")
MAX_FRAME = 1 << 20
_MAX_BUFFER = 4 << 20  # queued output per client, queued input in all
_FINISH_SECONDS = 2.0


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return FRAME.pack(kind, len(payload)) + payload


def take_frames(buf: bytearray) -> list[tuple[bytes, bytes]]:
    """The complete frames at the start of `buf`, removed from it."""
    out = []
    while len(buf) >= FRAME.size:
        kind, n = FRAME.unpack_from(buf)
        if n > MAX_FRAME:
            raise ValueError(f"attach frame of {n} bytes is over the {MAX_FRAME} limit")
        if len(buf) < FRAME.size + n:
            break
        out.append((kind, bytes(buf[FRAME.size:FRAME.size + n])))
        del buf[:FRAME.size + n]
    return out


@dataclass
class _Client:
    sock: socket.socket
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    flags: dict[str, bool] | None = None  # from the header; None until it came
    input_done: bool = False


class AttachServer:
    """Lives in the shim's poll loop: `owns(fd)` / `handle(fd, events)` for its descriptors."""

    def __init__(self, state_dir: str, poller: select.poll, stdin_fd: int, stdin: bool, stdin_once: bool,
                 tty: bool):
        self.path = os.path.join(state_dir, SOCKET)
        self.poller = poller
        self.tty, self.stdin_once = tty, stdin_once
        self.input = stdin_fd  # -1: no stdin, or (tty) until the pty master arrives
        self.master = -1
        self.wants_stdin = stdin
        self.pending = bytearray()  # input not yet taken by the container
        self.closing_input = False
        self.clients: dict[int, _Client] = {}
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        # A long state dir would overflow sun_path (108 bytes): bind relative to it.
        here = os.open(".", os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.chdir(state_dir)
            self.listener.bind(SOCKET)
        finally:
            os.fchdir(here)
            os.close(here)
        self.listener.listen(16)
        self.listener.setblocking(False)
        poller.register(self.listener.fileno(), select.POLLIN)
        if self.input >= 0:
            os.set_blocking(self.input, False)

    def set_master(self, master: int) -> None:
        """A tty container's pty master arrived: resize goes to it, and input if stdin is on."""
        self.master = master
        if self.wants_stdin:
            self.input = os.dup(master)  # its own number: polled for writing apart from the reads
            os.set_blocking(self.input, False)
            self._write_input()

    def owns(self, fd: int) -> bool:
        return fd == self.listener.fileno() or fd in self.clients or (fd == self.input and fd >= 0)

    def handle(self, fd: int, events: int) -> None:
        # Never let a client's misbehaviour end the shim (and with it the container's log and exit).
        try:
            self._handle(fd, events)
        except Exception:
            log.exception("attach: handling fd=%d failed", fd)

    def _handle(self, fd: int, events: int) -> None:
        if fd == self.listener.fileno():
            self._accept()
        elif fd == self.input:
            self._write_input()
        elif fd in self.clients:
            c = self.clients[fd]
            if events & select.POLLOUT:
                self._flush(c)
            if events & (select.POLLIN | select.POLLHUP | select.POLLERR) and fd in self.clients:
                self._read(c)

    def output(self, stream: str, data: bytes) -> None:
        try:
            self._output(stream, data)
        except Exception:
            log.exception("attach: sending output failed")

    def _output(self, stream: str, data: bytes) -> None:
        kind = b"o" if stream == "stdout" else b"e"
        for c in list(self.clients.values()):
            if c.flags is None or not c.flags.get(stream):
                continue
            for i in range(0, len(data), MAX_FRAME):
                c.outbuf += frame(kind, data[i:i + MAX_FRAME])
            if len(c.outbuf) > _MAX_BUFFER:
                log.warning("attach client is not reading; dropping it state=%s", self.path)
                self._drop(c)
            else:
                self._flush(c)

    def finish(self, code: int) -> None:
        """The container has exited: its code to every client, a moment to send, then close."""
        try:
            self._finish(code)
        except Exception:
            log.exception("attach: finishing failed")

    def _finish(self, code: int) -> None:
        for c in self.clients.values():
            c.outbuf += frame(b"x", struct.pack(">i", code))
        deadline = time.monotonic() + _FINISH_SECONDS
        for c in list(self.clients.values()):
            with contextlib.suppress(OSError):
                while c.outbuf and time.monotonic() < deadline:
                    c.sock.settimeout(max(deadline - time.monotonic(), 0.01))
                    del c.outbuf[:c.sock.send(c.outbuf)]
            self._drop(c)
        self.poller.unregister(self.listener.fileno())
        self.listener.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        self._close_input()

    # -- clients --
    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        sock.setblocking(False)
        self.clients[sock.fileno()] = _Client(sock)
        self.poller.register(sock.fileno(), select.POLLIN)

    def _mask(self, c: _Client) -> int:
        # Input waiting for the container: stop reading more of it (backpressure on the client).
        reading = len(self.pending) < _MAX_BUFFER
        return (select.POLLIN if reading else 0) | (select.POLLOUT if c.outbuf else 0)

    def _update(self, c: _Client) -> None:
        if c.sock.fileno() in self.clients:
            self.poller.modify(c.sock.fileno(), self._mask(c))

    def _flush(self, c: _Client) -> None:
        try:
            while c.outbuf:
                del c.outbuf[:c.sock.send(c.outbuf)]
        except BlockingIOError:
            pass
        except OSError:
            self._drop(c)
            return
        self._update(c)

    def _read(self, c: _Client) -> None:
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._input_ended(c)
            self._drop(c)
            return
        c.inbuf += data
        try:
            frames = take_frames(c.inbuf)
        except ValueError as e:
            log.warning("attach client sent a bad frame error=%s", e)
            self._drop(c)
            return
        for kind, payload in frames:
            if c.sock.fileno() not in self.clients:
                return
            self._frame(c, kind, payload)

    def _frame(self, c: _Client, kind: bytes, payload: bytes) -> None:
        if c.flags is None:
            if kind != b"h":
                self._drop(c)
                return
            flags = json.loads(payload or b"{}")
            c.flags = {k: bool(flags.get(k)) for k in ("stdin", "stdout", "stderr")}
            c.flags["stdin"] = c.flags["stdin"] and self.wants_stdin
            return
        if kind == b"i" and c.flags["stdin"] and not c.input_done:
            self._queue_input(payload)
        elif kind == b"c":
            if self._input_ended(c):
                self._drop(c)
        elif kind == b"r" and self.master >= 0 and len(payload) == SIZE.size:
            rows, cols = SIZE.unpack(payload)
            if rows and cols:
                with contextlib.suppress(OSError):
                    set_winsize(self.master, rows, cols)

    def _input_ended(self, c: _Client) -> bool:
        """This client's input is over; True when its session ends with it."""
        if c.flags is None or not c.flags["stdin"] or c.input_done:
            return False
        c.input_done = True
        if self.stdin_once and not self.tty:
            self.closing_input = True
            if not self.pending:
                self._close_input()
            return False  # the output goes on until the container exits
        return True

    def _drop(self, c: _Client) -> None:
        fd = c.sock.fileno()
        if self.clients.pop(fd, None) is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.poller.unregister(fd)
        c.sock.close()

    # -- the container's input --
    def _queue_input(self, data: bytes) -> None:
        if not self.wants_stdin or self.closing_input:
            return
        self.pending += data
        self._write_input()

    def _write_input(self) -> None:
        if self.input < 0:
            return
        try:
            while self.pending:
                del self.pending[:os.write(self.input, self.pending)]
        except BlockingIOError:
            pass
        except OSError as e:  # the container closed its stdin, or exited
            if e.errno not in (errno.EPIPE, errno.EIO):
                log.warning("writing the container's stdin failed error=%s", e)
            self.pending.clear()
            self._close_input()
            return
        if not self.pending and self.closing_input:
            self._close_input()
            return
        self._want_write()
        for c in self.clients.values():
            self._update(c)

    def _want_write(self) -> None:
        # Registered only while input waits: an idle pipe whose reader is gone would poll as ready.
        if self.pending:
            self.poller.register(self.input, select.POLLOUT)
        else:
            with contextlib.suppress(KeyError):
                self.poller.unregister(self.input)

    def _close_input(self) -> None:
        if self.input < 0:
            return
        with contextlib.suppress(KeyError):
            self.poller.unregister(self.input)
        os.close(self.input)
        self.input = -1
        self.wants_stdin = False
        self.closing_input = False
