"""cgroup v2: one tree; controllers are enabled top-down in `cgroup.subtree_control`.

Processes may live only in leaves, so pod cgroups hold container cgroups and
never a process of their own.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import time

from ..linux import SyscallsLike
from .common import (
    CgroupStats,
    Resources,
    blkio_to_io_weight,
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
    shares_to_weight,
    write,
)

log = logging.getLogger(__name__)

WANTED_CONTROLLERS = ("cpu", "io", "memory", "pids")


def apply_memory(res: Resources, path: str) -> None:
    if res.memory_limit is None:
        return
    limit = res.memory_limit
    write(os.path.join(path, "memory.max"), str(limit) if limit > 0 else "max")
    swap_file = os.path.join(path, "memory.swap.max")
    if not exists(swap_file):
        return
    if res.memory_swap_limit is None:
        swap = "0" if limit > 0 else "max"  # Kubernetes' default: no swap
    elif res.memory_swap_limit < 0 or limit <= 0:
        swap = "max"
    else:  # v2 limits swap alone; the setting is memory+swap like v1's memsw
        swap = str(max(res.memory_swap_limit - limit, 0))
    write(swap_file, swap)


def apply_cpu(res: Resources, path: str) -> None:
    if res.cpu_quota is not None or res.cpu_period is not None:
        quota = "max" if res.cpu_quota is None or res.cpu_quota <= 0 else str(res.cpu_quota)
        period = res.cpu_period or 100_000
        write(os.path.join(path, "cpu.max"), f"{quota} {period}")
    if res.cpu_shares is not None:
        write(os.path.join(path, "cpu.weight"), str(shares_to_weight(res.cpu_shares)))


def apply_pids(res: Resources, path: str) -> None:
    if res.pids_limit is not None:
        write(os.path.join(path, "pids.max"), str(res.pids_limit) if res.pids_limit > 0 else "max")


def apply_io(res: Resources, path: str) -> None:
    if res.io_weight is None:
        return
    weight = blkio_to_io_weight(res.io_weight)
    for name, value in (("io.weight", f"default {weight}"), ("io.bfq.weight", str(res.io_weight))):
        if exists(os.path.join(path, name)):
            write(os.path.join(path, name), value)
            return
    log.debug("cgroup io weight unsupported path=%s (io controller not enabled)", path)


APPLIERS = (apply_memory, apply_cpu, apply_pids, apply_io)

_IN_MODIFY = 0x2


class CgroupV2:
    version = 2

    def __init__(self, root: str = "/sys/fs/cgroup"):
        self.root = root

    def dir(self, rel: str) -> str:
        return os.path.join(self.root, rel.strip("/"))

    def mount_specs(self) -> tuple[list[list[str]], dict[str, str]]:
        """How to mount this tree again inside a container (see CgroupV1.mount_specs)."""
        return [["", "cgroup2", ""]], {}

    def dirs(self, rel: str) -> list[str]:
        return [self.dir(rel)]

    def _enable_controllers(self, rel: str) -> None:
        # Every ancestor of the new cgroup must delegate the controllers to it.
        parts = [p for p in rel.strip("/").split("/") if p][:-1]
        current = self.root
        for part in [None, *parts]:
            if part:
                current = os.path.join(current, part)
            available = read(os.path.join(current, "cgroup.controllers")).split()
            enabled = read(os.path.join(current, "cgroup.subtree_control")).split()
            for c in WANTED_CONTROLLERS:
                if c in available and c not in enabled:
                    try:
                        write(os.path.join(current, "cgroup.subtree_control"), f"+{c}")
                    except OSError as e:
                        log.warning("cgroup controller=%s not enabled at=%s err=%s", c, current, e)

    def create(self, rel: str, resources: Resources | None = None) -> None:
        parent = os.path.dirname(self.dir(rel))
        makedirs(parent)
        self._enable_controllers(rel)
        makedirs(self.dir(rel))
        self.update(rel, resources or Resources())

    def update(self, rel: str, resources: Resources) -> None:
        for apply in APPLIERS:
            apply(resources, self.dir(rel))

    def prime_attach(self) -> None:
        """See common.prime_attach: call from a thread shortly before a process joins a cgroup."""
        prime_attach(own_procs_file({}, self.root))  # looked up each time: we may have been moved

    def exists(self, rel: str) -> bool:
        return os.path.isdir(self.dir(rel))

    def procs_files(self, rel: str) -> list[str]:
        return [os.path.join(self.dir(rel), "cgroup.procs")]

    def join(self, rel: str, pid: int) -> None:
        write(self.procs_files(rel)[0], str(pid))

    def pids(self, rel: str) -> list[int]:
        pids = read_procs(self.dir(rel))
        if os.path.isdir(self.dir(rel)):
            for entry in os.scandir(self.dir(rel)):
                if entry.is_dir(follow_symlinks=False):
                    pids += self.pids(os.path.join(rel, entry.name))
        return pids

    def kill(self, rel: str, sig: int = signal.SIGKILL, timeout: float = 5.0) -> None:
        kill_file = os.path.join(self.dir(rel), "cgroup.kill")
        if sig == signal.SIGKILL and exists(kill_file):
            write(kill_file, "1")
        else:
            for pid in self.pids(rel):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        if sig == signal.SIGKILL:
            deadline = time.monotonic() + timeout
            while self.pids(rel) and time.monotonic() < deadline:
                time.sleep(0.002)

    def remove(self, rel: str) -> None:
        deadline = time.monotonic() + 2.0
        while True:
            try:
                rmdir_tree(self.dir(rel))
                return
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise OSError(e.errno, f"removing cgroup {self.dir(rel)}: {e.strerror}") from None
                time.sleep(0.005)

    def oom_kill_count(self, rel: str) -> int:
        return read_keyed(os.path.join(self.dir(rel), "memory.events")).get("oom_kill", 0)

    def oom_notifier(self, rel: str, sys: SyscallsLike) -> int:
        """An inotify fd that becomes readable when memory.events changes; re-read the count then."""
        return sys.inotify_watch(os.path.join(self.dir(rel), "memory.events"), _IN_MODIFY)

    def stats(self, rel: str) -> CgroupStats:
        d = self.dir(rel)
        usage = read_int(os.path.join(d, "memory.current"))
        mstat = read_keyed(os.path.join(d, "memory.stat"))
        limit = read_int(os.path.join(d, "memory.max"), -1)
        return CgroupStats(
            timestamp_ns=now_ns(),
            cpu_usage_ns=read_keyed(os.path.join(d, "cpu.stat")).get("usage_usec", 0) * 1000,
            memory_usage_bytes=usage,
            memory_working_set_bytes=max(usage - mstat.get("inactive_file", 0), 0),
            memory_limit_bytes=None if limit < 0 else limit,
            pids_current=read_int(os.path.join(d, "pids.current")),
            oom_kills=self.oom_kill_count(rel),
        )
