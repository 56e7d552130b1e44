"""The fork server's staging mount namespace, on the real kernel: two mounts, whatever the host has."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .conftest import Runtime, needs_root

pytestmark = needs_root

# In a process of its own: setns into a mount namespace needs a single-threaded caller.
_PROBE = r"""
import json, os
from timonel.node_agent.runtime.container import rootfs
from timonel.node_agent.runtime.linux import Syscalls
from timonel.node_agent.runtime.linux.constants import CLONE_NEWNS
sys_ = Syscalls()
cwd, ours = os.getcwd(), os.readlink("/proc/self/ns/mnt")
fd = rootfs.staging_namespace(sys_)
after = {"cwd": os.getcwd(), "ns": os.readlink("/proc/self/ns/mnt"), "staging": os.readlink(f"/proc/self/fd/{fd}")}
r, w = os.pipe()
pid = os.fork()
if pid == 0:  # what a spare's init sees in its copy
    os.close(r)
    sys_.setns(fd, CLONE_NEWNS)
    sys_.unshare(CLONE_NEWNS)
    os.mkdir("/tmp/proc")
    sys_.mount("proc", "/tmp/proc", "proc")
    seen = {"mounts": open("/tmp/proc/self/mountinfo").read().splitlines(),
            "null_is_a_device": os.path.exists("/dev/null") and not os.path.isfile("/dev/null"),
            "root": sorted(os.listdir("/"))}
    os.write(w, json.dumps(seen).encode())
    os._exit(0)
os.close(w)
seen = json.loads(os.read(r, 1 << 20))
os.waitpid(pid, 0)
print(json.dumps({"cwd_before": cwd, "ns_before": ours, **after, **seen}))
"""


def test_the_staging_namespace_holds_two_mounts_whatever_the_host_has(tmp_path: Path) -> None:
    pins = tmp_path / "pins"
    pins.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(pins)], check=True)
    try:
        for i in range(50):  # like pods' namespace pins on the host
            (pins / str(i)).touch()
            subprocess.run(["mount", "--bind", "/proc/self/ns/uts", str(pins / str(i))], check=True)
        out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True,
                             cwd=tmp_path)
    finally:
        subprocess.run(["umount", "-R", str(pins)], check=True)
    seen = json.loads(out.stdout)
    assert seen["ns"] == seen["ns_before"] and seen["cwd"] == seen["cwd_before"]  # the caller is back as it was
    assert seen["staging"].startswith("mnt:") and seen["staging"] != seen["ns_before"]
    points = [line.split()[4] for line in seen["mounts"]]
    assert points == ["/", "/dev", "/tmp/proc"], seen["mounts"]  # the tmpfs root, the host's /dev, the probe's
    assert seen["null_is_a_device"] and seen["root"] == ["dev", "tmp"]


def test_the_fork_server_keeps_a_staging_namespace(rt: Runtime) -> None:
    ours = os.readlink("/proc/self/ns/mnt")

    def held() -> set[str]:
        links = set()
        for fd in os.listdir(f"/proc/{rt.forkserver.pid}/fd"):
            with contextlib.suppress(FileNotFoundError):
                links.add(os.readlink(f"/proc/{rt.forkserver.pid}/fd/{fd}"))
        return links

    deadline = time.monotonic() + 20  # it is made at the first spare, which the manager asks for at once
    while not [ns for ns in held() if ns.startswith("mnt:") and ns != ours] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [ns for ns in held() if ns.startswith("mnt:") and ns != ours], held()
