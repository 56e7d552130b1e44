"""The fork server's idle work (spare shims are forked there): at start, then IDLE_DELAY after
the last reply, never between a request and its reply. A real fork server; no root needed."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from timonel.node_agent.runtime.container import forkserver as fs


def _note(path: Path, what: str) -> None:
    # The server closes inherited descriptors: it opens the file each time.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{what}\n".encode())
    finally:
        os.close(fd)


def _settled(path: Path, quiet: float = 0.5, timeout: float = 20.0) -> list[str]:
    """The file's lines once it has not changed for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = path.read_text().split() if path.exists() else []
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
        time.sleep(0.02)
    raise AssertionError(f"{path} kept changing: {last}")


def test_idle_work_runs_at_start_and_after_replies_only(tmp_path: Path) -> None:
    log = tmp_path / "events"

    def echo(args: dict[str, Any], fds: list[int]) -> tuple[dict[str, Any], list[int]]:
        _note(log, f"request-{args['n']}")
        return {"n": args["n"]}, []

    server = fs.ForkServer({"echo": echo}, on_idle=lambda: _note(log, "idle")).start()
    try:
        assert _settled(log) == ["idle"]
        for n in range(3):
            assert server.call("echo", {"n": n})[0] == {"n": n}
        got = _settled(log)
        # Back to back the idle work usually waits for the quiet spell after the last call; a
        # loaded machine may leave a gap between calls long enough for it to run in between.
        assert [x for x in got if x != "idle"] == ["request-0", "request-1", "request-2"]
        assert got[0] == "idle" and got[-1] == "idle"
        log.unlink()
        server.call("echo", {"n": 9})
        assert _settled(log) == ["request-9", "idle"]
    finally:
        server.close()


def test_failing_idle_work_does_not_stop_the_server() -> None:
    def boom() -> None:
        raise RuntimeError("idle failed")

    server = fs.ForkServer({"ping": lambda args, fds: ({"pong": True}, [])}, on_idle=boom).start()
    try:
        for _ in range(3):
            assert server.call("ping", {})[0] == {"pong": True}
            time.sleep(fs.IDLE_DELAY * 2)
    finally:
        server.close()
