"""Eviction: --eviction-hard parsing, threshold comparison, pressure conditions, ranking and messages."""

from __future__ import annotations

import os
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from timonel.cli.agent_cmd import duration_flag, eviction_hard_flag
from timonel.cli.failures import Failure
from timonel.node_agent.agent.eviction import (
    DEFAULT_EVICTION_HARD,
    Observation,
    PodUsage,
    Threshold,
    ThresholdError,
    add_disk_usage,
    admit,
    allocatable,
    candidates,
    eviction_message,
    held_pressure,
    local_storage_evictions,
    observe,
    parse_duration,
    parse_thresholds,
    pod_request,
    pressure_of,
    rank,
    thresholds_met,
)
from timonel.node_agent.agent.node import Pressure

MI = 1 << 20


def test_parse_upstream_syntax() -> None:
    got = parse_thresholds("memory.available<100Mi, nodefs.available<10%,pid.available<1000,"
                           "imagefs.inodesFree<0%")
    assert got == [Threshold("memory.available", quantity=100 * MI, text="100Mi"),
                   Threshold("nodefs.available", percentage=Decimal("0.10"), text="10%"),
                   Threshold("pid.available", quantity=1000, text="1000")]
    assert [t.signal for t in parse_thresholds(DEFAULT_EVICTION_HARD)] == [
        "memory.available", "nodefs.available", "nodefs.inodesFree", "imagefs.available", "imagefs.inodesFree"]
    assert parse_thresholds("") == []
    # A repeated signal: the later value wins, as upstream's map flag.
    assert parse_thresholds("memory.available<1Gi,memory.available<2Gi")[0].quantity == 2 << 30


@pytest.mark.parametrize(("text", "message"), [
    ("memory.available=100Mi", "malformed pair"),
    ("memory.available<", "malformed pair"),
    ("cpu.available<1", "unsupported eviction signal cpu.available"),
    ("memory.available<-1Mi", "must be positive"),
    ("memory.available<0", "must be positive"),
    ("nodefs.available<150%", "between 0% and 100%"),
    ("nodefs.available<x%", "is not a percentage"),
    ("memory.available<lots", "quantities must match"),
])
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ThresholdError, match=message):
        parse_thresholds(text)


def test_cli_flag() -> None:
    assert eviction_hard_flag(None) == DEFAULT_EVICTION_HARD
    assert eviction_hard_flag("memory.available<1000Ti") == "memory.available<1000Ti"
    with pytest.raises(Failure) as info:
        eviction_hard_flag("memory<1Gi")
    assert "--eviction-hard" in str(info.value) and "memory<1Gi" in str(info.value)


def test_thresholds_met_and_pressure() -> None:
    thresholds = parse_thresholds("pid.available<10%,memory.available<100Mi,nodefs.available<10%")
    observed = {"memory.available": Observation(99 * MI, 1000 * MI),
                "nodefs.available": Observation(100, 1000),  # exactly at 10%: not under
                "pid.available": Observation(500, 10000)}
    met = thresholds_met(thresholds, observed)
    assert [t.signal for t in met] == ["memory.available", "pid.available"]  # memory first
    p = pressure_of(met)
    assert (p.memory, p.disk, p.pid) == (True, False, True)
    observed["nodefs.available"] = Observation(99, 1000)
    assert pressure_of(thresholds_met(thresholds, observed)).disk
    # A signal not observed (no separate imagefs) never triggers.
    assert thresholds_met(parse_thresholds("imagefs.available<99%"), observed) == []


def test_observe_this_machine(tmp_path: Any) -> None:
    got = observe(str(tmp_path), image_dir=str(tmp_path))
    assert set(got) == {"memory.available", "pid.available", "nodefs.available", "nodefs.inodesFree"}
    for o in got.values():
        assert 0 <= o.available <= o.capacity
    assert got["memory.available"].capacity > 0
    assert pressure_of(thresholds_met(parse_thresholds("memory.available<1000Ti"), got)).memory


def pod(name: str, *, requests: dict[str, str] | None = None, limits: dict[str, str] | None = None,
        priority: int = 0, phase: str = "Running", deleting: bool = False) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    md: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}"}
    if deleting:
        md["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": md, "spec": {"priority": priority, "containers": [{"name": "c", "resources": resources}]},
            "status": {"phase": phase}}


BEST_EFFORT = pod("be")
BURSTABLE = pod("burst", requests={"memory": "16Mi"})
GUARANTEED = pod("guar", requests={"memory": "64Mi", "cpu": "100m"}, limits={"memory": "64Mi", "cpu": "100m"})


def names(pods: list[dict[str, Any]]) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


def test_memory_rank_like_upstream() -> None:
    usage = {"uid-be": PodUsage(memory=1 * MI), "uid-burst": PodUsage(memory=2 * MI),
             "uid-guar": PodUsage(memory=2 * MI)}
    assert names(rank([GUARANTEED, BURSTABLE, BEST_EFFORT], usage, "memory")) == ["be", "burst", "guar"]
    # Usage above requests comes before QoS: a Burstable pod over its request goes first.
    usage["uid-burst"] = PodUsage(memory=40 * MI)
    assert names(rank([GUARANTEED, BEST_EFFORT, BURSTABLE], usage, "memory")) == ["burst", "be", "guar"]
    # Then priority: among pods over their requests the lower priority goes first.
    high = pod("high", priority=1000)
    usage["uid-high"] = PodUsage(memory=500 * MI)
    assert names(rank([high, BURSTABLE], usage, "memory")) == ["burst", "high"]
    # Without any stats, BestEffort still goes before Burstable before Guaranteed.
    assert names(rank([GUARANTEED, BURSTABLE, BEST_EFFORT], {}, "memory")) == ["be", "burst", "guar"]


def test_pid_and_disk_rank() -> None:
    usage = {"uid-burst": PodUsage(processes=50), "uid-be": PodUsage(processes=2)}
    assert names(rank([BEST_EFFORT, BURSTABLE], usage, "pids")) == ["burst", "be"]
    assert names(rank([GUARANTEED, BURSTABLE, BEST_EFFORT], usage, "ephemeral-storage")) == ["be", "burst", "guar"]
    # On disk: usage over the ephemeral-storage request first, then priority, then the larger user.
    usage = {"uid-guar": PodUsage(disk=500 * MI, inodes=9), "uid-be": PodUsage(disk=MI, inodes=1)}
    assert names(rank([BEST_EFFORT, GUARANTEED], usage, "ephemeral-storage")) == ["guar", "be"]
    assert names(rank([BEST_EFFORT, GUARANTEED], usage, "inodes")) == ["guar", "be"]
    capped = pod("capped", requests={"ephemeral-storage": "1Gi"})
    usage["uid-capped"] = PodUsage(disk=900 * MI)
    assert names(rank([capped, BEST_EFFORT], usage, "ephemeral-storage")) == ["be", "capped"]


def test_disk_usage_of_volumes_and_logs(tmp_path: Any) -> None:
    ctx: Any = SimpleNamespace(data_dir=str(tmp_path))
    p = pod("x")
    vol = tmp_path / "pods" / "uid-x" / "volumes" / "scratch"
    vol.mkdir(parents=True)
    (vol / "big").write_bytes(b"\1" * (1 << 20))
    logs = tmp_path / "logs" / "ns_x_uid-x" / "c"
    logs.mkdir(parents=True)
    (logs / "0.log").write_bytes(b"\1" * 8192)
    usage: dict[str, PodUsage] = {}
    add_disk_usage(ctx, [p, pod("empty")], usage)
    assert usage["uid-x"].disk >= (1 << 20) + 8192 and usage["uid-x"].inodes == 5  # volumes, scratch, big, c, 0.log
    assert usage["uid-empty"].disk == 0


def test_candidates_skip_finished_and_deleting() -> None:
    pods = [BEST_EFFORT, pod("done", phase="Failed"), pod("ok", phase="Succeeded"), pod("bye", deleting=True)]
    assert names(candidates(pods)) == ["be"]


def test_pod_request_counts_init_containers() -> None:
    p = pod("x", requests={"memory": "10Mi"})
    p["spec"]["initContainers"] = [{"name": "i", "resources": {"limits": {"memory": "30Mi"}}}]
    assert pod_request(p, "memory") == 30 * MI


def test_upstream_message() -> None:
    t = parse_thresholds("memory.available<100Mi")[0]
    msg = eviction_message(BEST_EFFORT, t, Observation(80 * MI + 512 * 1024, 1 << 30),
                           PodUsage(memory=3 * MI, containers={"c": 3 * MI}))
    assert msg == ("The node was low on resource: memory. Threshold quantity: 100Mi, available: 82432Ki. "
                   "Container c was using 3Mi, request is 0, has larger consumption of memory. ")
    under = eviction_message(BURSTABLE, t, Observation(1 * MI, 1 << 30), PodUsage(memory=MI, containers={"c": MI}))
    assert under == "The node was low on resource: memory. Threshold quantity: 100Mi, available: 1Mi. "
    disk = parse_thresholds("nodefs.available<10%")[0]
    assert eviction_message(BEST_EFFORT, disk, Observation(1 << 30, 100 << 30), PodUsage()).startswith(
        "The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi, available: 1Gi. ")
    pids = parse_thresholds("pid.available<1000")[0]
    assert eviction_message(BEST_EFFORT, pids, Observation(10, 4000), PodUsage()) == (
        "The node was low on resource: pids. Threshold quantity: 1000, available: 10. ")


def test_default_thresholds_do_not_fire_on_this_machine(tmp_path: Any) -> None:
    """Guard for every other test: the defaults must not evict on a healthy CI machine."""
    st = os.statvfs(tmp_path)
    if st.f_bavail / st.f_blocks < 0.11:
        pytest.skip("this machine's disk is nearly full: the defaults rightly report pressure")
    met = thresholds_met(parse_thresholds(DEFAULT_EVICTION_HARD), observe(str(tmp_path)))
    assert [t.signal for t in met if t.signal != "memory.available"] == []


def test_admission_under_pressure_like_upstream() -> None:
    memory, disk = Pressure(memory=True), Pressure(disk=True)
    assert admit(BEST_EFFORT, Pressure()) is None
    assert admit(BEST_EFFORT, memory) == "The node had condition: [MemoryPressure]. "
    assert admit(BURSTABLE, memory) is None and admit(GUARANTEED, memory) is None
    tolerant = pod("tolerant")
    tolerant["spec"]["tolerations"] = [{"key": "node.kubernetes.io/memory-pressure", "operator": "Exists",
                                        "effect": "NoSchedule"}]
    assert admit(tolerant, memory) is None
    # Any other pressure turns every pod away; critical pods always start.
    assert admit(GUARANTEED, disk) == "The node had condition: [DiskPressure]. "
    assert admit(tolerant, Pressure(memory=True, pid=True)) == \
        "The node had condition: [MemoryPressure PIDPressure]. "
    assert admit(pod("critical", priority=2_000_001_000), disk) is None


def test_allocatable_reserves_hard_thresholds() -> None:
    cap = {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "100Gi", "pods": "110"}
    assert allocatable(cap, parse_thresholds(DEFAULT_EVICTION_HARD)) == {
        "cpu": "4", "memory": "8092Mi", "ephemeral-storage": "90Gi", "pods": "110"}
    assert allocatable(cap, []) == cap
    assert allocatable({"memory": "100Ki"}, parse_thresholds("memory.available<1Gi")) == {"memory": "0"}


def test_local_storage_limits(tmp_path: Any) -> None:
    scratch = pod("scratch")
    scratch["spec"]["volumes"] = [{"name": "s", "emptyDir": {"sizeLimit": "1024Ki"}},
                                  {"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "1Ki"}}]
    logs = pod("logs", limits={"ephemeral-storage": "64Ki"})
    fine = pod("fine", limits={"ephemeral-storage": "10Mi"})
    vols = tmp_path / "pods" / "uid-scratch" / "volumes"
    (vols / "s").mkdir(parents=True)
    (vols / "m").mkdir()
    (vols / "m" / "f").write_bytes(b"\1" * 8192)  # a tmpfs one is the kernel's to limit
    pods = [scratch, logs, fine, BEST_EFFORT]
    assert local_storage_evictions(str(tmp_path), pods) == []
    (vols / "s" / "f").write_bytes(b"\1" * (2 << 20))
    log_dir = tmp_path / "logs" / "ns_logs_uid-logs" / "c"
    log_dir.mkdir(parents=True)
    (log_dir / "0.log").write_bytes(b"\1" * (1 << 20))
    assert [(p["metadata"]["name"], m) for p, m in local_storage_evictions(str(tmp_path), pods)] == [
        ("scratch", 'Usage of EmptyDir volume "s" exceeds the limit "1Mi". '),
        ("logs", "Pod ephemeral local storage usage exceeds the total limit of containers 64Ki. ")]
    # Already evicted: not again.
    scratch["status"]["phase"] = "Failed"
    assert [p["metadata"]["name"] for p, _ in local_storage_evictions(str(tmp_path), pods)] == ["logs"]


def test_pressure_outlives_its_signal_for_the_transition_period() -> None:
    memory = parse_thresholds("memory.available<1Gi")
    seen: dict[str, float] = {}
    assert not held_pressure([], seen, 0.0, 300).memory
    assert held_pressure(memory, seen, 10.0, 300).memory
    assert held_pressure([], seen, 309.0, 300).memory  # clear for 299 s: still on
    assert not held_pressure([], seen, 310.0, 300).memory
    assert held_pressure(memory, seen, 311.0, 0).memory and not held_pressure([], seen, 311.0, 0).memory


@pytest.mark.parametrize(("text", "seconds"), [("5m0s", 300), ("30s", 30), ("1h30m", 5400), ("500ms", 0.5),
                                               ("0", 0), ("1.5s", 1.5)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bad_duration_is_a_config_failure() -> None:
    with pytest.raises(Failure) as info:
        duration_flag("--eviction-pressure-transition-period", "5 minutes")
    assert "--eviction-pressure-transition-period" in str(info.value) and "5 minutes" in str(info.value)
