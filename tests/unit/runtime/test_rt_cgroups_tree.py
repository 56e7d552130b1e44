"""cgroup v1 and v2 drivers against temp-dir trees that look like cgroupfs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from timonel.node_agent.runtime.cgroups import (
    CgroupV1,
    CgroupV2,
    Resources,
    detect,
    shares_to_weight,
    v1,
    v2,
)
from timonel.node_agent.runtime.cgroups.common import blkio_to_io_weight
from timonel.node_agent.runtime.linux import FakeSyscalls

V1_FILES = {
    "memory": ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.usage_in_bytes",
               "memory.stat", "memory.oom_control", "cgroup.event_control"],
    "cpu": ["cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.shares"],
    "cpuacct": ["cpuacct.usage"],
    "pids": ["pids.max", "pids.current"],
    "blkio": ["blkio.weight"],
    "cpuset": ["cpuset.cpus", "cpuset.mems"],
    "freezer": ["freezer.state"],
}
V2_FILES = ["cgroup.controllers", "cgroup.subtree_control", "memory.max", "memory.swap.max",
            "memory.current", "memory.stat", "memory.events", "cpu.max", "cpu.weight", "cpu.stat",
            "pids.max", "pids.current", "io.weight", "cgroup.kill"]


def fake_dir(path: Path, files: list[str]) -> None:
    """What the kernel does on mkdir in cgroupfs: the control files appear."""
    path.mkdir(parents=True, exist_ok=True)
    for name in [*files, "cgroup.procs"]:
        (path / name).touch()


@pytest.fixture
def v1_root(tmp_path: Path) -> Path:
    for ctrl, files in V1_FILES.items():
        fake_dir(tmp_path / ctrl, files)
    (tmp_path / "cpuset" / "cpuset.cpus").write_text("0-1\n")
    (tmp_path / "cpuset" / "cpuset.mems").write_text("0\n")
    fake_dir(tmp_path / "systemd", [])
    fake_dir(tmp_path / "unified", ["cgroup.controllers", "cgroup.kill"])
    return tmp_path


def prepare_v1(root: Path, rel: str) -> None:
    for ctrl, files in V1_FILES.items():
        fake_dir(root / ctrl / rel, files)


def test_detect_picks_v1_when_no_cgroup_controllers_at_root(v1_root: Path) -> None:
    driver = detect(str(v1_root))
    assert isinstance(driver, CgroupV1)
    assert driver.hierarchies["cpu"] == str(v1_root / "cpu")
    assert driver.hierarchies["cpuacct"] == str(v1_root / "cpuacct")  # separate mounts here
    assert driver.unified == str(v1_root / "unified")


def test_detect_picks_v2_on_a_unified_root(tmp_path: Path) -> None:
    fake_dir(tmp_path, V2_FILES)
    assert isinstance(detect(str(tmp_path)), CgroupV2)


def test_v1_combined_mounts_are_one_hierarchy(tmp_path: Path) -> None:
    fake_dir(tmp_path / "cpu,cpuacct", V1_FILES["cpu"] + V1_FILES["cpuacct"])
    os.symlink("cpu,cpuacct", tmp_path / "cpu")
    os.symlink("cpu,cpuacct", tmp_path / "cpuacct")
    driver = CgroupV1.discover(str(tmp_path))
    assert driver.hierarchies["cpu"] == driver.hierarchies["cpuacct"] == str(tmp_path / "cpu,cpuacct")
    assert driver.procs_files("a") == [str(tmp_path / "cpu,cpuacct" / "a" / "cgroup.procs")]


def test_v1_memory_sets_limit_and_memsw(tmp_path: Path) -> None:
    fake_dir(tmp_path, V1_FILES["memory"])
    v1.apply_memory(Resources(memory_limit=32 << 20), str(tmp_path))
    assert (tmp_path / "memory.limit_in_bytes").read_text() == str(32 << 20)
    assert (tmp_path / "memory.memsw.limit_in_bytes").read_text() == str(32 << 20)  # no swap
    v1.apply_memory(Resources(memory_limit=32 << 20, memory_swap_limit=-1), str(tmp_path))
    assert (tmp_path / "memory.memsw.limit_in_bytes").read_text() == "-1"


def test_v1_memory_without_swap_accounting(tmp_path: Path) -> None:
    fake_dir(tmp_path, ["memory.limit_in_bytes"])
    v1.apply_memory(Resources(memory_limit=1 << 20), str(tmp_path))
    assert (tmp_path / "memory.limit_in_bytes").read_text() == str(1 << 20)
    assert not (tmp_path / "memory.memsw.limit_in_bytes").exists()


def test_v1_cpu_quota_period_shares(tmp_path: Path) -> None:
    fake_dir(tmp_path, V1_FILES["cpu"])
    v1.apply_cpu(Resources(cpu_quota=20000, cpu_period=100000, cpu_shares=512), str(tmp_path))
    assert (tmp_path / "cpu.cfs_quota_us").read_text() == "20000"
    assert (tmp_path / "cpu.cfs_period_us").read_text() == "100000"
    assert (tmp_path / "cpu.shares").read_text() == "512"
    v1.apply_cpu(Resources(cpu_quota=-1), str(tmp_path))
    assert (tmp_path / "cpu.cfs_quota_us").read_text() == "-1"


def test_v1_pids_and_blkio(tmp_path: Path) -> None:
    fake_dir(tmp_path, V1_FILES["pids"] + V1_FILES["blkio"])
    v1.apply_pids(Resources(pids_limit=10), str(tmp_path))
    assert (tmp_path / "pids.max").read_text() == "10"
    v1.apply_pids(Resources(pids_limit=0), str(tmp_path))
    assert (tmp_path / "pids.max").read_text() == "max"
    v1.apply_blkio(Resources(io_weight=300), str(tmp_path))
    assert (tmp_path / "blkio.weight").read_text() == "300"


def test_v1_unset_settings_touch_nothing(tmp_path: Path) -> None:
    fake_dir(tmp_path, V1_FILES["memory"] + V1_FILES["cpu"] + V1_FILES["pids"])
    for apply in v1.APPLIERS.values():
        apply(Resources(), str(tmp_path))
    assert all(p.read_text() == "" for p in tmp_path.iterdir())


def test_v1_missing_control_file_is_an_error_not_a_new_file(tmp_path: Path) -> None:
    tmp_path.joinpath("cgroup.procs").touch()
    with pytest.raises(OSError):
        v1.apply_pids(Resources(pids_limit=5), str(tmp_path))
    assert not (tmp_path / "pids.max").exists()


def test_v1_create_inherits_cpuset_and_applies_everywhere(v1_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    driver = CgroupV1.discover(str(v1_root))
    real_mkdir = os.mkdir

    def kernel_mkdir(path: str, mode: int = 0o777) -> None:
        # cgroupfs fills a new dir with its control files; a new cpuset's are empty
        real_mkdir(path, mode)
        hierarchy = Path(path).relative_to(v1_root).parts[0]
        fake_dir(Path(path), V1_FILES.get(hierarchy, []))

    monkeypatch.setattr(os, "mkdir", kernel_mkdir)
    driver.create("timonel/pod/c1", Resources(memory_limit=64 << 20, pids_limit=20))
    monkeypatch.undo()
    for d in ("timonel", "timonel/pod", "timonel/pod/c1"):
        assert (v1_root / "cpuset" / d / "cpuset.cpus").read_text() == "0-1"
        assert (v1_root / "cpuset" / d / "cpuset.mems").read_text() == "0"
    assert (v1_root / "memory/timonel/pod/c1/memory.limit_in_bytes").read_text() == str(64 << 20)
    assert (v1_root / "pids/timonel/pod/c1/pids.max").read_text() == "20"
    # every hierarchy, the named systemd one and the hybrid unified one included
    procs = driver.procs_files("timonel/pod/c1")
    assert str(v1_root / "systemd/timonel/pod/c1/cgroup.procs") in procs
    assert str(v1_root / "unified/timonel/pod/c1/cgroup.procs") in procs
    assert len(procs) == len(V1_FILES) + 2


def test_v1_cpuset_of_a_new_leaf_under_an_unfilled_parent_fills_every_level(
        v1_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A concurrent create may have made the pod's cpuset and not yet filled it in: the
    container's create fills in the parent too rather than copying its empty value."""
    driver = CgroupV1.discover(str(v1_root))
    real_mkdir = os.mkdir

    def kernel_mkdir(path: str, mode: int = 0o777) -> None:
        real_mkdir(path, mode)
        fake_dir(Path(path), V1_FILES.get(Path(path).relative_to(v1_root).parts[0], []))

    monkeypatch.setattr(os, "mkdir", kernel_mkdir)
    for ctrl in V1_FILES:
        kernel_mkdir(str(v1_root / ctrl / "pod"))  # made, cpuset not filled in yet
    driver.create("pod/c1")
    driver.create("pod/c2")  # the parent is filled in now: only the leaf is written
    monkeypatch.undo()
    for d in ("pod", "pod/c1", "pod/c2"):
        assert (v1_root / "cpuset" / d / "cpuset.cpus").read_text() == "0-1"
        assert (v1_root / "cpuset" / d / "cpuset.mems").read_text() == "0"


def test_v1_join_stats_oom_and_remove(v1_root: Path) -> None:
    driver = CgroupV1.discover(str(v1_root))
    prepare_v1(v1_root, "t/c")
    for name in ("systemd", "unified"):
        fake_dir(v1_root / name / "t/c", [])
    driver.join("t/c", 1234)
    assert all(Path(p).read_text() == "1234" for p in driver.procs_files("t/c"))
    mem = v1_root / "memory/t/c"
    (mem / "memory.usage_in_bytes").write_text("1000000\n")
    (mem / "memory.stat").write_text("cache 10\ntotal_inactive_file 200000\n")
    (mem / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (v1_root / "cpuacct/t/c/cpuacct.usage").write_text("123456789\n")
    (v1_root / "pids/t/c/pids.current").write_text("3\n")
    s = driver.stats("t/c")
    assert (s.cpu_usage_ns, s.memory_usage_bytes, s.memory_working_set_bytes) == (123456789, 1000000, 800000)
    assert s.memory_limit_bytes is None  # "unlimited" reads back as ~2^63
    assert (s.pids_current, s.oom_kills) == (3, 2)
    assert driver.oom_kill_count("t/c") == 2
    driver.remove("t/c")
    assert not driver.exists("t/c")
    assert (v1_root / "memory/t").is_dir()  # only the container's own dir goes


def test_v1_oom_notifier_registers_eventfd(v1_root: Path) -> None:
    driver = CgroupV1.discover(str(v1_root))
    prepare_v1(v1_root, "t/c")
    sys = FakeSyscalls()
    efd = driver.oom_notifier("t/c", sys)
    line = (v1_root / "memory/t/c/cgroup.event_control").read_text()
    event_fd, control_fd = line.split()
    assert int(event_fd) == efd and int(control_fd) >= 0
    assert sys.names() == ["eventfd"]


def test_v2_create_enables_controllers_top_down_and_applies(tmp_path: Path) -> None:
    fake_dir(tmp_path, V2_FILES)
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma\n")
    fake_dir(tmp_path / "timonel", V2_FILES)
    (tmp_path / "timonel" / "cgroup.controllers").write_text("cpu io memory pids\n")
    fake_dir(tmp_path / "timonel/pod", V2_FILES)
    (tmp_path / "timonel/pod/cgroup.controllers").write_text("cpu io memory pids\n")
    fake_dir(tmp_path / "timonel/pod/c1", V2_FILES)
    driver = CgroupV2(str(tmp_path))
    res = Resources(memory_limit=32 << 20, cpu_quota=20000, cpu_period=100000, cpu_shares=1024,
                    pids_limit=10, io_weight=500)
    driver.create("timonel/pod/c1", res)
    # a flat file in the fake tree only keeps the last "+controller" written
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+pids"
    assert (tmp_path / "timonel/pod/cgroup.subtree_control").read_text() == "+pids"
    c = tmp_path / "timonel/pod/c1"
    assert (c / "memory.max").read_text() == str(32 << 20)
    assert (c / "memory.swap.max").read_text() == "0"
    assert (c / "cpu.max").read_text() == "20000 100000"
    assert (c / "cpu.weight").read_text() == str(shares_to_weight(1024)) == "39"
    assert (c / "pids.max").read_text() == "10"
    assert (c / "io.weight").read_text() == f"default {blkio_to_io_weight(500)}"
    assert driver.procs_files("timonel/pod/c1") == [str(c / "cgroup.procs")]


def test_v2_unlimited_values(tmp_path: Path) -> None:
    fake_dir(tmp_path, V2_FILES)
    v2.apply_memory(Resources(memory_limit=-1), str(tmp_path))
    v2.apply_cpu(Resources(cpu_quota=-1), str(tmp_path))
    v2.apply_pids(Resources(pids_limit=-1), str(tmp_path))
    assert (tmp_path / "memory.max").read_text() == "max"
    assert (tmp_path / "memory.swap.max").read_text() == "max"
    assert (tmp_path / "cpu.max").read_text() == "max 100000"
    assert (tmp_path / "pids.max").read_text() == "max"


def test_v2_swap_is_memsw_minus_memory(tmp_path: Path) -> None:
    fake_dir(tmp_path, V2_FILES)
    v2.apply_memory(Resources(memory_limit=100, memory_swap_limit=300), str(tmp_path))
    assert (tmp_path / "memory.swap.max").read_text() == "200"


def test_v2_stats_and_oom_from_memory_events(tmp_path: Path) -> None:
    fake_dir(tmp_path / "c", V2_FILES)
    c = tmp_path / "c"
    (c / "memory.current").write_text("5000\n")
    (c / "memory.stat").write_text("anon 10\ninactive_file 1000\n")
    (c / "memory.max").write_text("max\n")
    (c / "cpu.stat").write_text("usage_usec 42\nuser_usec 40\nsystem_usec 2\n")
    (c / "pids.current").write_text("7\n")
    (c / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n")
    driver = CgroupV2(str(tmp_path))
    s = driver.stats("c")
    assert (s.cpu_usage_ns, s.memory_usage_bytes, s.memory_working_set_bytes) == (42000, 5000, 4000)
    assert s.memory_limit_bytes is None and s.pids_current == 7 and s.oom_kills == 1


def test_v2_oom_notifier_watches_memory_events(tmp_path: Path) -> None:
    fake_dir(tmp_path / "c", V2_FILES)
    sys = FakeSyscalls()
    CgroupV2(str(tmp_path)).oom_notifier("c", sys)
    assert sys.find("inotify_watch") == [(str(tmp_path / "c/memory.events"), 0x2)]


def test_v2_oom_notifier_fires_on_change_with_real_inotify(tmp_path: Path) -> None:
    import select

    from timonel.node_agent.runtime.linux import Syscalls

    fake_dir(tmp_path / "c", V2_FILES)
    fd = CgroupV2(str(tmp_path)).oom_notifier("c", Syscalls())
    try:
        assert select.select([fd], [], [], 0)[0] == []
        (tmp_path / "c/memory.events").write_text("oom_kill 1\n")
        assert select.select([fd], [], [], 2)[0] == [fd]
    finally:
        os.close(fd)


def test_v2_kill_uses_cgroup_kill_and_remove_is_recursive(tmp_path: Path) -> None:
    fake_dir(tmp_path / "pod", V2_FILES)
    fake_dir(tmp_path / "pod/c", V2_FILES)
    driver = CgroupV2(str(tmp_path))
    driver.kill("pod", timeout=0.1)
    assert (tmp_path / "pod/cgroup.kill").read_text() == "1"
    driver.remove("pod")
    assert not (tmp_path / "pod").exists()


def test_weight_conversions_match_runc() -> None:
    assert shares_to_weight(2) == 1
    assert shares_to_weight(262144) == 10000
    assert shares_to_weight(1024) == 39
    assert blkio_to_io_weight(10) == 1 and blkio_to_io_weight(1000) == 10000


def test_mount_specs_for_containers(v1_root: Path, tmp_path: Path) -> None:
    specs, links = CgroupV1.discover(str(v1_root)).mount_specs()
    assert ["systemd", "cgroup", "name=systemd"] in specs
    assert ["unified", "cgroup2", ""] in specs and ["memory", "cgroup", "memory"] in specs
    assert links == {}
    combined = tmp_path / "combined"
    fake_dir(combined / "cpu,cpuacct", [])
    os.symlink("cpu,cpuacct", combined / "cpu")
    specs, links = CgroupV1.discover(str(combined)).mount_specs()
    assert specs == [["cpu,cpuacct", "cgroup", "cpu,cpuacct"]]
    assert links == {"cpu": "cpu,cpuacct", "cpuacct": "cpu,cpuacct"}
    assert CgroupV2(str(tmp_path)).mount_specs() == ([["", "cgroup2", ""]], {})
