"""Rootfs assembly and PID 1's setup, against the recording syscall fake."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from timonel.node_agent.runtime.container import init as init_
from timonel.node_agent.runtime.container import launch, rootfs
from timonel.node_agent.runtime.container.rootfs import RootfsPlan, copy_layers, secure_join
from timonel.node_agent.runtime.container.spec import ContainerSpec, Mount, Rlimit, User
from timonel.node_agent.runtime.linux import ExecCalled, FakeSyscalls
from timonel.node_agent.runtime.linux.constants import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWUTS,
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
)


def test_secure_join_keeps_symlinks_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/", root / "escape")
    os.symlink("../../../../", root / "etc" / "up")
    os.symlink("/etc", root / "abs")
    assert secure_join(str(root), "/escape/etc/passwd") == str(root / "etc/passwd")
    assert secure_join(str(root), "/etc/up/x") == str(root / "x")
    assert secure_join(str(root), "/abs/hosts") == str(root / "etc/hosts")
    assert secure_join(str(root), "/../../a/./b") == str(root / "a/b")
    os.symlink("loop", root / "loop")
    with pytest.raises(OSError) as e:
        secure_join(str(root), "/loop/x")
    assert e.value.errno == errno.ELOOP


def test_copy_layers_honours_whiteouts(tmp_path: Path) -> None:
    lower, upper, dest = tmp_path / "l1", tmp_path / "l2", tmp_path / "dest"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc/keep").write_text("keep")
    (lower / "etc/gone").write_text("old")
    (lower / "opaque").mkdir()
    (lower / "opaque/old").write_text("old")
    (lower / "aufs").mkdir()
    (lower / "aufs/old").write_text("old")
    (lower / "bin").mkdir()
    (lower / "bin/tool").write_text("#!/bin/sh\n")
    os.chmod(lower / "bin/tool", 0o755)
    os.symlink("tool", lower / "bin/alias")
    (upper / "etc").mkdir(parents=True)
    os.mknod(upper / "etc/gone", stat.S_IFCHR | 0o600, 0)  # overlay whiteout (no CAP_MKNOD needed)
    (upper / "opaque").mkdir()
    try:
        os.setxattr(upper / "opaque", "trusted.overlay.opaque", b"y")
    except PermissionError:  # trusted.* needs CAP_SYS_ADMIN; userxattr overlays use user.*
        os.setxattr(upper / "opaque", "user.overlay.opaque", b"y")
    (upper / "opaque/new").write_text("new")
    (upper / "aufs").mkdir()
    (upper / "aufs/.wh..wh..opq").touch()
    (upper / "aufs/fresh").write_text("fresh")
    (upper / ".wh.bin").touch()
    copy_layers([str(upper), str(lower)], str(dest))  # top first
    assert (dest / "etc/keep").read_text() == "keep"
    assert not (dest / "etc/gone").exists()
    assert sorted(os.listdir(dest / "opaque")) == ["new"]
    assert sorted(os.listdir(dest / "aufs")) == ["fresh"]
    assert not (dest / "bin").exists()
    copy_layers([str(lower)], str(tmp_path / "d2"))
    assert os.readlink(tmp_path / "d2/bin/alias") == "tool"
    assert stat.S_IMODE(os.stat(tmp_path / "d2/bin/tool").st_mode) == 0o755


def plan_for(tmp_path: Path, **kw: object) -> RootfsPlan:
    layer = tmp_path / "layer"
    (layer / "bin").mkdir(parents=True, exist_ok=True)
    state = tmp_path / "state"
    for d in ("rootfs", "upper", "work"):
        (state / d).mkdir(parents=True, exist_ok=True)
    hosts = state / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    defaults: dict = dict(root=str(state / "rootfs"), layers=[str(layer)], upper=str(state / "upper"),
                          work=str(state / "work"), copy_dir=str(state / "rootfs-copy"),
                          etc_files={"/etc/hosts": str(hosts)})
    defaults.update(kw)
    return RootfsPlan(**defaults)


def test_mount_rootfs_sequence(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    plan = plan_for(tmp_path, mounts=[Mount(str(data), "/data", read_only=True)])
    sys = FakeSyscalls()
    rootfs.mount_rootfs(sys, plan)
    mounts = sys.find("mount")
    assert mounts[0] == (None, "/", None, MS_REC | MS_PRIVATE, None)  # private before anything
    _src, target, fstype, flags, opts = mounts[1]
    assert (fstype, target, flags) == ("overlay", plan.root, MS_NODEV)
    assert opts == f"lowerdir={plan.layers[0]},upperdir={plan.upper},workdir={plan.work}"
    by_target: dict = {}
    for m in mounts[2:]:  # the first mount on each target (a remount may follow)
        by_target.setdefault(m[1][len(plan.root):], m)
    assert by_target["/proc"][2] == "proc"
    assert by_target["/sys"][3] & MS_RDONLY
    assert by_target["/dev"][2] == "tmpfs" and by_target["/dev"][3] & MS_NODEV  # no mknod'ed disks
    assert not by_target["/dev/pts"][3] & MS_NODEV
    assert "newinstance" in by_target["/dev/pts"][4]
    assert by_target["/dev/shm"][2] == "tmpfs" and by_target["/dev/mqueue"][2] == "mqueue"
    for dev in ("null", "zero", "full", "random", "urandom", "tty"):
        assert by_target[f"/dev/{dev}"][0] == f"/dev/{dev}"
    assert by_target["/etc/hosts"][0] == plan.etc_files["/etc/hosts"]
    data_mounts = [m for m in mounts if m[1] == plan.root + "/data"]
    assert data_mounts[0][3] == MS_BIND | MS_REC
    assert data_mounts[1][3] & (MS_REMOUNT | MS_RDONLY | MS_NODEV) == MS_REMOUNT | MS_RDONLY | MS_NODEV
    assert os.readlink(Path(plan.root) / "dev/ptmx") == "pts/ptmx"
    assert os.readlink(Path(plan.root) / "dev/fd") == "/proc/self/fd"


def test_mount_target_symlink_cannot_reach_the_host(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, mounts=[Mount(str(tmp_path), "/evil/x")])
    os.symlink("/", Path(plan.root) / "evil")
    sys = FakeSyscalls()
    rootfs.mount_rootfs(sys, plan)
    targets = [m[1] for m in sys.find("mount")]
    assert plan.root + "/x" in targets
    assert "/x" not in targets


def test_sys_fs_cgroup_is_mounted_read_only(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, cgroup_mounts=[["memory", "cgroup", "memory"], ["unified", "cgroup2", ""]],
                    cgroup_links={"mem": "memory"})
    sys = FakeSyscalls()
    rootfs.mount_rootfs(sys, plan)
    base = plan.root + "/sys/fs/cgroup"
    assert not [m for m in sys.find("mount") if m[1].startswith(base)]  # after the cgroup join, not here
    rootfs.mount_cgroup_fs(sys, plan)
    mine = [m for m in sys.find("mount") if m[1].startswith(base)]
    assert [(m[1][len(base):], m[2]) for m in mine] == [("", "tmpfs"), ("/memory", "cgroup"),
                                                        ("/unified", "cgroup2"), ("", None)]
    assert mine[1][4] == "memory" and mine[1][3] & MS_RDONLY and mine[-1][3] & MS_RDONLY
    assert os.readlink(base + "/mem") == "memory"
    v2 = FakeSyscalls()
    v2_plan = plan_for(tmp_path / "v2", cgroup_mounts=[["", "cgroup2", ""]])
    rootfs.mount_rootfs(v2, v2_plan)
    rootfs.mount_cgroup_fs(v2, v2_plan)
    assert [m[2] for m in v2.find("mount") if m[1].endswith("/sys/fs/cgroup")] == ["cgroup2"]


def test_cgroup_v1_hierarchies_are_the_containers_own_dirs_bound_read_only(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, cgroup_mounts=[["memory", "cgroup", "memory"], ["pids", "cgroup", "pids"]])
    dirs = ["/sys/fs/cgroup/memory/pod/c", "/sys/fs/cgroup/pids/pod/c"]
    sys = FakeSyscalls()
    rootfs.mount_cgroup_fs(sys, plan, dirs)
    base = plan.root + "/sys/fs/cgroup"
    mine = [m for m in sys.find("mount") if m[1].startswith(base)]
    assert [(m[0], m[1][len(base):], m[2]) for m in mine] == [
        ("tmpfs", "", "tmpfs"), ("/sys/fs/cgroup/memory/pod/c", "/memory", None), (None, "/memory", None),
        ("/sys/fs/cgroup/pids/pod/c", "/pids", None), (None, "/pids", None), (None, "", None)]
    assert mine[1][3] == MS_BIND and all(m[3] & MS_REMOUNT and m[3] & MS_RDONLY for m in mine[2::2])
    privileged = FakeSyscalls()
    plan.privileged = True
    rootfs.mount_cgroup_fs(privileged, plan, dirs)
    assert not [m for m in privileged.find("mount") if m[1].startswith(base + "/") and m[3] & MS_RDONLY]


def test_missing_bind_source_is_reported(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, mounts=[Mount("/no/such/dir", "/data")])
    with pytest.raises(OSError, match="/no/such/dir"):
        rootfs.mount_rootfs(FakeSyscalls(), plan)


def test_overlay_failure_falls_back_to_a_copy(tmp_path: Path) -> None:
    plan = plan_for(tmp_path)
    (Path(plan.layers[0]) / "bin/sh").write_text("sh")
    sys = FakeSyscalls(fail={"mount:overlay": OSError(errno.EINVAL, "overlay on overlay")})
    rootfs.mount_rootfs(sys, plan)
    assert (Path(plan.copy_dir) / "bin/sh").read_text() == "sh"
    assert sys.find("mount")[2] == (plan.copy_dir, plan.root, None, MS_BIND | MS_REC, None)
    assert sys.find("mount")[3] == (None, plan.root, None, MS_REMOUNT | MS_BIND | MS_NODEV, None)


def test_bad_layers_are_an_error_not_a_copy(tmp_path: Path) -> None:
    plan = plan_for(tmp_path)
    sys = FakeSyscalls(fail={"mount:overlay": FileNotFoundError(errno.ENOENT, "No such file or directory")})
    with pytest.raises(OSError, match="mounting the overlay rootfs: No such file or directory; check the image"):
        rootfs.mount_rootfs(sys, plan)
    assert not os.path.exists(plan.copy_dir)


def test_long_layer_lists_mount_with_relative_paths(tmp_path: Path) -> None:
    layers = []
    for i in range(90):
        d = tmp_path / "layers" / f"{'x' * 30}{i}"
        d.mkdir(parents=True)
        layers.append(str(d))
    plan = plan_for(tmp_path, layers=layers)
    sys = FakeSyscalls()
    rootfs.mount_overlay(sys, plan)
    _, _, _, _, data = sys.find("mount")[0]
    assert len(data) < 4096 and str(tmp_path) not in data
    assert [c[0] for c in sys.calls] == ["chdir", "mount", "chdir"]


def test_pivot_detaches_the_old_root(tmp_path: Path) -> None:
    sys = FakeSyscalls()
    rootfs.pivot(sys, "/new", read_only=True)
    assert sys.calls == [("mount", ("/new", "/new", None, MS_BIND | MS_REC, None)),
                         ("chdir", ("/new",)), ("pivot_root", (".", ".")), ("umount2", (".", MNT_DETACH)),
                         ("chdir", ("/",)), ("mount", (None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY, None))]


def test_init_setup_order_and_exec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    procs = [tmp_path / "cg1.procs", tmp_path / "cg2.procs"]
    for p in procs:
        p.touch()
    spec = ContainerSpec(id="c1", args=["sh", "-c", "true"], rootfs_layers=[str(tmp_path / "layer")],
                         hostname="box", user=User(uid=1000, gid=1000), rlimits=[Rlimit("nofile", 64, 64)],
                         env={"A": "1"})
    state = tmp_path / "state"
    for d in ("rootfs", "upper", "work"):
        (state / d).mkdir(parents=True)
    (tmp_path / "layer/bin").mkdir(parents=True)
    plan, _caps = launch.build(spec, str(state), "timonel/c1", [str(p) for p in procs])
    cfg = launch.init_config_from_dict(plan["init"])
    sys = FakeSyscalls()
    # after pivot_root the fake is still on the host: resolve the binary in the rootfs
    monkeypatch.setattr(init_, "find_executable", lambda name, path: "/bin/sh")
    joined_before_cgroupns = []
    real_unshare = sys.unshare

    def unshare(flags: int) -> None:
        if flags & CLONE_NEWCGROUP:
            joined_before_cgroupns.append([p.read_text() for p in procs])
        real_unshare(flags)

    monkeypatch.setattr(sys, "unshare", unshare)
    start_r, start_w = os.pipe()
    os.write(start_w, b"c")  # the runtime's word: the cgroup exists
    exe, env = init_.setup(sys, cfg, start_r)
    assert joined_before_cgroupns == [["0", "0"]]
    assert [f for (f,) in sys.find("unshare")] == [CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS,
                                                 CLONE_NEWCGROUP]
    names = sys.names()
    assert names.index("set_pdeathsig") < names.index("unshare") < names.index("sethostname")
    # the rootfs is built while the runtime makes the cgroup; the cgroup mounts come after the join
    mounts = sys.find("mount")
    assert mounts[1][2] == "overlay"
    os.write(start_w, b"s")
    assert os.read(start_r, 1) == b"s"  # the start byte is left for run() to wait on
    assert names.index("loopback_up") < names.index("pivot_root") < names.index("setrlimit")
    assert sys.find("sethostname") == [("box",)]
    assert env["A"] == "1" and env["HOSTNAME"] == "box" and "PATH" in env
    created = len(sys.calls)
    assert "capbset_drop" in sys.names() and sys.names()[-1] == "ambient_clear"  # at create: off the start path
    with pytest.raises(ExecCalled) as done:
        init_.finish(sys, cfg, exe, env)
    assert done.value.argv == ["sh", "-c", "true"]
    assert "capbset_drop" not in sys.names()[created:]
    assert sys.uid == 1000 and sys.no_new_privs
    assert sys.names()[-2:] == ["seccomp_load", "execve"] or "seccomp_load" not in sys.names()


def test_init_gives_up_when_the_runtime_has_no_cgroup(tmp_path: Path) -> None:
    start_r, start_w = os.pipe()
    os.write(start_w, b"x")
    procs = tmp_path / "cgroup.procs"
    with pytest.raises(init_.InitError, match="could not make the container's cgroup"):
        init_.join_cgroup(FakeSyscalls(), [str(procs)], start_r)
    assert not procs.exists()
    os.close(start_w)
    with pytest.raises(init_.InitError, match="went away"):
        init_.join_cgroup(FakeSyscalls(), [str(procs)], start_r)


def test_joined_namespaces_are_not_recreated(tmp_path: Path) -> None:
    spec = ContainerSpec(id="c1", args=["true"], rootfs_layers=["/l"], hostname="pod",
                         namespaces={"net": "/ns/net", "ipc": "/ns/ipc", "uts": "/ns/uts"})
    (tmp_path / "s").mkdir()
    plan, _ = launch.build(spec, str(tmp_path / "s"), "x", [])
    assert plan["join"] == {"net": "/ns/net", "ipc": "/ns/ipc", "uts": "/ns/uts"}
    assert plan["init"]["new_namespaces"] == []  # so no sethostname: the pod's UTS is shared
    assert (tmp_path / "s/hostname").read_text() == "pod\n"
    assert "127.0.1.1\tpod" in (tmp_path / "s/hosts").read_text()


def test_find_executable_explains_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    tool = tmp_path / "bin/tool"
    tool.write_text("")
    os.chmod(tool, 0o755)
    assert init_.find_executable("tool", f"/nope:{tmp_path}/bin") == str(tool)
    with pytest.raises(init_.InitError, match="executable file not found: nope in PATH="):
        init_.find_executable("nope", str(tmp_path / "bin"))


def test_staged_proc_and_dev_are_built_once_and_attached(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    (scratch / "proc/sys").mkdir(parents=True)  # what the procfs would show
    (scratch / "proc/keys").touch()
    stager = FakeSyscalls()
    staged = rootfs.stage_kernel_mounts(stager, str(scratch))
    staged_targets: dict = {}  # the first mount on each target (a remount may follow)
    for m in stager.find("mount"):
        if m[1].startswith(str(scratch)):
            staged_targets.setdefault(m[1][len(str(scratch)):], m)
    assert staged_targets["/proc"][2] == "proc" and staged_targets["/dev"][2] == "tmpfs"
    assert staged_targets["/proc/keys"][0] == "/dev/null" and staged_targets["/proc/sys"][0] == str(scratch / "proc/sys")
    assert "/dev/null" in staged_targets and "/dev/pts" in staged_targets
    assert "/dev/mqueue" not in staged_targets  # shows the mounter's IPC namespace: made after the pod's is joined
    assert [p for (p,) in stager.find("clone_tree")] == [str(scratch / "proc"), str(scratch / "dev")]

    plan = plan_for(tmp_path / "c")
    (Path(plan.root) / "sys/firmware").mkdir(parents=True)  # what the sysfs would show
    sys = FakeSyscalls()
    staged = rootfs.StagedMounts(*[os.open(os.devnull, os.O_RDONLY) for _ in range(2)])
    rootfs.mount_rootfs(sys, plan, staged)
    assert sys.find("attach_tree") == [(staged.proc, plan.root + "/proc"), (staged.dev, plan.root + "/dev")]
    targets = [m[1][len(plan.root):] for m in sys.find("mount")]
    assert "/proc" not in targets and "/dev" not in targets and "/dev/null" not in targets
    assert "/sys" in targets and "/dev/mqueue" in targets and "/sys/firmware" in targets
    assert "/proc/sys" not in targets  # the staged tree has it read-only already
    with pytest.raises(OSError):
        os.fstat(staged.proc)  # closed: the trees are attached (or dropped) by now


def test_staged_mounts_are_not_used_when_the_plan_differs(tmp_path: Path) -> None:
    def attached(**kw: object) -> list[str]:
        sys = FakeSyscalls()
        plan = plan_for(tmp_path / str(len(os.listdir(tmp_path))), **kw)
        rootfs.mount_rootfs(sys, plan, rootfs.StagedMounts(*[os.open(os.devnull, os.O_RDONLY) for _ in range(2)]))
        return [t[len(plan.root):] for _, t in sys.find("attach_tree")]

    assert attached() == ["/proc", "/dev"]
    assert attached(privileged=True) == []  # unmasked /proc, the host's devices
    assert attached(masked_paths=["/proc/kcore"]) == ["/dev"]
    assert attached(readonly_paths=[]) == ["/dev"]
    assert attached(masked_paths=[*rootfs.MASKED_PATHS, "/etc/secret"]) == ["/proc", "/dev"]
