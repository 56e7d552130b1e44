"""The shim's attach server on real pipes and unix sockets (no container): frames, stdin
forwarding, stdin_once, output fan-out by stream, the exit code, and slow or bad clients."""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import time
from pathlib import Path

import pytest

from timonel.node_agent.runtime.container.attach import (
    FRAME,
    SOCKET,
    AttachServer,
    frame,
    take_frames,
)


class Shim:
    """The shim's poll loop around an AttachServer, driven step by step by the test."""

    def __init__(self, tmp: Path, stdin: bool = True, stdin_once: bool = False):
        self.poller = select.poll()
        self.in_r, in_w = os.pipe2(os.O_CLOEXEC) if stdin else (-1, -1)
        self.server = AttachServer(str(tmp), self.poller, in_w, stdin, stdin_once, tty=False)
        self.path = str(tmp / SOCKET)

    def step(self, times: int = 5) -> None:
        for _ in range(times):
            for fd, ev in self.poller.poll(20):
                if self.server.owns(fd):
                    self.server.handle(fd, ev)

    def client(self, **flags: bool) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)  # a recv the test expects to end never hangs the suite
        s.connect(self.path)
        s.sendall(frame(b"h", json.dumps(flags).encode()))
        self.step()
        return s

    def stdin(self, n: int = 4096) -> bytes:
        os.set_blocking(self.in_r, False)
        try:
            return os.read(self.in_r, n)
        except BlockingIOError:
            return b"<nothing>"


def frames(s: socket.socket, want: int, timeout: float = 5.0) -> list[tuple[bytes, bytes]]:
    buf, out = bytearray(), list[tuple[bytes, bytes]]()
    s.settimeout(0.05)
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            break
        buf += chunk
        out += take_frames(buf)
    return out


def test_take_frames_keeps_partial_and_refuses_huge() -> None:
    buf = bytearray(frame(b"o", b"abc") + frame(b"e", b"") + frame(b"o", b"xyz")[:6])
    assert take_frames(buf) == [(b"o", b"abc"), (b"e", b"")]
    assert len(buf) == 6
    with pytest.raises(ValueError, match="limit"):
        take_frames(bytearray(FRAME.pack(b"i", 1 << 30)))


def test_input_reaches_stdin_and_output_goes_by_stream(tmp_path: Path) -> None:
    shim = Shim(tmp_path)
    both = shim.client(stdin=True, stdout=True, stderr=True)
    only_out = shim.client(stdout=True)
    both.sendall(frame(b"i", b"typed\n"))
    shim.step()
    assert shim.stdin() == b"typed\n"
    only_out.sendall(frame(b"i", b"ignored"))  # no stdin asked for: input is dropped
    shim.step()
    assert shim.stdin() == b"<nothing>"
    shim.server.output("stdout", b"out")
    shim.server.output("stderr", b"err")
    assert frames(both, 2) == [(b"o", b"out"), (b"e", b"err")]
    assert frames(only_out, 1) == [(b"o", b"out")]
    shim.server.finish(3)
    assert frames(both, 1) == [(b"x", struct.pack(">i", 3))]
    assert both.recv(10) == b""  # then the shim hangs up
    assert not os.path.exists(shim.path)


def test_end_of_input_without_stdin_once_ends_only_that_session(tmp_path: Path) -> None:
    shim = Shim(tmp_path)
    a = shim.client(stdin=True, stdout=True)
    a.sendall(frame(b"c"))
    shim.step()
    assert a.recv(10) == b""
    b = shim.client(stdin=True, stdout=True)  # stdin is still open for the next client
    b.sendall(frame(b"i", b"more"))
    shim.step()
    assert shim.stdin() == b"more"
    b.close()  # leaving is the end of its input: still no EOF for the container
    shim.step()
    assert shim.stdin() == b"<nothing>"


def test_stdin_once_closes_stdin_after_the_first_client(tmp_path: Path) -> None:
    shim = Shim(tmp_path, stdin_once=True)
    a = shim.client(stdin=True, stdout=True)
    a.sendall(frame(b"i", b"last") + frame(b"c"))
    shim.step()
    assert shim.stdin() == b"last"
    assert shim.stdin() == b""  # EOF: the shim closed its end
    shim.server.output("stdout", b"still here")  # the session goes on until the container exits
    assert frames(a, 1) == [(b"o", b"still here")]


def test_a_client_that_does_not_read_is_dropped(tmp_path: Path) -> None:
    shim = Shim(tmp_path, stdin=False)
    lazy = shim.client(stdout=True)
    lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for _ in range(200):
        shim.server.output("stdout", b"x" * 65536)
    assert not shim.server.clients
    bad = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bad.settimeout(10)
    bad.connect(shim.path)
    bad.sendall(frame(b"i", b"no header first"))
    shim.step()
    assert bad.recv(10) == b"" and not shim.server.clients
