"""Deleting removed containers' state dirs off the hot path.

Deleting a state dir (the overlay's upper and work dirs, logs, JSON files)
file by file is the slowest part of RemoveContainer on a busy disk. The
manager renames the dir into `<root>/trash/` (the id is free again at once)
and hands the path to the janitor: a process forked by the fork server that
waits until the container's shim has ended (it may still write into its dir)
and then deletes the tree. A process rather than a thread, so the runtime
holds no transient descriptors for it; it ends when the runtime closes the
pipe, after finishing what it was given.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import threading
import time

from ..linux import SyscallsLike
from .forkserver import ForkServer
from .state import alive

log = logging.getLogger(__name__)

_SHIM_WAIT = 5.0


def main(sys: SyscallsLike, requests: int) -> None:
    """The janitor's life: one JSON line per dir to delete, on `requests`, until EOF."""
    sys.set_name("timonel-janitor")
    buf = b""
    while True:
        chunk = os.read(requests, 65536)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            item = json.loads(line)
            delete_now(item["path"], item.get("shim_pid"), item.get("shim_start"))
    os._exit(0)


def delete_now(path: str, shim_pid: int | None = None, shim_start: int | None = None) -> None:
    """Delete `path` once the shim (if any) has ended; polls /proc, so holds no descriptor."""
    deadline = time.monotonic() + _SHIM_WAIT
    while alive(shim_pid, shim_start) and time.monotonic() < deadline:
        time.sleep(0.002)
    shutil.rmtree(path, ignore_errors=True)


class Janitor:
    """The runtime's end: started on first use through the fork server."""

    def __init__(self, forkserver: ForkServer):
        self.forkserver = forkserver
        self._pipe = -1
        self._pidfd = -1
        self._lock = threading.Lock()

    def discard(self, path: str, shim_pid: int | None = None, shim_start: int | None = None) -> None:
        """Delete `path` soon, once the shim `shim_pid` started at `shim_start` (if any) has ended."""
        line = json.dumps({"path": path, "shim_pid": shim_pid, "shim_start": shim_start}).encode() + b"\n"
        with self._lock:
            for _ in range(2):
                try:
                    if self._pipe < 0:
                        self._start()
                    os.write(self._pipe, line)  # < PIPE_BUF: one atomic write
                    return
                except OSError as e:  # the janitor died (EPIPE) or cannot be started
                    log.warning("janitor unavailable err=%s; deleting in place path=%s", e, path)
                    self._stop(0)
        delete_now(path, shim_pid, shim_start)

    def _start(self) -> None:
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            _, fds = self.forkserver.call("janitor", {}, [r])
        except BaseException:
            os.close(w)
            raise
        finally:
            os.close(r)
        self._pipe, self._pidfd = w, fds[0]

    def _stop(self, timeout: float) -> None:
        if self._pipe >= 0:
            os.close(self._pipe)
            self._pipe = -1
        if self._pidfd >= 0:
            if timeout > 0:
                select.select([self._pidfd], [], [], timeout)
            os.close(self._pidfd)
            self._pidfd = -1

    def close(self, timeout: float = 30.0) -> None:
        """Let the janitor finish what it was given (up to `timeout`) and end."""
        with self._lock:
            self._stop(timeout)
