"""Exec hands the command only its stdio, and a background child that keeps
the output open cannot hang exec_sync."""

from __future__ import annotations

import time

from .conftest import Runtime, needs_root

pytestmark = needs_root


def test_exec_sees_only_stdio(rt: Runtime) -> None:
    rt.containers.create(rt.spec("fds", ["sleep", "1000"]))
    rt.containers.start("fds")
    r = rt.containers.exec_sync("fds", ["ls", "/proc/self/fd"], timeout=20)
    assert r.exit_code == 0
    # ls itself opens one descriptor for the directory it lists.
    assert sorted(int(x) for x in r.stdout.split()) in ([0, 1, 2], [0, 1, 2, 3])


def test_background_child_cannot_hang_exec_sync(rt: Runtime) -> None:
    rt.containers.create(rt.spec("bg", ["sleep", "1000"]))
    rt.containers.start("bg")
    t0 = time.monotonic()
    r = rt.containers.exec_sync("bg", ["sh", "-c", "sleep 300 & echo started"], timeout=3)
    assert time.monotonic() - t0 < 30
    assert b"started" in r.stdout
