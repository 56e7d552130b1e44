"""cgroup v1 and v2 behind one interface, chosen by `detect()` at start.

Both drivers take paths relative to the cgroup root(s) (e.g.
`timonel/<pod>/<container>`) and offer: create, update, join, procs_files,
pids, kill, remove, stats, oom_kill_count, oom_notifier.
"""

from __future__ import annotations

import os

from .common import CgroupStats, Resources, shares_to_weight
from .v1 import CgroupV1
from .v2 import CgroupV2

Cgroups = CgroupV1 | CgroupV2


def detect(root: str = "/sys/fs/cgroup") -> Cgroups:
    """The driver for this machine: v2 when `root` is a cgroup2 mount, else v1."""
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        return CgroupV2(root)
    return CgroupV1.discover(root)


__all__ = ["CgroupStats", "CgroupV1", "CgroupV2", "Cgroups", "Resources", "detect", "shares_to_weight"]
