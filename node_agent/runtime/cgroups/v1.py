"""cgroup v1: one hierarchy per controller (or group of controllers).

A container's cgroup is the same relative path in every hierarchy; joining
means writing the pid to `cgroup.procs` in each. On hybrid hosts (this
machine) the cgroup2 mount at `unified/` has no controllers but gives
`cgroup.kill`, so it is joined too.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import time
from collections.abc import Callable

from ..linux import SyscallsLike
from .common import (
    CgroupStats,
    Resources,
    exists,
    makedirs,
    now_ns,
    own_procs_file,
    prime_attach,
    read,
    read_int,
    read_keyed,
    read_procs,
    rmdir_tree,
    write,
)

log = logging.getLogger(__name__)

_UNLIMITED_V1 = 1 << 62  # memory.limit_in_bytes reads back ~2^63 when unlimited


def apply_memory(res: Resources, path: str) -> None:
    if res.memory_limit is None:
        return
    limit = res.memory_limit if res.memory_limit > 0 else -1
    swap = res.memory_swap_limit if res.memory_swap_limit is not None else limit
    memsw = os.path.join(path, "memory.memsw.limit_in_bytes")
    mem = os.path.join(path, "memory.limit_in_bytes")
    if not exists(memsw):  # no swap accounting on this kernel
        write(mem, str(limit))
        return
    # memsw must never drop below the memory limit: lowering goes memory
    # first, raising goes memsw first; one order works, try both.
    try:
        write(mem, str(limit))
        write(memsw, str(swap))
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        write(memsw, str(swap))
        write(mem, str(limit))


def apply_cpu(res: Resources, path: str) -> None:
    if res.cpu_period is not None:
        write(os.path.join(path, "cpu.cfs_period_us"), str(res.cpu_period))
    if res.cpu_quota is not None:
        write(os.path.join(path, "cpu.cfs_quota_us"), str(res.cpu_quota if res.cpu_quota > 0 else -1))
    if res.cpu_shares is not None:
        write(os.path.join(path, "cpu.shares"), str(res.cpu_shares))


def apply_pids(res: Resources, path: str) -> None:
    if res.pids_limit is not None:
        write(os.path.join(path, "pids.max"), str(res.pids_limit) if res.pids_limit > 0 else "max")


def apply_blkio(res: Resources, path: str) -> None:
    if res.io_weight is None:
        return
    for name in ("blkio.weight", "blkio.bfq.weight"):
        if exists(os.path.join(path, name)):
            write(os.path.join(path, name), str(res.io_weight))
            return
    log.debug("cgroup io weight unsupported path=%s (no blkio weight file; needs CFQ/BFQ)", path)


def init_cpuset(path: str) -> None:
    """A new v1 cpuset starts empty and refuses tasks: inherit the parent's CPUs and nodes."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        own = os.path.join(path, name)
        if exists(own) and not read(own).strip():
            write(own, read(os.path.join(os.path.dirname(path), name)).strip())


def init_new_cpuset(path: str) -> bool:
    """init_cpuset for a directory just made (empty files) under a filled-in parent: False,
    writing nothing, if the parent is not filled in yet."""
    parent = os.path.dirname(path)
    values = [read(os.path.join(parent, name)).strip() for name in ("cpuset.cpus", "cpuset.mems")]
    if not all(values):
        return False
    write(os.path.join(path, "cpuset.cpus"), values[0])
    write(os.path.join(path, "cpuset.mems"), values[1])
    return True


KNOWN_CONTROLLERS = {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "net_prio",
                     "blkio", "perf_event", "hugetlb", "pids", "rdma", "misc"}

APPLIERS = {"memory": apply_memory, "cpu": apply_cpu, "pids": apply_pids, "blkio": apply_blkio}


class CgroupV1:
    version = 1

    def __init__(self, hierarchies: dict[str, str], unified: str | None = None):
        # controller or hierarchy name -> mount point; several names may share one.
        self.hierarchies = hierarchies
        self.unified = unified

    @classmethod
    def discover(cls, root: str = "/sys/fs/cgroup") -> CgroupV1:
        hierarchies: dict[str, str] = {}
        unified = None
        for entry in sorted(os.scandir(root), key=lambda e: e.name):
            if not entry.is_dir():
                continue
            real = os.path.realpath(entry.path)
            if exists(os.path.join(real, "cgroup.controllers")):
                unified = real
                continue
            if not exists(os.path.join(real, "cgroup.procs")):
                continue
            for name in os.path.basename(real).split(","):
                hierarchies.setdefault(name, real)
            hierarchies.setdefault(entry.name, real)
        if not hierarchies:
            raise OSError(errno.ENOENT, f"no cgroup v1 hierarchies under {root}")
        return cls(hierarchies, unified)

    def _mounts(self) -> list[str]:
        seen: list[str] = []
        for mount in [*self.hierarchies.values(), *([self.unified] if self.unified else [])]:
            if mount not in seen:
                seen.append(mount)
        return seen

    def mount_specs(self) -> tuple[list[list[str]], dict[str, str]]:
        """How to mount these hierarchies again inside a container: ([dir, fstype, options]...), links."""
        specs = []
        for mount in self._mounts():
            name = os.path.basename(mount)
            if mount == self.unified:
                specs.append([name, "cgroup2", ""])
                continue
            opts = [p if p in KNOWN_CONTROLLERS else f"name={p}" for p in name.split(",")]
            specs.append([name, "cgroup", ",".join(opts)])
        links = {alias: os.path.basename(m) for alias, m in self.hierarchies.items()
                 if alias != os.path.basename(m) and os.sep not in alias}
        return specs, links

    def dirs(self, rel: str) -> list[str]:
        return [os.path.join(m, rel.strip("/")) for m in self._mounts()]

    def path(self, controller: str, rel: str) -> str | None:
        mount = self.hierarchies.get(controller)
        return os.path.join(mount, rel.strip("/")) if mount else None

    def create(self, rel: str, resources: Resources | None = None) -> None:
        cpuset = self.hierarchies.get("cpuset")
        for d in self.dirs(rel):
            made: list[str] = []
            makedirs(d, made.append)
            # The usual case, a container's cgroup under its pod's: only the leaf is new.
            if cpuset and d.startswith(f"{cpuset}/") and not (made == [d] and init_new_cpuset(d)):
                # Every level, top-down, not only the dirs made here: a concurrent
                # create may have made a parent and not yet filled it in.
                parts = os.path.relpath(d, cpuset).split(os.sep)
                for i in range(1, len(parts) + 1):
                    init_cpuset(os.path.join(cpuset, *parts[:i]))
        self.update(rel, resources or Resources())

    def update(self, rel: str, resources: Resources) -> None:
        for controller, apply in APPLIERS.items():
            p = self.path(controller, rel)
            if p is not None:
                apply(resources, p)

    def prime_attach(self) -> None:
        """See common.prime_attach: call from a thread shortly before a process joins a cgroup."""
        prime_attach(own_procs_file(self.hierarchies, self.unified))  # looked up each time: we may have been moved

    def exists(self, rel: str) -> bool:
        return any(os.path.isdir(d) for d in self.dirs(rel))

    def procs_files(self, rel: str) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in self.dirs(rel)]

    def join(self, rel: str, pid: int) -> None:
        for f in self.procs_files(rel):
            write(f, str(pid))

    def pids(self, rel: str) -> list[int]:
        """Every process in the cgroup and its descendants."""
        for controller in ("pids", "memory", "cpu"):
            p = self.path(controller, rel)
            if p:
                return _walk_procs(p)
        return _walk_procs(self.dirs(rel)[0])

    def kill(self, rel: str, sig: int = signal.SIGKILL, timeout: float = 5.0) -> None:
        """Signal every process in the cgroup; with SIGKILL, wait until it is empty."""
        if self.unified and sig == signal.SIGKILL:
            kill_file = os.path.join(self.unified, rel.strip("/"), "cgroup.kill")
            if exists(kill_file):
                write(kill_file, "1")
                _wait_empty(self.pids, rel, timeout)
                return
        freezer = self.path("freezer", rel)
        frozen = bool(freezer and exists(os.path.join(freezer, "freezer.state")))
        if frozen and freezer:  # freezing stops a fork bomb from outrunning the kill loop
            write(os.path.join(freezer, "freezer.state"), "FROZEN")
        try:
            for pid in self.pids(rel):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if frozen and freezer:
                write(os.path.join(freezer, "freezer.state"), "THAWED")
        if sig == signal.SIGKILL:
            _wait_empty(self.pids, rel, timeout)

    def remove(self, rel: str) -> None:
        for d in self.dirs(rel):
            _rmdir_retry(d)

    def oom_kill_count(self, rel: str) -> int:
        p = self.path("memory", rel)
        if not p:
            return 0
        return read_keyed(os.path.join(p, "memory.oom_control")).get("oom_kill", 0)

    def oom_notifier(self, rel: str, sys: SyscallsLike) -> int:
        """An eventfd that becomes readable on each OOM in the cgroup (cgroup.event_control)."""
        p = self.path("memory", rel)
        if not p:
            raise OSError(errno.ENOENT, "no memory cgroup hierarchy")
        efd = sys.eventfd(0, os.EFD_CLOEXEC)
        ofd = os.open(os.path.join(p, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
        try:
            write(os.path.join(p, "cgroup.event_control"), f"{efd} {ofd}")
        except OSError:
            os.close(efd)
            raise
        finally:
            os.close(ofd)
        return efd

    def stats(self, rel: str) -> CgroupStats:
        cpu = self.path("cpuacct", rel)
        mem = self.path("memory", rel)
        pids = self.path("pids", rel)
        usage = read_int(os.path.join(mem, "memory.usage_in_bytes")) if mem else 0
        mstat = read_keyed(os.path.join(mem, "memory.stat")) if mem else {}
        inactive = mstat.get("total_inactive_file", mstat.get("inactive_file", 0))
        limit = read_int(os.path.join(mem, "memory.limit_in_bytes"), -1) if mem else -1
        return CgroupStats(
            timestamp_ns=now_ns(),
            cpu_usage_ns=read_int(os.path.join(cpu, "cpuacct.usage")) if cpu else 0,
            memory_usage_bytes=usage,
            memory_working_set_bytes=max(usage - inactive, 0),
            memory_limit_bytes=None if limit < 0 or limit >= _UNLIMITED_V1 else limit,
            pids_current=read_int(os.path.join(pids, "pids.current")) if pids else 0,
            oom_kills=self.oom_kill_count(rel),
        )


def _walk_procs(path: str) -> list[int]:
    pids = read_procs(path)
    if os.path.isdir(path):
        for entry in os.scandir(path):
            if entry.is_dir(follow_symlinks=False):
                pids += _walk_procs(entry.path)
    return pids


def _wait_empty(pids: Callable[[str], list[int]], rel: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while pids(rel) and time.monotonic() < deadline:
        time.sleep(0.002)


def _rmdir_retry(path: str, timeout: float = 2.0) -> None:
    # A cgroup stays busy for a moment after its last task is reaped.
    deadline = time.monotonic() + timeout
    while True:
        try:
            rmdir_tree(path)
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                raise OSError(e.errno, f"removing cgroup {path}: {e.strerror}") from None
            time.sleep(0.005)
