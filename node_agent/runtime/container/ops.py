"""The operations the fork server performs: shim, exec, namespaces, janitor."""

from __future__ import annotations

from typing import Any

from ..cgroups import Cgroups
from ..linux import SyscallsLike
from . import exec as exec_
from . import janitor, namespaces, shim
from .forkserver import ForkServer, Handler, fork_child, pidfd


def handlers(sys: SyscallsLike, cgroups: Cgroups) -> dict[str, Handler]:
    def start_shim(args: dict[str, Any], fds: list[int]) -> tuple[dict[str, Any], list[int]]:
        ready_w, exited_w = fds
        pid = fork_child(lambda: shim.main(sys, cgroups, args["state_dir"], ready_w, exited_w), set(fds))
        return {"pid": pid}, [pidfd(pid)]

    def start_exec(args: dict[str, Any], fds: list[int]) -> tuple[dict[str, Any], list[int]]:
        *stdio, status_fd = fds
        pid = fork_child(lambda: exec_.helper(sys, args, stdio, status_fd), set(fds))
        return {"pid": pid}, []

    def start_janitor(args: dict[str, Any], fds: list[int]) -> tuple[dict[str, Any], list[int]]:
        pid = fork_child(lambda: janitor.main(sys, fds[0]), set(fds))
        return {"pid": pid}, [pidfd(pid)]

    return {"shim": start_shim, "exec": start_exec, "namespaces": namespaces.handler(sys),
            "janitor": start_janitor}


def start_fork_server(sys: SyscallsLike, cgroups: Cgroups) -> ForkServer:
    """Start it before the process starts any thread."""
    return ForkServer(handlers(sys, cgroups), on_start=lambda: sys.set_name("timonel-forksrv")).start()
