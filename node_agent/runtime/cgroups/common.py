"""What both cgroup versions share: the settings, the stats, file helpers."""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_CPU_PERIOD = 100_000  # microseconds, the kernel's and Kubernetes' default


@dataclass
class Resources:
    """Limits for one cgroup. None leaves the kernel's value alone."""

    memory_limit: int | None = None  # bytes; -1 = unlimited
    memory_swap_limit: int | None = None  # memory+swap bytes (v1 memsw, v2 swap = this - memory); -1 = unlimited
    cpu_quota: int | None = None  # microseconds of CPU per period; -1 = unlimited
    cpu_period: int | None = None  # microseconds
    cpu_shares: int | None = None  # v1 scale 2..262144; converted to cpu.weight on v2
    pids_limit: int | None = None  # -1 or 0 = unlimited
    io_weight: int | None = None  # v1 blkio scale 10..1000; converted to io.weight on v2

    def to_dict(self) -> dict[str, int | None]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, int | None] | None) -> Resources:
        return cls(**(data or {}))


@dataclass
class CgroupStats:
    timestamp_ns: int
    cpu_usage_ns: int
    memory_usage_bytes: int
    memory_working_set_bytes: int
    memory_limit_bytes: int | None
    pids_current: int
    oom_kills: int


def now_ns() -> int:
    return time.time_ns()


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144) to cpu.weight (1..10000), the mapping runc and crun use."""
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_to_io_weight(weight: int) -> int:
    """blkio.weight (10..1000) to io.weight (1..10000)."""
    weight = min(max(weight, 10), 1000)
    return 1 + ((weight - 10) * 9999) // 990


def write(path: str, value: str) -> None:
    """Write a control file. No O_CREAT: a missing file is an error, as on cgroupfs."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise OSError(e.errno, f"writing {value!r} to {path}: {os.strerror(e.errno or 0)}") from None
    finally:
        os.close(fd)


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def read_int(path: str, default: int = 0) -> int:
    """An integer control file; "max" and missing files give `default`."""
    try:
        text = read(path).strip()
    except FileNotFoundError:
        return default
    if text in ("", "max"):
        return default
    return int(text.split()[0])


def read_keyed(path: str) -> dict[str, int]:
    """A flat keyed file (`key value` per line), as memory.stat or memory.events."""
    out: dict[str, int] = {}
    try:
        for line in read(path).splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("-").isdigit():
                out[parts[0]] = int(parts[1])
    except FileNotFoundError:
        pass
    return out


def exists(path: str) -> bool:
    return os.path.exists(path)


def read_procs(path: str) -> list[int]:
    try:
        return [int(p) for p in read(os.path.join(path, "cgroup.procs")).split()]
    except FileNotFoundError:
        return []


def makedirs(path: str, on_new: Callable[[str], None] | None = None) -> None:
    """mkdir -p, calling `on_new` on each directory it creates, parents first.

    One mkdir when only the last level is missing (a container's cgroup under its pod's)."""
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    except FileNotFoundError:
        parent = os.path.dirname(path)
        if parent == path:
            raise
        makedirs(parent, on_new)
        try:
            os.mkdir(path)
        except FileExistsError:
            return
    if on_new:
        on_new(path)


def rmdir_tree(path: str) -> None:
    """Remove a cgroup and its children, deepest first (cgroupfs needs rmdir, not unlink)."""
    if not os.path.isdir(path):
        return
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            rmdir_tree(entry.path)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        # cgroupfs never says ENOTEMPTY for its control files; a temp-dir tree
        # (unit tests) holds them as regular files, so remove those and retry.
        if e.errno != errno.ENOTEMPTY:
            raise
        for entry in os.scandir(path):
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
        os.rmdir(path)


def own_procs_file(v1_mounts: dict[str, str], unified: str | None) -> str | None:
    """cgroup.procs of this process's own cgroup in one hierarchy it can see, or None."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, names, path = line.split(":", 2)
        mount = unified if names == "" else next(
            (v1_mounts[n] for n in (x.removeprefix("name=") for x in names.split(",")) if n in v1_mounts), None)
        if mount:
            procs = os.path.join(mount, path.strip("/"), "cgroup.procs")
            if os.path.exists(procs):
                return procs
    return None


def prime_attach(own_procs: str | None) -> None:
    """Make the next cgroup migration on this machine fast; blocks for a few ms, so call it
    from a thread while other work goes on.

    Every migration takes the kernel's global threadgroup lock for writing, and the first
    writer after a quiet spell waits a whole RCU grace period (6-15 ms on a busy VM) before
    the lock is granted; writers within the next grace period do not. Re-adding this process
    to the cgroup it is already in is a migration that changes nothing but starts that wait
    early, so the container's init, joining its cgroup a few ms later, finds the lock warm.
    """
    if own_procs is None:
        return
    try:
        write(own_procs, "0")
    except OSError as e:  # only an optimisation
        log.debug("cgroup attach priming failed procs=%s err=%s", own_procs, e)
