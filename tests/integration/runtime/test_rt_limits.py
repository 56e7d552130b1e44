"""cgroup limits verified by behaviour: OOM kill, CPU quota, pids.max (the machine's driver)."""

from __future__ import annotations

import os
import select
import time

from timonel.node_agent.runtime.cgroups import CgroupV1, Resources

from .conftest import Runtime, needs_root

pytestmark = needs_root


def test_memory_hog_is_oom_killed(rt: Runtime) -> None:
    hog = 'a=xxxxxxxxxxxxxxxx; while :; do a="$a$a"; done'
    spec = rt.spec("oom", ["sh", "-c", hog], resources=Resources(memory_limit=32 << 20))
    rt.containers.create(spec)
    notifier = None
    if isinstance(rt.cgroups, CgroupV1):  # the eventfd route must fire too
        notifier = rt.cgroups.oom_notifier(f"{rt.cgroup_parent}/oom", rt.sys)
    rt.containers.start("oom")
    st = rt.containers.wait("oom", 60)
    assert (st.state, st.exit_code, st.reason) == ("exited", 137, "OOMKilled")
    if notifier is not None:
        try:
            assert select.select([notifier], [], [], 5)[0] == [notifier]
            assert int.from_bytes(os.read(notifier, 8), "little") >= 1
        finally:
            os.close(notifier)


def test_cpu_quota_of_20_percent_throttles_a_busy_loop(rt: Runtime) -> None:
    spec = rt.spec("cpu", ["sh", "-c", "while :; do :; done"],
                   resources=Resources(cpu_quota=20_000, cpu_period=100_000))
    rt.containers.create(spec)
    rt.containers.start("cpu")
    time.sleep(0.3)  # past start-up
    first = rt.containers.stats("cpu")
    time.sleep(2.0)
    second = rt.containers.stats("cpu")
    share = (second.cpu_usage_ns - first.cpu_usage_ns) / (second.timestamp_ns - first.timestamp_ns)
    print(f"cpu share under a 20% quota: {share:.1%}")
    assert 0.10 <= share <= 0.35


def test_pids_max_stops_a_fork_bomb(rt: Runtime) -> None:
    # Bounded, so a broken limit cannot take the machine down: 60 sleepers against pids.max=10.
    bomb = "i=0; while [ $i -lt 60 ]; do sleep 30 & i=$((i+1)); done; echo all-spawned"
    spec = rt.spec("pids", ["sh", "-c", bomb], resources=Resources(pids_limit=10))
    rt.containers.create(spec)
    rt.containers.start("pids")
    peak = 0
    deadline = time.monotonic() + 30
    while rt.containers.status("pids").state == "running" and time.monotonic() < deadline:
        peak = max(peak, rt.containers.stats("pids").pids_current)
        time.sleep(0.01)
    st = rt.containers.wait("pids", 30)
    with open(st.log_path) as f:
        log = f.read()
    assert "can't fork: Resource temporarily unavailable" in log  # EAGAIN from the pids controller
    assert "all-spawned" not in log and st.exit_code != 0
    assert peak <= 10


def test_stats_report_memory_and_pids(rt: Runtime) -> None:
    rt.containers.create(rt.spec("st", ["sleep", "1000"], resources=Resources(memory_limit=64 << 20)))
    rt.containers.start("st")
    s = rt.containers.stats("st")
    assert s.memory_limit_bytes == 64 << 20
    assert s.pids_current == 1 and s.memory_usage_bytes > 0 and s.oom_kills == 0
