"""The operations the fork server performs: shim, exec, janitor."""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

from ..cgroups import Cgroups
from ..linux import SyscallsLike
from . import exec as exec_
from . import janitor, shim
from .forkserver import ForkServer, ForkServerError, Handler, fork_child, pidfd

log = logging.getLogger(__name__)


@dataclass
class _Spare:
    pid: int
    sock: socket.socket  # our end of its request socket


class Spares:
    """One shim forked ahead of need (see shim.spare), refilled when the fork server is idle."""

    def __init__(self, sys: SyscallsLike, cgroups: Cgroups):
        self.sys, self.cgroups = sys, cgroups
        self.spare: _Spare | None = None

    def refill(self) -> None:
        if self.spare is not None:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            fd = theirs.fileno()
            pid = fork_child(lambda: shim.spare(self.sys, self.cgroups, fd), {fd})
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.spare = _Spare(pid, ours)

    def take(self, state_dir: str, fds: list[int]) -> tuple[int, int] | None:
        """Hand a container to the spare shim: (pid, pidfd), or None if there is none alive."""
        spare, self.spare = self.spare, None
        if spare is None:
            return None
        with spare.sock:
            try:
                fd = pidfd(spare.pid)
            except (OSError, ForkServerError):
                return None
            try:
                socket.send_fds(spare.sock, [json.dumps({"state_dir": state_dir}).encode()], fds)
            except OSError as e:  # it died (killed?): fork a shim the slow way
                log.warning("spare shim unusable pid=%d err=%s", spare.pid, e)
                os.close(fd)
                return None
        return spare.pid, fd


def handlers(sys: SyscallsLike, cgroups: Cgroups, spares: Spares | None = None) -> dict[str, Handler]:
    def start_shim(args: dict[str, Any], fds: list[int]) -> tuple[dict[str, Any], list[int]]:
        ready_w, exited_w = fds
        taken = spares.take(args["state_dir"], fds) if spares is not None else None
        if taken is not None:
            return {"pid": taken[0]}, [taken[1]]
        pid = fork_child(lambda: shim.main(sys, cgroups, args["state_dir"], ready_w, exited_w), set(fds))
        return {"pid": pid}, [pidfd(pid)]

    def start_exec(args: dict[str, Any], fds: list[int]) -> tuple[dict[str, Any], list[int]]:
        *stdio, status_fd = fds
        pid = fork_child(lambda: exec_.helper(sys, args, stdio, status_fd), set(fds))
        return {"pid": pid}, []

    def start_janitor(args: dict[str, Any], fds: list[int]) -> tuple[dict[str, Any], list[int]]:
        pid = fork_child(lambda: janitor.main(sys, fds[0]), set(fds))
        return {"pid": pid}, [pidfd(pid)]

    return {"shim": start_shim, "exec": start_exec, "janitor": start_janitor}


def start_fork_server(sys: SyscallsLike, cgroups: Cgroups, spare_shims: bool = True) -> ForkServer:
    """Start it before the process starts any thread. With `spare_shims`, a shim is
    always forked ahead of the next container (one idle process more)."""
    spares = Spares(sys, cgroups) if spare_shims else None
    return ForkServer(handlers(sys, cgroups, spares), on_start=lambda: sys.set_name("timonel-forksrv"),
                      on_idle=spares.refill if spares is not None else None).start()
