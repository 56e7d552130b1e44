"""A recording stand-in for `Syscalls`, for unit tests that need no root.

Each call is appended to `calls` as `(name, args)`; nothing touches the
kernel. `fail` makes a named call raise (e.g. `{"mount:overlay": OSError(22)}`
fails only overlay mounts), so error paths are testable too. It keeps just
enough state (capability sets, bounding set, no_new_privs, uid) for the
security code's results to be checked.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .constants import CAPABILITIES


class ExecCalled(Exception):
    """Raised by `FakeSyscalls.execve`: the real one never returns."""

    def __init__(self, path: str, args: list[str], env: dict[str, str]):
        super().__init__(path)
        self.path, self.argv, self.env = path, args, env


_ALL = (1 << len(CAPABILITIES)) - 1


@dataclass
class FakeSyscalls:
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    fail: dict[str, BaseException] = field(default_factory=dict)
    effective: int = _ALL
    permitted: int = _ALL
    inheritable: int = 0
    bounding: int = _ALL
    ambient: int = 0
    no_new_privs: bool = False
    uid: int = 0
    gid: int = 0
    groups: list[int] = field(default_factory=list)
    keepcaps: bool = False
    _next_fd: int = 1000

    def _record(self, name: str, *args: Any, key: str | None = None) -> None:
        self.calls.append((name, args))
        for k in (name, f"{name}:{key}" if key else None):
            if k and k in self.fail:
                raise self.fail[k]

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def find(self, name: str) -> list[tuple[Any, ...]]:
        return [args for n, args in self.calls if n == name]

    def unshare(self, flags: int) -> None:
        self._record("unshare", flags)

    def setns(self, fd: int, nstype: int = 0) -> None:
        self._record("setns", fd, nstype)

    def sethostname(self, name: str) -> None:
        self._record("sethostname", name)

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int = 0,
              data: str | None = None) -> None:
        self._record("mount", source, target, fstype, flags, data, key=fstype)

    def umount2(self, target: str, flags: int = 0) -> None:
        self._record("umount2", target, flags)

    def pivot_root(self, new_root: str, put_old: str) -> None:
        self._record("pivot_root", new_root, put_old)

    def clone_tree(self, path: str) -> int:
        self._record("clone_tree", path)
        self._next_fd += 1
        return self._next_fd

    def attach_tree(self, fd: int, target: str) -> None:
        self._record("attach_tree", fd, target)

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
        self._record("prctl", option, arg2, arg3)
        return 0

    def vfork_sibling(self, child: Callable[[], None], stack_size: int = 8 << 20) -> int:
        """Recorded, not run: no process can share this one's memory here."""
        self._record("vfork_sibling", child)
        self._next_fd += 1
        return self._next_fd

    def fork_bare(self) -> int:
        """Recorded, then a real fork: the caller's child branch runs as it would."""
        self._record("fork_bare")
        return os.fork()

    def set_pdeathsig(self, sig: int) -> None:
        self._record("set_pdeathsig", sig)

    def set_child_subreaper(self) -> None:
        self._record("set_child_subreaper")

    def set_name(self, name: str) -> None:
        self._record("set_name", name)

    def mark_top_directory(self, path: str) -> bool:
        self._record("mark_top_directory", path)
        return True

    def set_keepcaps(self, keep: bool) -> None:
        self._record("set_keepcaps", keep)
        self.keepcaps = keep

    def set_no_new_privs(self) -> None:
        self._record("set_no_new_privs")
        self.no_new_privs = True

    def get_no_new_privs(self) -> bool:
        return self.no_new_privs

    def capbset_read(self, cap: int) -> bool:
        return bool(self.bounding >> cap & 1)

    def capbset_drop(self, cap: int) -> None:
        self._record("capbset_drop", cap)
        self.bounding &= ~(1 << cap)

    def ambient_clear(self) -> None:
        self._record("ambient_clear")
        self.ambient = 0

    def ambient_raise(self, cap: int) -> None:
        self._record("ambient_raise", cap)
        if not (self.permitted >> cap & 1 and self.inheritable >> cap & 1):
            raise PermissionError(1, f"ambient_raise({cap}): not permitted and inheritable")
        self.ambient |= 1 << cap

    def capget(self) -> tuple[int, int, int]:
        return self.effective, self.permitted, self.inheritable

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        self._record("capset", effective, permitted, inheritable)
        # The kernel's rules: permitted can only shrink, effective within permitted.
        if permitted & ~self.permitted or effective & ~permitted:
            raise PermissionError(1, "capset: raising capabilities")
        self.effective, self.permitted, self.inheritable = effective, permitted, inheritable

    def seccomp_load(self, program: bytes, flags: int = 0) -> None:
        self._record("seccomp_load", len(program), flags)

    def eventfd(self, initval: int = 0, flags: int = 0) -> int:
        self._record("eventfd", initval, flags)
        self._next_fd += 1
        return self._next_fd

    def inotify_watch(self, path: str, mask: int) -> int:
        self._record("inotify_watch", path, mask)
        self._next_fd += 1
        return self._next_fd

    def loopback_up(self) -> None:
        self._record("loopback_up")

    def setrlimit(self, kind: int, soft: int, hard: int) -> None:
        self._record("setrlimit", kind, soft, hard)

    def setgroups(self, gids: list[int]) -> None:
        self._record("setgroups", list(gids))
        self.groups = list(gids)

    def setresgid(self, gid: int) -> None:
        self._record("setresgid", gid)
        self.gid = gid

    def setresuid(self, uid: int) -> None:
        self._record("setresuid", uid)
        if self.uid == 0 and uid != 0:
            # Leaving uid 0 clears permitted/effective unless keepcaps; ambient always.
            if not self.keepcaps:
                self.permitted = 0
            self.effective = 0
        self.uid = uid

    def chdir(self, path: str) -> None:
        self._record("chdir", path)

    def execve(self, path: str, args: list[str], env: dict[str, str]) -> None:
        self._record("execve", path, list(args), dict(env))
        raise ExecCalled(path, args, env)
