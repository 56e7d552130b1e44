"""runc and crun as peers of timonel's runtime: bundles, one timed run, summaries.

Shared by bench/runtime_start.py and the quick latency test
(tests/integration/runtime/test_rt_latency.py). A bundle runs `args` on a
read-only `rootfs` (e.g. timonel's unpacked image layer) with new pid, mount
and cgroup namespaces, and net/ipc/uts either new or joined from namespace
files, so the peers do what a timonel container does.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

PEERS = ("runc", "crun")
_UNIFIED_CONTROLLERS = "/sys/fs/cgroup/unified/cgroup.controllers"


def summary(samples: list[float]) -> tuple[float, float]:
    """(median, p90) in milliseconds of samples in seconds."""
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[max(int(len(ordered) * 0.9) - 1, 0)] * 1000


def oci_bundle(runtime: str, rootfs: str, bundle: Path, args: list[str] | None = None,
               join: dict[str, str] | None = None) -> None:
    """Write `bundle`/config.json; `join` maps "network"/"ipc"/"uts" to namespace files to join."""
    bundle.mkdir(parents=True)
    subprocess.run([runtime, "spec"], cwd=bundle, check=True, capture_output=True)
    config = json.loads((bundle / "config.json").read_text())
    config["root"] = {"path": rootfs, "readonly": True}
    config["process"].update(args=args or ["/bin/true"], terminal=False)
    join = join or {}
    spaces = [n for n in config["linux"]["namespaces"] if n["type"] not in join]
    spaces += [{"type": k, "path": p} for k, p in join.items()]
    kinds = {n["type"] for n in spaces}
    spaces += [{"type": k} for k in ("pid", "network", "ipc", "uts", "mount", "cgroup") if k not in kinds]
    config["linux"]["namespaces"] = spaces
    (bundle / "config.json").write_text(json.dumps(config))


def oci_once(runtime: str, bundle: Path, name: str) -> float | str:
    """Seconds for `runtime run` (create, start, wait, delete in one call), or its error."""
    t0 = time.perf_counter()
    r = subprocess.run([runtime, "run", name], cwd=bundle, capture_output=True)
    took = time.perf_counter() - t0
    if r.returncode != 0:
        subprocess.run([runtime, "delete", "-f", name], capture_output=True)
        return r.stderr.decode(errors="replace").strip()[:200]
    return took


def installed() -> list[str]:
    return [p for p in PEERS if shutil.which(p)]


def hybrid_with_v2_controllers() -> bool:
    """A hybrid cgroup host whose cgroup2 mount holds a controller (hugetlb here): crun 1.8
    refuses to run there ("cgroups in hybrid mode not supported")."""
    try:
        with open(_UNIFIED_CONTROLLERS) as f:
            return bool(f.read().strip()) and not os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    except OSError:
        return False


def hide_v2_controllers(scratch: Path) -> None:
    """Let crun run on such a host: in a private mount namespace of this process (and of the
    runtimes it starts), an empty file covers the cgroup2 controller list, so crun uses the
    v1 hierarchies like runc does. Call while the process has no threads; the host is untouched."""
    libc = ctypes.CDLL(None, use_errno=True)
    clone_newns, ms_rec, ms_private, ms_bind = 0x20000, 0x4000, 1 << 18, 0x1000

    def check(rc: int, what: str) -> None:
        if rc != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    check(libc.unshare(clone_newns), "unshare(CLONE_NEWNS)")
    check(libc.mount(b"none", b"/", None, ms_rec | ms_private, None), "make / private")
    empty = scratch / "empty-cgroup.controllers"
    empty.write_text("")
    check(libc.mount(str(empty).encode(), _UNIFIED_CONTROLLERS.encode(), None, ms_bind, None),
          f"bind an empty file over {_UNIFIED_CONTROLLERS}")
