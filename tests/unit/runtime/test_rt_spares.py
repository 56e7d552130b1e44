"""Spare shims (spares.py): one at a time, forked only after creates pause for IDLE_DELAY,
closed with the runtime. A stand-in fork server records its calls; no root needed."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from timonel.node_agent.runtime.container import spares
from timonel.node_agent.runtime.container.forkserver import ForkServerError


class RecordingForkServer:
    def __init__(self, fail: bool = False):
        self.calls: list[float] = []
        self.peers: list[socket.socket] = []  # what the spare's processes would hold
        self.fail = fail
        self.called = threading.Event()

    def call(self, op: str, args: dict[str, Any], fds: list[int] | tuple[int, ...] = ()) -> tuple[dict[str, Any], list[int]]:
        assert op == "spare"
        self.calls.append(time.monotonic())
        self.called.set()
        if self.fail:
            raise ForkServerError("fork server pid=1 exited")
        shim_ours, shim_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        init_ours, init_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.peers += [shim_theirs, init_theirs]
        return {"pid": os.getpid()}, [os.pidfd_open(os.getpid()), shim_ours.detach(), init_ours.detach()]


def _wait(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline
        time.sleep(0.002)


def test_one_spare_ready_at_start_and_refilled_after_a_quiet_spell() -> None:
    server = RecordingForkServer()
    keeper = spares.Spares(server)  # type: ignore[arg-type]
    try:
        _wait(lambda: keeper._spare is not None)
        assert len(server.calls) == 1
        first = keeper.take()
        assert first is not None and keeper.take() is None  # one at a time
        took = time.monotonic()
        for _ in range(3):  # creates in quick succession postpone the refill
            time.sleep(spares.IDLE_DELAY / 2)
            assert keeper.take() is None
            took = time.monotonic()
        _wait(lambda: keeper._spare is not None)
        assert len(server.calls) == 2 and server.calls[1] >= took + spares.IDLE_DELAY
        first.close()
        time.sleep(3 * spares.IDLE_DELAY)
        assert len(server.calls) == 2  # a spare is there: no more forks
    finally:
        keeper.close()
    assert not keeper._thread.is_alive()  # gone before a next fork server forks this process
    # Closing drops the unused spare: its shim and init read EOF and end.
    assert all(peer.recv(16) == b"" for peer in server.peers[2:])


def test_a_fork_server_that_cannot_fork_is_retried_later_not_in_a_loop() -> None:
    server = RecordingForkServer(fail=True)
    keeper = spares.Spares(server)  # type: ignore[arg-type]
    try:
        assert server.called.wait(5)
        time.sleep(0.2)
        assert keeper.take() is None
        assert len(server.calls) == 1  # the next try waits RETRY_DELAY
    finally:
        started = time.monotonic()
        keeper.close()
    assert not keeper._thread.is_alive() and time.monotonic() - started < spares.RETRY_DELAY / 2


def _early_init_answer(shim_alive: bool) -> bytes:
    """What a waiting spare init does with a request (in a child process): the runtime sends
    the state dir and the ready pipe; an init that took it writes on the ready pipe (here an
    error: the state dir has no plan), one that refused leaves it silent."""
    from timonel.node_agent.runtime.container import shim
    from timonel.node_agent.runtime.linux import FakeSyscalls

    runtime_end, init_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    shim_end, hold = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        runtime_end.close()
        shim_end.close()
        os.close(ready_r)
        os.close(ready_w)
        try:
            shim._early_init(FakeSyscalls(), init_end.detach(), hold)
        finally:
            os._exit(3)
    init_end.close()
    hold.close()
    if not shim_alive:
        shim_end.close()
    socket.send_fds(runtime_end, [b"/nonexistent-state-dir"], [ready_w])
    os.close(ready_w)
    os.waitpid(pid, 0)
    runtime_end.close()
    shim_end.close()
    with os.fdopen(ready_r, "rb") as f:
        return f.read()


def test_a_spare_init_whose_shim_has_gone_does_not_take_the_container() -> None:
    # A shim killed before its init's PR_SET_PDEATHSIG leaves the init alive; the runtime
    # (which holds the init's request socket, not the shim) must find it unusable.
    assert _early_init_answer(shim_alive=True).startswith(b"error")
    assert _early_init_answer(shim_alive=False) == b""
