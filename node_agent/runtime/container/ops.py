"""The operations the fork server performs: shim, exec, janitor."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from ..cgroups import Cgroups
from ..linux import SyscallsLike
from . import exec as exec_
from . import janitor, rootfs, shim
from .forkserver import ForkServer, Handler, fork_child, pidfd

log = logging.getLogger(__name__)


def handlers(sys: SyscallsLike, cgroups: Cgroups) -> dict[str, Handler]:
    staging_fd: int | None = None

    def staging() -> int:
        """The server's staging namespace (rootfs.staging_namespace), made at its first spare
        (in the server: it must be single-threaded), or -1: spares then stage in a copy of
        the host's mounts, slower but the same."""
        nonlocal staging_fd
        if staging_fd is None:
            try:
                staging_fd = rootfs.staging_namespace(sys)
            except OSError as e:
                log.warning("no staging mount namespace err=%s; containers start a little slower", e)
                staging_fd = -1
        return staging_fd

    def fork(run: Callable[[], None], keep: set[int]) -> int:
        return fork_child(run, keep, sys.fork_bare)  # the server is single-threaded

    def start_shim(args: dict[str, Any], fds: list[int]) -> tuple[dict[str, Any], list[int]]:
        ready_w, exited_w = fds
        pid = fork(lambda: shim.main(sys, cgroups, args["state_dir"], ready_w, exited_w), set(fds))
        return {"pid": pid}, [pidfd(pid)]

    def start_spare(args: dict[str, Any], fds: list[int]) -> tuple[dict[str, Any], list[int]]:
        """A shim and its init forked ahead of a container (shim.spare): the caller gets the
        shim's pidfd and the two request sockets (see spares.py)."""
        shim_ours, shim_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        init_ours, init_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            shim_fd, init_fd, staging_fd = shim_theirs.fileno(), init_theirs.fileno(), staging()
            keep = {shim_fd, init_fd} | ({staging_fd} if staging_fd >= 0 else set())
            pid = fork(lambda: shim.spare(sys, cgroups, shim_fd, init_fd, staging_fd), keep)
            return {"pid": pid}, [pidfd(pid), shim_ours.detach(), init_ours.detach()]
        finally:
            for sock in (shim_theirs, init_theirs, shim_ours, init_ours):
                sock.close()  # a no-op for the detached ones, whose fds the reply owns

    def start_exec(args: dict[str, Any], fds: list[int]) -> tuple[dict[str, Any], list[int]]:
        *stdio, status_fd = fds
        pid = fork(lambda: exec_.helper(sys, args, stdio, status_fd), set(fds))
        return {"pid": pid}, []

    def start_janitor(args: dict[str, Any], fds: list[int]) -> tuple[dict[str, Any], list[int]]:
        pid = fork(lambda: janitor.main(sys, fds[0]), set(fds))
        return {"pid": pid}, [pidfd(pid)]

    return {"shim": start_shim, "spare": start_spare, "exec": start_exec, "janitor": start_janitor}


def start_fork_server(sys: SyscallsLike, cgroups: Cgroups) -> ForkServer:
    """Start it before the process starts any thread."""
    return ForkServer(handlers(sys, cgroups), on_start=lambda: sys.set_name("timonel-forksrv")).start()
