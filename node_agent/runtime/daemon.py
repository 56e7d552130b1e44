"""The runtime daemon (`timonel runtime`): fork server first, then threads and gRPC.

Forking a process that runs threads is unsafe (a child may inherit a lock
some other thread held), and grpc starts threads as soon as it serves. So
the order is: take the root's lock, start the fork server while this process
is still single-threaded, and only then import and start the gRPC service.
Stopping the daemon (SIGINT, SIGTERM) stops serving; the containers and their
shims keep running, and the next daemon over the same root adopts them.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from .cgroups import detect
from .container import start_fork_server
from .linux import Syscalls
from .server.options import (
    DEFAULT_CGROUP_PARENT,
    DEFAULT_POD_CIDR,
    DEFAULT_ROOT,
    DEFAULT_SOCKET,
    RuntimeOptions,
)

if TYPE_CHECKING:
    from .server.runtime import Runtime

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_CGROUP_PARENT", "DEFAULT_POD_CIDR", "DEFAULT_ROOT", "DEFAULT_SOCKET", "DaemonError",
           "RuntimeOptions", "run"]


class DaemonError(RuntimeError):
    """The daemon cannot start; the message says why and what to do."""


def _lock_root(root: str) -> int:
    os.makedirs(root, mode=0o711, exist_ok=True)
    fd = os.open(os.path.join(root, "runtime.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DaemonError(f"another runtime is using {root}; stop it first or give another --root") from None
    return fd


def run(opts: RuntimeOptions, on_ready: Callable[[Runtime], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM. Call it from a process that has no threads yet."""
    if threading.active_count() > 1:
        raise DaemonError(f"{threading.active_count()} threads are running: the fork server must start "
                          "before any thread (start the runtime from a fresh process)")
    lock_fd = _lock_root(opts.root)
    sysc = Syscalls()
    cgroups = detect()
    forkserver = start_fork_server(sysc, cgroups)
    try:
        # Imported only now: whatever is loaded before the fork server starts is resident in it
        # and in every process it forks (spare shims and their inits); asyncio and ssl are ~3 MB.
        import asyncio

        from .network import NetworkError  # threads may start from here on
        from .server.serve import ServeError, serve

        try:
            asyncio.run(serve(opts, sysc, cgroups, forkserver, on_ready))
        except (NetworkError, ServeError) as e:
            raise DaemonError(str(e)) from None
    finally:
        forkserver.close()
        os.close(lock_fd)
