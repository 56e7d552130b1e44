"""oom_score_adj on a container's PID 1: as asked, or clamped to ours without CAP_SYS_RESOURCE."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from timonel.node_agent.runtime.server.containers import set_oom_score_adj


def _has_sys_resource() -> bool:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> 24 & 1)
    return False


@pytest.fixture
def child() -> Iterator[int]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def _adj(pid: int) -> int:
    with open(f"/proc/{pid}/oom_score_adj") as f:
        return int(f.read())


def test_raising_is_written_as_asked(child: int) -> None:
    set_oom_score_adj(child, 999)
    assert _adj(child) == 999


def test_lowering_below_ours_needs_cap_sys_resource_else_gets_ours(child: int) -> None:
    with open("/proc/self/oom_score_adj") as f:
        own = int(f.read())
    target = max(own - 500, -1000)
    if target == own:
        pytest.skip("this process's oom_score_adj is already -1000")
    set_oom_score_adj(child, target)
    assert _adj(child) == (target if _has_sys_resource() else own)
