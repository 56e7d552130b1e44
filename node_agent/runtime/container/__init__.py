"""Containers: the spec, the launcher (fork server, shim, init) and their manager.

Typical use by the runtime service (start the fork server before any thread):

    sys = Syscalls(); cgroups = detect()
    forkserver = start_fork_server(sys, cgroups)
    containers = ContainerManager(root, cgroups, forkserver, sys)
"""

from .exec import ExecProcess, ExecResult
from .manager import ContainerError, ContainerManager, ContainerStats, NotFoundError
from .ops import start_fork_server
from .spec import ContainerSpec, Mount, Rlimit, Seccomp, SpecError, User
from .state import ContainerStatus

__all__ = [
    "ContainerError", "ContainerManager", "ContainerSpec", "ContainerStats", "ContainerStatus",
    "ExecProcess", "ExecResult", "Mount", "NotFoundError", "Rlimit", "Seccomp", "SpecError", "User",
    "start_fork_server",
]
