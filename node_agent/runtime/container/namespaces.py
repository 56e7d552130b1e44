"""Namespaces held by bind-mounted files, not by a process.

A child of the fork server unshares the namespaces, names the pod's hostname,
brings `lo` up, bind-mounts its own /proc/self/ns/<kind> onto files in the
state dir and exits: the mounts keep the namespaces alive until unmounted.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from ..linux import SyscallsLike
from ..linux.constants import MNT_DETACH, MS_BIND, NAMESPACE_FLAGS
from .forkserver import ForkServerError, fork_child


def hold(sys: SyscallsLike, kinds: list[str], paths: dict[str, str], hostname: str | None) -> None:
    """Runs in the forked child."""
    flags = 0
    for kind in kinds:
        flags |= NAMESPACE_FLAGS[kind]
    sys.unshare(flags)
    if "net" in kinds:
        sys.loopback_up()
    if "uts" in kinds and hostname:
        sys.sethostname(hostname)
    for kind in kinds:
        sys.mount(f"/proc/self/ns/{kind}", paths[kind], None, MS_BIND)


def handler(sys: SyscallsLike) -> Any:
    """The fork server op `namespaces`: args {kinds, paths, hostname}."""

    def create(args: dict[str, Any], fds: list[int]) -> tuple[dict[str, Any], list[int]]:
        for kind in args["kinds"]:
            path = args["paths"][kind]
            if not os.path.exists(path):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))
        r, w = os.pipe2(os.O_CLOEXEC)

        def child() -> None:
            try:
                hold(sys, args["kinds"], args["paths"], args.get("hostname"))
                os.write(w, b"ok")
                os._exit(0)
            except Exception as e:
                os.write(w, f"{e}".encode())
                os._exit(1)

        pid = fork_child(child, {w})
        os.close(w)
        try:
            answer = b""
            while chunk := os.read(r, 4096):
                answer += chunk
        finally:
            os.close(r)
            os.waitpid(pid, 0)
        if answer != b"ok":
            raise ForkServerError(f"creating namespaces {args['kinds']}: {answer.decode(errors='replace')}")
        return {"ok": True}, []

    return create


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
