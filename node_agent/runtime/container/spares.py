"""Shims forked ahead of need, which the runtime hands containers itself.

Forking a Python process and its first steps in the child (copy-on-write
faults) take 1-3 ms per process: the fork server forks a shim and its init
(in a new PID namespace, /proc and /dev built: shim.spare) before a
container is asked for. The runtime keeps their request sockets, so a create
reaches the waiting init in one hop rather than through the fork server and
the shim (~1 ms on a 2-CPU machine, each hop a wake-up). One spare at a time,
refilled by a thread once creates have paused for IDLE_DELAY: not while the
containers just handed out start up on a busy machine.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

from .forkserver import ForkServer, ForkServerError

log = logging.getLogger(__name__)

IDLE_DELAY = 0.01  # seconds without a create before a spare is forked (measured: 5-15 ms beat 0)
RETRY_DELAY = 1.0


@dataclass
class Spare:
    pid: int
    pidfd: int  # the shim's
    shim: socket.socket  # {"state_dir": ...} + [exited_w, stdin_w?] go to the shim here
    init: socket.socket  # the state dir + [ready_w, stdin_r?] go to its init here

    def hand_over(self, state_dir: str, ready_w: int, exited_w: int, with_stdin: bool) -> bool:
        """Give the container to the init (first: it is what create waits for) and the shim,
        with a stdin pipe between them if it has one; False when the spare is unusable (it
        died: the caller forks a shim on demand). Our sockets are closed either way."""
        stdin = os.pipe2(os.O_CLOEXEC) if with_stdin else None
        try:
            socket.send_fds(self.init, [state_dir.encode()], [ready_w, *stdin[:1]] if stdin else [ready_w])
            socket.send_fds(self.shim, [json.dumps({"state_dir": state_dir}).encode()],
                            [exited_w, *stdin[1:]] if stdin else [exited_w])
            self.shim.close()
            self.init.close()
            return True
        except OSError as e:  # killed, say
            log.warning("spare shim unusable pid=%d err=%s", self.pid, e)
            self.close()
            return False
        finally:
            for fd in stdin or ():
                os.close(fd)

    def close(self) -> None:
        """Unused: closing its sockets ends the shim (EOF), and its init with it."""
        self.shim.close()
        self.init.close()
        with contextlib.suppress(OSError):
            os.close(self.pidfd)


class Spares:
    def __init__(self, forkserver: ForkServer):
        self._forkserver = forkserver
        self._spare: Spare | None = None
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._wanted.set()  # one for the first container
        self._last_take = -1.0
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="timonel-spares", daemon=True)
        self._thread.start()

    def take(self) -> Spare | None:
        """The spare, if one is ready; a new one is forked after the next quiet spell."""
        with self._lock:
            spare, self._spare = self._spare, None
            self._last_take = time.monotonic()
        self._wanted.set()
        return spare

    def close(self, timeout: float = 10.0) -> None:
        """Drop the spare and end the thread; call it before closing the fork server. The
        thread must be gone before the next fork server starts in this process: forking
        while it holds a lock (logging's, say) would leave that lock held in the child."""
        with self._lock:
            self._closed.set()
            spare, self._spare = self._spare, None
        self._wanted.set()
        if spare is not None:
            spare.close()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            self._wanted.wait()
            while (left := self._last_take + IDLE_DELAY - time.monotonic()) > 0:
                if self._closed.wait(left):
                    return
            self._wanted.clear()
            with self._lock:
                if self._closed.is_set():
                    return
                if self._spare is not None:
                    continue
            spare = self._fork()
            if spare is None:
                # e.g. the fork server is gone: creates fork on demand (and fail clearly)
                if self._closed.wait(RETRY_DELAY):
                    return
                continue
            with self._lock:
                if not self._closed.is_set():
                    self._spare, spare = spare, None
            if spare is not None:
                spare.close()
                return

    def _fork(self) -> Spare | None:
        try:
            reply, fds = self._forkserver.call("spare", {})
        except ForkServerError as e:
            if not self._closed.is_set():
                log.warning("cannot fork a spare shim err=%s; containers start a little slower", e)
            return None
        pidfd, shim_fd, init_fd = fds
        return Spare(reply["pid"], pidfd, socket.socket(fileno=shim_fd), socket.socket(fileno=init_fd))
