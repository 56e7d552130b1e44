"""Isolation seen from inside a busybox container: pid, hostname, mounts, capabilities, seccomp."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from timonel.node_agent.runtime.cgroups import Resources
from timonel.node_agent.runtime.container import ContainerError, Mount, Rlimit, Seccomp, User
from timonel.node_agent.runtime.container.capabilities import effective_set

from .conftest import Runtime, log_text, needs_root

pytestmark = needs_root


def status_field(text: str, name: str) -> str:
    m = re.search(rf"^{name}:\s*(.*)$", text, re.M)
    assert m, f"{name} not in /proc/self/status:\n{text}"
    return m.group(1).strip()


def test_pid1_is_the_workload_with_its_own_hostname(rt: Runtime) -> None:
    rt.containers.create(rt.spec("iso1", ["sleep", "1000"], hostname="box-one"))
    rt.containers.start("iso1")
    r = rt.containers.exec_sync("iso1", ["cat", "/proc/1/cmdline"], timeout=20)
    assert r.exit_code == 0 and r.stdout == b"sleep\x001000\x00"
    r = rt.containers.exec_sync("iso1", ["hostname"], timeout=20)
    assert r.stdout.decode().strip() == "box-one"
    assert os.uname().nodename != "box-one"
    rt.containers.create(rt.spec("nameless", ["hostname"]))
    rt.containers.start("nameless")
    with open(rt.containers.wait("nameless", 20).log_path) as f:
        assert f.read().endswith(" stdout F nameless\n")  # its id, not the host's name
    r = rt.containers.exec_sync("iso1", ["ps", "-o", "pid,args"], timeout=20)
    pids = [ln.split()[0] for ln in r.stdout.decode().splitlines()[1:]]
    assert pids[0] == "1" and len(pids) <= 3  # sleep, the exec'd ps (and maybe its shell)


def test_only_its_own_mounts_and_no_host_files(rt: Runtime, tmp_path: Path) -> None:
    marker = tmp_path / "host-marker-file"
    marker.write_text("secret")
    code, out = rt.run("iso2", ["sh", "-c", f"cat /proc/self/mountinfo; echo ---; ls /; echo ---; "
                                            f"cat {marker} 2>&1; ls /work /tmp/pytest-of-root 2>&1; true"])
    assert code == 0
    mountinfo, listing, attempts = out.split("---\n")
    points = [ln.split()[4] for ln in mountinfo.splitlines()]
    assert points[0] == "/" and " overlay " in mountinfo.splitlines()[0]
    allowed = re.compile(r"^/(proc|sys|dev|etc/(hosts|hostname|resolv.conf))(/|$)|^/$")
    assert all(allowed.match(p) for p in points), points
    assert set(listing.split()) <= {"bin", "sbin", "usr", "etc", "proc", "sys", "dev", "tmp", "root", "home"}
    assert "secret" not in attempts
    assert attempts.count("No such file or directory") == 3


def test_default_security_from_proc_self_status(rt: Runtime) -> None:
    code, out = rt.run("iso3", ["cat", "/proc/self/status"])
    assert code == 0
    expected = effective_set([], [], privileged=False)
    assert int(status_field(out, "CapEff"), 16) == expected == 0xA80425FB
    assert int(status_field(out, "CapBnd"), 16) == expected
    assert int(status_field(out, "CapAmb"), 16) == 0
    assert status_field(out, "NoNewPrivs") == "1"
    assert status_field(out, "Seccomp") == "2"
    assert status_field(out, "Uid").split() == ["0"] * 4
    assert int(status_field(out, "SigIgn"), 16) == 0  # nothing of Python's SIGPIPE ignoring leaks
    assert int(status_field(out, "SigBlk"), 16) == 0


def test_user_groups_and_capabilities_for_a_non_root_user(rt: Runtime) -> None:
    code, out = rt.run("iso4", ["sh", "-c", "cat /proc/self/status; id"],
                       user=User(uid=1000, gid=1000, additional_gids=[5]), cap_drop=["NET_RAW"])
    assert code == 0
    assert status_field(out, "Uid").split() == ["1000"] * 4
    assert status_field(out, "Gid").split() == ["1000"] * 4
    assert status_field(out, "Groups") == "5"
    assert int(status_field(out, "CapEff"), 16) == 0  # as Docker: a non-root user gets none
    assert int(status_field(out, "CapBnd"), 16) == effective_set([], ["NET_RAW"], False)
    assert "uid=1000(user) gid=1000(user) groups=5(tty)" in out


def test_user_names_resolve_in_the_image(rt: Runtime) -> None:
    rt.containers.create(rt.spec("named", ["sh", "-c", "id; echo $HOME; sleep 1000"], user=User(name="user:tty")))
    rt.containers.start("named")
    r = rt.containers.exec_sync("named", ["id"], timeout=20)
    assert r.stdout.decode().strip() == "uid=1000(user) gid=5(tty)"  # exec runs as the same user
    rt.containers.stop("named", timeout=0)
    assert log_text(rt.containers.status("named").log_path).splitlines() == ["uid=1000(user) gid=5(tty)", "/home/user"]
    with pytest.raises(ContainerError, match="user 'ghost' not found in the image's /etc/passwd"):
        rt.containers.create(rt.spec("ghost", ["true"], user=User(name="ghost")))


def test_mount_and_unshare_fail_in_a_default_container(rt: Runtime) -> None:
    code, out = rt.run("iso5", ["sh", "-c", "mkdir -p /mnt; mount -t tmpfs none /mnt; echo mount=$?; "
                                            "unshare -m true; echo unshare=$?; "
                                            "unshare -U true; echo userns=$?"])
    assert code == 0
    assert "mount=1" in out and "permission denied" in out.lower()
    assert "unshare=1" in out and "userns=1" in out
    assert out.count("Operation not permitted") >= 2


def test_mknod_keeps_the_capability_but_no_device_opens(rt: Runtime) -> None:
    # CAP_MKNOD is in Docker's default set; the host's disk must stay out of reach anyway.
    disk = os.stat("/dev/vda" if os.path.exists("/dev/vda") else "/dev/null").st_rdev
    major, minor = os.major(disk), os.minor(disk)
    script = (f"for d in /tmp /dev /rw; do mknod $d/disk b {major} {minor} && echo made-in-$d; "
              f"head -c1 $d/disk >/dev/null && echo READ-$d; done; head -c1 /dev/zero | wc -c")
    code, out = rt.run("mknod", ["sh", "-c", script], mounts=[Mount(rt.root, "/rw")])
    assert code == 0, out
    assert "made-in-/tmp" in out and "made-in-/dev" in out and "made-in-/rw" in out
    assert "READ-" not in out and out.count("Permission denied") == 3
    # The bind-mounted /dev/zero still works. "1" is on stdout, the refusals on stderr: the
    # shim reads both pipes, so their order in the log depends on scheduling.
    assert "1" in out.splitlines()


def test_cgroup_namespace_and_sys_fs_cgroup(rt: Runtime) -> None:
    limit = 64 << 20
    code, out = rt.run("cgns", ["sh", "-c", "cat /proc/self/cgroup; echo ---; ls /sys/fs/cgroup; echo ---; "
                                            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                                            "/sys/fs/cgroup/memory.max 2>/dev/null; echo ---; "
                                            "echo 1 > /sys/fs/cgroup/pids/pids.max; "
                                            "echo 1 > /sys/fs/cgroup/pids.max; true"],
                       resources=Resources(memory_limit=limit))
    assert code == 0, out
    own, listing, limit_seen, attempts = out.split("---\n")
    assert all(line.endswith(":/") for line in own.split())  # its cgroup is its root
    assert int(limit_seen.split()[0]) == limit  # the JVM and friends can size themselves
    assert "memory" in listing.split() or "memory.max" in listing.split()
    assert "Read-only file system" in attempts


def test_privileged_gets_everything_and_unconfined_no_filter(rt: Runtime) -> None:
    code, out = rt.run("iso6", ["sh", "-c", "cat /proc/self/status; mount -t tmpfs none /tmp && echo mounted"],
                       privileged=True)
    assert code == 0, out
    assert status_field(out, "Seccomp") == "0"
    with open("/proc/self/status") as f:  # all we have: some VMs withhold CAP_SYS_RESOURCE
        ours = int(status_field(f.read(), "CapPrm"), 16)
    assert int(status_field(out, "CapEff"), 16) == effective_set([], [], privileged=True) & ours
    assert "mounted" in out
    code, out = rt.run("iso7", ["cat", "/proc/self/status"], seccomp=Seccomp(type="Unconfined"))
    assert status_field(out, "Seccomp") == "0"
    assert int(status_field(out, "CapEff"), 16) == 0xA80425FB


def test_localhost_seccomp_profile(rt: Runtime, tmp_path: Path) -> None:
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}))
    code, out = rt.run("iso8", ["sh", "-c", "mkdir /tmp/x; echo mkdir=$?; touch /tmp/y && echo touched"],
                       seccomp=Seccomp(type="Localhost", localhost_path=str(profile)))
    assert code == 0
    assert "mkdir=1" in out and "Permission denied" in out and "touched" in out


def test_readonly_rootfs_bind_mounts_and_rlimits(rt: Runtime, tmp_path: Path) -> None:
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "data.txt").write_text("from host")
    code, out = rt.run("iso9", ["sh", "-c", "touch /newfile; echo root=$?; echo hi > /rw/out; "
                                            "cat /ro/data.txt; echo x > /ro/data.txt; echo ro=$?; "
                                            "ulimit -n; cat /etc/hostname /etc/hosts"],
                       readonly_rootfs=True, hostname="ro-box",
                       mounts=[Mount(str(rw), "/rw"), Mount(str(ro), "/ro", read_only=True)],
                       rlimits=[Rlimit("nofile", 64, 64)])
    assert code == 0
    assert "root=1" in out and "Read-only file system" in out
    assert (rw / "out").read_text() == "hi\n"
    assert "from host" in out and "ro=1" in out and (ro / "data.txt").read_text() == "from host"
    assert "\n64\n" in out
    assert "ro-box\n" in out and "localhost" in out


def test_env_args_and_working_dir(rt: Runtime) -> None:
    code, out = rt.run("iso10", ["sh", "-c", 'echo "$GREETING $HOSTNAME"; pwd; echo "$HOME"'],
                       env={"GREETING": "hola"}, working_dir="/srv/app", hostname="wd-box")
    assert code == 0
    assert out.splitlines() == ["hola wd-box", "/srv/app", "/root"]
