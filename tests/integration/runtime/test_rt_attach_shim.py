"""The shim's attach socket on the container manager alone (no daemon), for both ways a shim
comes to be: the spare forked ahead (its init forked before the container was known) and a
shim forked on demand."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import pytest

from timonel.node_agent.runtime.container.attach import SOCKET, frame, take_frames

from .conftest import Runtime, needs_root
from .test_rt_spare_shim import _gone, _wait_spare

pytestmark = needs_root


def _read_until(s: socket.socket, needle: bytes, timeout: float = 30.0) -> bytes:
    buf, seen = bytearray(), b""
    s.settimeout(0.2)
    deadline = time.monotonic() + timeout
    while needle not in seen:
        assert time.monotonic() < deadline, f"no {needle!r} after {timeout}s; got {seen!r}"
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        assert chunk, f"the shim hung up before {needle!r}; got {seen!r}"
        buf += chunk
        seen += b"".join(p for kind, p in take_frames(buf) if kind in (b"o", b"e"))
    return seen


@pytest.mark.parametrize("spare", [True, False], ids=["spare-shim", "on-demand-shim"])
@pytest.mark.parametrize("tty", [False, True], ids=["pipe", "tty"])
def test_stdin_and_output_through_the_shim(rt: Runtime, spare: bool, tty: bool) -> None:
    pid = _wait_spare(rt)
    if not spare:  # the next create forks its shim on demand
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
    cid = f"att-{int(spare)}{int(tty)}"
    rt.containers.create(rt.spec(cid, ["sh"] if tty else ["cat"], stdin=True, tty=tty))
    rt.containers.start(cid)
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(os.path.join(rt.containers.state_dir(cid), SOCKET))
        s.sendall(frame(b"h", json.dumps({"stdin": True, "stdout": True, "stderr": True}).encode()))
        if tty:
            s.sendall(frame(b"r", (20).to_bytes(2, "big") + (60).to_bytes(2, "big")))
            s.sendall(frame(b"i", b"stty size; tty\n"))
            assert b"/dev/pts/" in _read_until(s, b"20 60\r\n/dev/pts/")
        else:
            s.sendall(frame(b"i", b"through the shim\n"))
            _read_until(s, b"through the shim\n")
    assert rt.containers.status(cid).state == "running"
    rt.containers.remove(cid)


def test_tty_without_stdin_logs_the_terminal_output(rt: Runtime) -> None:
    code, out = rt.run("tty-only", ["sh", "-c", "tty; echo done"], tty=True)
    assert code == 0 and "/dev/pts/" in out and "done\r" in out, out
