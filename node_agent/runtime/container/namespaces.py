"""Namespaces held by bind-mounted files, not by a process.

A short-lived thread unshares the namespaces (net, IPC and UTS belong to a
thread, and unsharing them is allowed in a threaded process), names the pod's
hostname, brings `lo` up, bind-mounts its own /proc/thread-self/ns/<kind>
onto files in the state dir and exits: the mounts keep the namespaces alive
until unmounted. A thread instead of a child of the fork server: that child
cost a fork of a big process and held the fork server, which every container
start also waits for, ~15 ms per pod in a burst of pod starts.
"""

from __future__ import annotations

import errno
import os

from ..linux import SyscallsLike
from ..linux.constants import MNT_DETACH, MS_BIND, NAMESPACE_FLAGS
from ..network.nsrun import run_in_fresh_thread


def hold(sys: SyscallsLike, kinds: list[str], paths: dict[str, str], hostname: str | None,
         source: str = "/proc/self/ns") -> None:
    """Runs in a thread or process of its own: the caller's namespaces change for good."""
    flags = 0
    for kind in kinds:
        flags |= NAMESPACE_FLAGS[kind]
    sys.unshare(flags)
    if "net" in kinds:
        sys.loopback_up()
    if "uts" in kinds and hostname:
        sys.sethostname(hostname)
    for kind in kinds:
        sys.mount(f"{source}/{kind}", paths[kind], None, MS_BIND)


def create_in_thread(sys: SyscallsLike, kinds: list[str], paths: dict[str, str], hostname: str | None) -> None:
    """New namespaces of `kinds` held by the files `paths`, made by a fresh thread that then exits."""
    for kind in kinds:
        if not os.path.exists(paths[kind]):
            os.close(os.open(paths[kind], os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))
    try:
        run_in_fresh_thread(hold, sys, kinds, paths, hostname, source="/proc/thread-self/ns")
    except Exception as e:
        raise OSError(f"creating namespaces {kinds}: {e}") from e


def release(sys: SyscallsLike, path: str) -> None:
    """Unmount a namespace file and delete it; the namespace dies with its last user."""
    try:
        sys.umount2(path, MNT_DETACH)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):  # not mounted (any more)
            raise
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
