"""A warm process that forks shims (spare ones too), exec helpers and the janitor.

Started by the runtime before it starts any thread: the server itself is
single-threaded, so its children may run Python freely between fork and
exec, and each fork costs ~1 ms instead of a new interpreter's ~40 ms.
Requests are JSON over a SOCK_SEQPACKET socketpair, with file descriptors
passed alongside (SCM_RIGHTS). The server reaps its children; when the
runtime goes away (EOF), it exits and the shims live on, adopted by init.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import select
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], list[int]], tuple[dict[str, Any], list[int]]]
_MAX_MSG = 1 << 20


class ForkServerError(RuntimeError):
    pass


def close_fds(keep: set[int]) -> None:
    """Close every fd but `keep` and stdio: a child must not hold the runtime's sockets."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _serve(sock: socket.socket, handlers: dict[str, Handler]) -> None:
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is for the runtime
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # As in any Python process, whatever the one that started us had (a test that ran an
    # init's reset_signals in-process, say): a shim writing to an attach client that hung up
    # must get EPIPE, not die of SIGPIPE.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == wake_r:
                try:
                    while os.read(wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                _reap()
                continue
            msg, fds, _, _ = socket.recv_fds(sock, _MAX_MSG, 16)
            if not msg:
                return  # the runtime has gone
            reply, reply_fds = _dispatch(handlers, msg, fds)
            try:
                socket.send_fds(sock, [json.dumps(reply).encode()], reply_fds)
            finally:
                for fd in reply_fds:
                    os.close(fd)


def _dispatch(handlers: dict[str, Handler], msg: bytes, fds: list[int]) -> tuple[dict[str, Any], list[int]]:
    try:
        req = json.loads(msg)
        handler = handlers.get(req.get("op", ""))
        if handler is None:
            return {"error": f"unknown fork server op {req.get('op')!r}"}, []
        return handler(req.get("args", {}), fds)
    except Exception as e:
        log.exception("fork server request failed")
        return {"error": f"{type(e).__name__}: {e}"}, []
    finally:
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass


class ForkServer:
    def __init__(self, handlers: dict[str, Handler], on_start: Callable[[], None] | None = None):
        self.handlers = handlers
        self.on_start = on_start  # runs first in the server process (e.g. to name it)
        self.pid = 0
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def start(self) -> ForkServer:
        if threading.active_count() > 1:
            log.warning("fork server started with threads=%d running; start it first", threading.active_count())
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                parent.close()
                close_fds({child.fileno()})
                if self.on_start:
                    self.on_start()
                _serve(child, self.handlers)
            except BaseException:
                log.exception("fork server crashed")
                code = 1
            os._exit(code)
        child.close()
        self.pid, self._sock = pid, parent
        log.debug("fork server started pid=%d", pid)
        return self

    def call(self, op: str, args: dict[str, Any], fds: list[int] | tuple[int, ...] = ()) -> tuple[dict[str, Any], list[int]]:
        """One request; returns the reply and the fds sent back (the caller owns them)."""
        if self._sock is None:
            raise ForkServerError("fork server is not running; call start() first")
        with self._lock:
            try:
                socket.send_fds(self._sock, [json.dumps({"op": op, "args": args}).encode()], list(fds))
                msg, rfds, _, _ = socket.recv_fds(self._sock, _MAX_MSG, 16)
            except OSError as e:
                raise ForkServerError(f"fork server pid={self.pid} unreachable: {e}") from None
        if not msg:
            raise ForkServerError(f"fork server pid={self.pid} exited")
        reply = json.loads(msg)
        if "error" in reply:
            for fd in rfds:
                os.close(fd)
            raise ForkServerError(reply["error"])
        return reply, rfds

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.pid:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = 0


def fork_child(run: Callable[[], None], keep: set[int], fork: Callable[[], int]) -> int:
    """Fork from inside the server with `fork` (Syscalls.fork_bare: the server is
    single-threaded); the child runs `run` (which must not return) with only `keep` open."""
    pid = fork()
    if pid == 0:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            close_fds(keep)
            run()
        except BaseException as e:
            try:
                os.write(2, f"timonel: child failed: {type(e).__name__}: {e}\n".encode())
            except OSError:
                pass
        os._exit(code)
    return pid


def pidfd(pid: int) -> int:
    try:
        return os.pidfd_open(pid)
    except OSError as e:
        if e.errno == errno.ESRCH:
            raise ForkServerError(f"child pid={pid} exited at once") from None
        raise
