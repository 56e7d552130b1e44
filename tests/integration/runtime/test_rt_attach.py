"""Attach to a container's own stdio through the daemon: stdin pipes, stdin_once, a tty, and
attach served by the shim after a runtime restart."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from timonel.node_agent.runtime.api import runtime_pb2 as pb
from timonel.node_agent.runtime.cgroups import detect
from timonel.node_agent.runtime.client import ExecSession, RuntimeClient

from .rtsvc_daemon import (
    Daemon,
    container_config,
    load_busybox_module,
    log_text,
    needs_root,
    sandbox_config,
)

pytestmark = needs_root


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    files = load_busybox_module().write_busybox_image(tmp_path / "image")
    d = Daemon(tmp_path / "rt")
    (tmp_path / "rt").mkdir()
    try:
        d.start().import_image(str(files["docker_archive"]))
        yield d
    finally:
        if d.proc is None:
            d.start()
        d.cleanup(detect())


class Output:
    """Reads an attach session in a thread; the test polls for what it expects."""

    def __init__(self, session: ExecSession):
        self.session = session
        self.data = bytearray()
        self.error: grpc.RpcError | None = None
        self.done = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            for _, chunk in self.session:
                self.data += chunk
        except grpc.RpcError as e:
            self.error = e
        finally:
            self.done.set()

    def wait_for(self, needle: bytes, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.data:
            assert time.monotonic() < deadline, f"no {needle!r} after {timeout}s; got {bytes(self.data)!r}"
            assert not self.done.is_set() or needle in self.data, \
                f"session ended ({self.error}) without {needle!r}; got {bytes(self.data)!r}"
            time.sleep(0.05)

    def wait_end(self, timeout: float = 30.0) -> int | None:
        assert self.done.wait(timeout), f"session still open after {timeout}s; got {bytes(self.data)!r}"
        assert self.error is None, self.error
        return self.session.exit_code


def start(c: RuntimeClient, name: str, cmd: list[str], **kw: bool) -> str:
    cfg = sandbox_config(name)
    sid = c.run_sandbox(cfg)
    cid = c.create_container(sid, container_config(name, cmd, "busybox", **kw), cfg)
    c.start_container(cid)
    return cid


def wait_exited(c: RuntimeClient, cid: str, timeout: float = 30.0) -> pb.ContainerStatus:
    deadline = time.monotonic() + timeout
    while True:
        st = c.container_status(cid).status
        if st.state == pb.CONTAINER_EXITED:
            return st
        assert time.monotonic() < deadline, f"{cid} still {st.state} after {timeout}s"
        time.sleep(0.1)


def test_stdin_reaches_the_container_and_output_comes_back(daemon: Daemon) -> None:
    c = RuntimeClient(daemon.socket)
    cid = start(c, "echo", ["cat"], stdin=True)
    first = Output(c.attach(cid, stdin=True))
    first.session.send(b"hello\n")
    first.wait_for(b"hello\n")
    first.session.cancel()  # no stdin_once: leaving keeps the container's stdin open
    second = Output(c.attach(cid, stdin=True))
    second.session.send(b"again\n")
    second.wait_for(b"again\n")
    watcher = Output(c.attach(cid, stdout=True, stderr=True))  # no stdin: output only
    deadline = time.monotonic() + 30
    while b"third\n" not in watcher.data:  # again until the watcher is surely attached
        assert time.monotonic() < deadline, bytes(watcher.data)
        second.session.send(b"third\n")
        time.sleep(0.5)
    second.session.close_stdin()  # ends that session only (no stdin_once)
    assert second.wait_end() is None
    assert c.container_status(cid).status.state == pb.CONTAINER_RUNNING
    assert "hello\nagain\nthird\n" in log_text(c.container_status(cid).status.log_path)
    c.stop_container(cid, 0)
    assert watcher.wait_end() == 137


def test_stdin_once_closes_stdin_when_the_first_client_is_done(daemon: Daemon) -> None:
    c = RuntimeClient(daemon.socket)
    cid = start(c, "once", ["sh", "-c", "cat; echo cat-done >&2"], stdin=True, stdin_once=True)
    out = Output(c.attach(cid, stdin=True))
    out.session.send(b"only\n")
    out.wait_for(b"only\n")
    out.session.close_stdin()
    assert out.wait_end() == 0
    assert b"cat-done" in out.data
    assert wait_exited(c, cid).exit_code == 0


def test_attach_refuses_an_exited_container_and_bad_starts(daemon: Daemon) -> None:
    c = RuntimeClient(daemon.socket)
    cid = start(c, "gone", ["true"], stdin=True)
    wait_exited(c, cid)
    with pytest.raises(grpc.RpcError) as e:
        c.attach(cid, stdin=True).collect()
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "has exited" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        c.attach(cid, stdout=False, stderr=False).collect()
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_tty_container_answers_and_sees_resize(daemon: Daemon) -> None:
    c = RuntimeClient(daemon.socket)
    cid = start(c, "term", ["sh"], stdin=True, tty=True)
    out = Output(c.attach(cid, stdin=True, tty=True, stderr=False, size=(24, 80)))
    out.session.send(b"stty size; tty\n")
    out.wait_for(b"24 80\r\n/dev/pts/")
    out.session.resize(30, 100)
    out.session.send(b"stty size\n")
    out.wait_for(b"30 100\r\n")
    out.session.send(b"exit 3\n")
    assert out.wait_end() == 3
    log = log_text(c.container_status(cid).status.log_path)
    assert "30 100" in log  # the pty's output is the container's log, as stdout


def test_attach_after_a_runtime_restart(daemon: Daemon) -> None:
    c = RuntimeClient(daemon.socket)
    cid = start(c, "kept", ["cat"], stdin=True, stdin_once=True)
    c.close()
    daemon.stop()
    c = daemon.start()
    out = Output(c.attach(cid, stdin=True))
    out.session.send(b"after restart\n")
    out.wait_for(b"after restart\n")
    out.session.close_stdin()
    assert out.wait_end() == 0


def test_cli_attach_feeds_stdin_and_exits_with_the_container_code(daemon: Daemon) -> None:
    c = RuntimeClient(daemon.socket)
    cid = start(c, "cli", ["sh", "-c", "cat; exit 5"], stdin=True, stdin_once=True)
    r = subprocess.run([sys.executable, "-m", "timonel.cli.main", "runtime", "attach", "--socket", daemon.socket,
                        "-i", cid[:12]], input="cli words\n", capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout) == (5, "cli words\n"), r
