"""Create/start/stop/remove, exec, logs, restart of the manager, and leaks over many cycles."""

from __future__ import annotations

import gc
import os
import signal
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from timonel.node_agent.runtime.cgroups import Resources
from timonel.node_agent.runtime.container import ContainerError
from timonel.node_agent.runtime.container.logs import parse_line

from .conftest import Runtime, log_text, needs_root

pytestmark = needs_root


def test_exit_code_reason_and_times(rt: Runtime) -> None:
    code, _ = rt.run("ex1", ["sh", "-c", "exit 7"])
    st = rt.containers.status("ex1")
    assert (code, st.reason) == (7, "Error")
    assert 0 < st.created_at <= st.started_at <= st.finished_at
    code, _ = rt.run("ex2", ["true"])
    assert (code, rt.containers.status("ex2").reason) == (0, "Completed")


def test_created_is_not_running_until_start(rt: Runtime, tmp_path: str) -> None:
    st = rt.containers.create(rt.spec("cr", ["sh", "-c", "echo started"]))
    assert st.state == "created" and st.pid
    time.sleep(0.2)
    assert log_text(st.log_path) == ""
    rt.containers.start("cr")
    assert rt.containers.wait("cr", 20).exit_code == 0
    assert log_text(st.log_path) == "started\n"
    with pytest.raises(ContainerError, match="only a created container can start"):
        rt.containers.start("cr")


def test_statuses_of_many_match_each_status(rt: Runtime) -> None:
    """The list path polls the exited pipes of all running containers at once; what it
    says must be what status() says one by one, whatever state each is in."""
    rt.containers.create(rt.spec("st-created", ["sleep", "1000"]))
    rt.containers.create(rt.spec("st-running", ["sleep", "1000"]))
    rt.containers.start("st-running")
    rt.run("st-exited", ["sh", "-c", "exit 3"])
    rt.containers.create(rt.spec("st-shim-killed", ["sleep", "1000"]))
    rt.containers.start("st-shim-killed")
    shim_pid = rt.containers._shim("st-shim-killed")["shim_pid"]
    os.kill(shim_pid, signal.SIGKILL)  # the shim ends without recording an exit
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{shim_pid}") and time.monotonic() < deadline:
        time.sleep(0.01)
    ids = ["st-created", "st-running", "st-exited", "st-shim-killed", "st-missing"]
    many = rt.containers.statuses(ids)
    assert set(many) == set(ids) - {"st-missing"}
    assert {cid: st.state for cid, st in many.items()} == {
        "st-created": "created", "st-running": "running", "st-exited": "exited", "st-shim-killed": "exited"}
    assert (many["st-exited"].exit_code, many["st-shim-killed"].exit_code) == (3, 255)
    assert many["st-shim-killed"].message == "the container's shim died"
    for cid, st in many.items():
        assert st == rt.containers.status(cid)
    rt.containers.stop("st-running", timeout=0)  # the running one ends: the next list says so
    assert rt.containers.statuses(["st-running"])["st-running"].state == "exited"


def test_sigterm_ignoring_pid1_is_killed_after_the_timeout(rt: Runtime) -> None:
    # sleep installs no SIGTERM handler, and PID 1 ignores signals it has no handler for.
    rt.containers.create(rt.spec("term", ["sleep", "1000"]))
    rt.containers.start("term")
    t0 = time.monotonic()
    st = rt.containers.stop("term", timeout=1.0)
    took = time.monotonic() - t0
    assert (st.exit_code, st.reason) == (137, "Error")
    assert 1.0 <= took < 10.0


def test_signal_and_update_resources(rt: Runtime) -> None:
    rt.containers.create(rt.spec("sig", ["sh", "-c", "trap 'echo got-usr1' USR1; while :; do sleep 0.1; done"]))
    rt.containers.start("sig")
    time.sleep(0.3)
    rt.containers.signal("sig", signal.SIGUSR1)
    deadline = time.monotonic() + 20
    while "got-usr1" not in log_text(rt.containers.status("sig").log_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "got-usr1" in log_text(rt.containers.status("sig").log_path)
    rt.containers.update_resources("sig", Resources(memory_limit=48 << 20))
    assert rt.containers.stats("sig").memory_limit_bytes == 48 << 20


def test_sigterm_handler_gets_to_exit_cleanly(rt: Runtime) -> None:
    rt.containers.create(rt.spec("trap", ["sh", "-c", "trap 'echo bye; exit 3' TERM; "
                                                      "while :; do sleep 0.1; done"]))
    rt.containers.start("trap")
    time.sleep(0.3)
    t0 = time.monotonic()
    st = rt.containers.stop("trap", timeout=20)
    assert st.exit_code == 3 and time.monotonic() - t0 < 10
    assert "bye" in log_text(st.log_path)


def test_logs_are_cri_formatted_and_reopenable(rt: Runtime) -> None:
    script = "echo out1; echo err1 >&2; printf partial; sleep 0.5; echo; while :; do sleep 0.05; " \
             "[ -e /tmp/go ] && break; done; echo after-reopen"
    st = rt.containers.create(rt.spec("logs", ["sh", "-c", script]))
    rt.containers.start("logs")
    deadline = time.monotonic() + 20
    while "partial" not in log_text(st.log_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.rename(st.log_path, st.log_path + ".old")
    rt.containers.reopen_log("logs")
    assert rt.containers.exec_sync("logs", ["touch", "/tmp/go"], timeout=20).exit_code == 0
    assert rt.containers.wait("logs", 20).exit_code == 0
    with open(st.log_path + ".old", "rb") as f:
        old = [parse_line(ln) for ln in f]
    assert [(s, full, c) for _, s, full, c in old] == [
        ("stdout", True, b"out1"), ("stderr", True, b"err1"), ("stdout", True, b"partial")]
    assert log_text(st.log_path) == "after-reopen\n"


def test_exec_sync_output_exit_code_timeout_and_input(rt: Runtime) -> None:
    rt.containers.create(rt.spec("ex", ["sleep", "1000"], env={"FOO": "bar"}))
    rt.containers.start("ex")
    r = rt.containers.exec_sync("ex", ["sh", "-c", "echo $FOO; echo e >&2; exit 4"], timeout=20)
    assert (r.exit_code, r.stdout, r.stderr, r.timed_out) == (4, b"bar\n", b"e\n", False)
    t0 = time.monotonic()
    r = rt.containers.exec_sync("ex", ["sleep", "30"], timeout=0.5)
    assert r.timed_out and time.monotonic() - t0 < 10
    r = rt.containers.exec_sync("ex", ["cat"], timeout=20, input=b"fed through stdin")
    assert r.stdout == b"fed through stdin"
    r = rt.containers.exec_sync("ex", ["grep", "-E", "NoNewPrivs|Seccomp:|CapEff|SigIgn", "/proc/self/status"],
                                timeout=20)
    assert b"NoNewPrivs:\t1" in r.stdout and b"Seccomp:\t2" in r.stdout and b"a80425fb" in r.stdout
    assert b"SigIgn:\t0000000000000000" in r.stdout
    assert rt.containers.exec_sync("ex", ["sh", "-c", "echo $HOME"], timeout=20).stdout == b"/root\n"
    with pytest.raises(RuntimeError, match="executable file not found"):
        rt.containers.exec_sync("ex", ["no-such-tool"], timeout=20)


def test_exec_with_a_tty(rt: Runtime) -> None:
    rt.containers.create(rt.spec("tty", ["sleep", "1000"]))
    rt.containers.start("tty")
    proc = rt.containers.exec("tty", ["sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && echo is-a-tty; stty size; "
                                                  "read line; echo got=$line; stty size"],
                              tty=True, tty_size=(33, 111))
    assert proc.master is not None
    os.write(proc.master, b"typed\n")
    time.sleep(0.2)
    proc.resize(40, 120)
    out = b""
    deadline = time.monotonic() + 20
    while proc.master is not None and time.monotonic() < deadline:
        try:
            chunk = os.read(proc.master, 4096)
        except OSError:  # EIO: the slave side closed
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(20) == 0
    proc.close()
    assert b"is-a-tty" in out and b"33 111" in out and b"got=typed" in out
    assert b"/dev/pts/0" in out  # the container's own devpts


def test_create_failures_leave_nothing_behind(rt: Runtime) -> None:
    with pytest.raises(ContainerError, match="executable file not found: nope"):
        rt.containers.create(rt.spec("bad", ["nope"]))
    assert rt.containers.list() == []
    assert not os.path.exists(rt.containers.state_dir("bad"))
    assert not rt.cgroups.exists(f"{rt.cgroup_parent}/bad")
    rt.containers.create(rt.spec("dup", ["true"]))
    with pytest.raises(ContainerError, match="already exists"):
        rt.containers.create(rt.spec("dup", ["true"]))


def test_copy_fallback_when_overlay_is_unavailable(rt: Runtime) -> None:
    rt.containers.force_copy_rootfs = True
    code, out = rt.run("copy", ["sh", "-c", "echo data > /etc/new; cat /etc/new; grep -c overlay /proc/self/mountinfo"])
    assert code == 1  # grep -c found no overlay mount: exit 1
    assert out.splitlines() == ["data", "0"]
    assert not os.path.exists(os.path.join(rt.layer, "etc", "new"))  # the layer stays untouched


@pytest.mark.parametrize("copy", [False, True], ids=["overlay", "copy"])
def test_layers_stack_top_first_with_whiteouts(rt: Runtime, tmp_path: Path, copy: bool) -> None:
    top = tmp_path / "top"
    (top / "etc").mkdir(parents=True)
    (top / "etc/motd").write_text("from the top layer\n")
    (top / "bin").mkdir()
    os.mknod(top / "bin/vi", stat.S_IFCHR | 0o600, 0)  # whiteout: vi is gone in this image
    rt.containers.force_copy_rootfs = copy
    spec = rt.spec("layers", ["sh", "-c", "cat /etc/motd; ls /bin/vi 2>&1; ls /bin/sh"])
    spec.rootfs_layers = [str(top), rt.layer]
    rt.containers.create(spec)
    rt.containers.start("layers")
    st = rt.containers.wait("layers", 20)
    out = log_text(st.log_path)
    assert st.exit_code == 0, out
    assert out.splitlines()[0] == "from the top layer"
    assert "No such file or directory" in out and "/bin/sh" in out


def test_containers_survive_a_restart_of_their_manager(rt: Runtime) -> None:
    rt.containers.create(rt.spec("keep", ["sh", "-c", "while :; do echo tick; sleep 0.2; done"]))
    rt.containers.start("keep")
    rt.containers.create(rt.spec("later", ["sh", "-c", "echo started-after-restart"]))
    pid = rt.containers.status("keep").pid
    rt.reopen()  # a new fork server and manager: the shim and container live on
    assert rt.containers.status("later").state == "created"
    rt.containers.start("later")
    st = rt.containers.wait("later", 20)
    assert st.exit_code == 0 and log_text(st.log_path) == "started-after-restart\n"
    rt.containers.remove("later")
    st = rt.containers.status("keep")
    assert (st.state, st.pid) == ("running", pid)
    assert [c.id for c in rt.containers.list()] == ["keep"]
    assert rt.containers.spec("keep").args[0] == "sh"
    assert rt.containers.exec_sync("keep", ["cat", "/proc/1/cmdline"], timeout=20).stdout.startswith(b"sh")
    size = os.path.getsize(st.log_path)
    time.sleep(0.6)
    assert os.path.getsize(st.log_path) > size  # the shim still copies output
    st = rt.containers.stop("keep", timeout=1)
    assert st.state == "exited" and st.exit_code == 137  # PID 1 without a TERM trap ignores SIGTERM: killed


def test_concurrent_callers(rt: Runtime) -> None:
    # The service calls the manager from a thread pool; the fork server serializes forks.
    def worker(n: int) -> list[int | None]:
        codes: list[int | None] = []
        for i in range(4):
            cid = f"th{n}-{i}"
            if i % 2:  # a long-running one, used through exec and stopped
                rt.containers.create(rt.spec(cid, ["sleep", "1000"]))
                rt.containers.start(cid)
                codes.append(rt.containers.exec_sync(cid, ["sh", "-c", f"exit {n}"], timeout=30).exit_code)
                rt.containers.stop(cid, timeout=0)
            else:
                rt.containers.create(rt.spec(cid, ["sh", "-c", f"exit {n}"]))
                rt.containers.start(cid)
                codes.append(rt.containers.wait(cid, 30).exit_code)
            rt.containers.remove(cid)
        return codes

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(worker, range(6)))
    assert results == [[n] * 4 for n in range(6)]
    assert rt.containers.list() == []


def _snapshot(rt: Runtime) -> dict[str, int]:
    # Mounts under this runtime's root only: other tests and processes on the
    # box mount and unmount concurrently.
    root = os.path.realpath(rt.root)
    with open("/proc/self/mountinfo") as f:
        mounts = sum(1 for line in f if line.split()[4].startswith(root))
    cgroups = 0
    for d in rt.cgroups.dirs(rt.cgroup_parent):
        if os.path.isdir(d):
            cgroups += sum(len(dirs) for _, dirs, _ in os.walk(d))
    # Our processes only (the box is shared): children of the fork server (shims,
    # exec helpers, zombies not yet reaped) and anything left in the test's cgroups.
    ours = len(rt.cgroups.pids(rt.cgroup_parent)) if rt.cgroups.exists(rt.cgroup_parent) else 0
    for p in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == rt.forkserver.pid:
            ours += 1
    return {"mounts": mounts, "cgroups": cgroups, "fds": len(os.listdir("/proc/self/fd")),
            "fork server fds": len(os.listdir(f"/proc/{rt.forkserver.pid}/fd")),
            "processes": ours,
            "state dirs": len(os.listdir(rt.containers.dir))}


def test_no_leaks_after_200_cycles(rt: Runtime) -> None:
    rt.run("warm", ["true"])
    rt.containers.remove("warm")
    gc.collect()  # descriptors of earlier tests' garbage must not close mid-count
    before = _snapshot(rt)
    for i in range(200):
        cid = f"cycle{i}"
        rt.containers.create(rt.spec(cid, ["sh", "-c", "echo hi; sleep 1000"]))
        rt.containers.start(cid)
        if i % 50 == 0:
            assert rt.containers.exec_sync(cid, ["true"], timeout=20).exit_code == 0
            running = _snapshot(rt)  # the counters do see a live container
            assert running["processes"] >= 2 and running["cgroups"] > before["cgroups"]
        rt.containers.stop(cid, timeout=0)
        rt.containers.remove(cid)
    deadline = time.monotonic() + 10
    gc.collect()
    after = _snapshot(rt)
    while after != before and time.monotonic() < deadline:  # reaping is asynchronous
        time.sleep(0.1)
        after = _snapshot(rt)
    assert after == before
