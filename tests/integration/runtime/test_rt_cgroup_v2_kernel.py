"""The v2 driver against a real cgroup2 mount: this host's hybrid `unified` tree (no
controllers, so membership, kill and removal only) or the root on a pure v2 host."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from timonel.node_agent.runtime.cgroups import CgroupV2, Resources

from .conftest import needs_root

pytestmark = needs_root


def cgroup2_root() -> str:
    for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if os.path.exists(os.path.join(root, "cgroup.controllers")):
            return root
    pytest.skip("no cgroup2 mount on this host")


def test_v2_create_join_kill_remove_on_the_kernel() -> None:
    driver = CgroupV2(cgroup2_root())
    pod = f"timonel-test-v2/{uuid.uuid4().hex[:10]}"
    rel = f"{pod}/c1"
    driver.create(rel, Resources())
    proc = subprocess.Popen(["sleep", "1000"])
    try:
        driver.join(rel, proc.pid)
        with open(f"/proc/{proc.pid}/cgroup") as f:
            assert f"0::/{rel}\n" in f.read()
        assert driver.pids(pod) == [proc.pid]  # a pod sees its containers' processes
        driver.kill(pod)
        assert proc.wait(timeout=10) == -9
        assert driver.pids(pod) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        driver.remove(pod)
        try:
            os.rmdir(driver.dir("timonel-test-v2"))
        except OSError:
            pass
    assert not driver.exists(pod)
