"""The fork server keeps one shim forked ahead of the next container (shim.spare)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from timonel.node_agent.runtime.container import ContainerError

from .conftest import Runtime, needs_root

pytestmark = needs_root


def _processes() -> list[tuple[int, str, int]]:
    """(pid, name, parent pid) of every process, zombies included."""
    found = []
    for p in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        found.append((int(p), stat[stat.index("(") + 1:stat.rindex(")")], int(stat[stat.rindex(")") + 2:].split()[1])))
    return found


def _idle_shims(rt: Runtime) -> list[int]:
    """Children of the fork server named timonel-shim that no container uses."""
    used = {st.pid for st in rt.containers.list()}
    used |= {int(rt.containers._shim(st.id).get("shim_pid") or 0) for st in rt.containers.list()}
    return [pid for pid, name, ppid in _processes()
            if ppid == rt.forkserver.pid and name == "timonel-shim" and pid not in used]


def _without_spare(rt: Runtime) -> None:
    """Kill the spare shim: the next create forks its shim on demand."""
    os.kill(_wait_spare(rt), signal.SIGKILL)
    time.sleep(0.2)


def _gone(pid: int) -> bool:
    """Ended: no such process, or a zombie (whoever adopted it may not reap promptly)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


def _wait_spare(rt: Runtime, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        spares = _idle_shims(rt)
        if len(spares) == 1:
            return spares[0]
        assert time.monotonic() < deadline, f"expected one spare shim, found {spares}"
        time.sleep(0.01)


def test_container_gets_the_spare_shim_and_a_new_one_is_forked(rt: Runtime) -> None:
    spare = _wait_spare(rt)
    rt.containers.create(rt.spec("c1", ["sh", "-c", "echo hi"]))
    assert rt.containers._shim("c1")["shim_pid"] == spare
    rt.containers.start("c1")
    st = rt.containers.wait("c1", 30)
    assert st.exit_code == 0
    next_spare = _wait_spare(rt)
    assert next_spare != spare
    rt.containers.remove("c1")


def test_a_dead_spare_is_replaced_by_a_shim_forked_on_demand(rt: Runtime) -> None:
    spare = _wait_spare(rt)
    os.kill(spare, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while not _gone(spare) and time.monotonic() < deadline:
        time.sleep(0.01)
    code, out = rt.run("c2", ["sh", "-c", "echo alive"])
    assert (code, out) == (0, "alive\n")
    assert rt.containers._shim("c2")["shim_pid"] != spare
    rt.containers.remove("c2")
    _wait_spare(rt)


def test_spare_shims_end_with_the_fork_server(rt: Runtime) -> None:
    spare = _wait_spare(rt)
    rt.reopen()  # closes the old fork server: its spare reads EOF and exits
    deadline = time.monotonic() + 20
    while not _gone(spare) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _gone(spare), f"spare shim {spare} outlived its fork server"
    _wait_spare(rt)


def test_early_init_reports_a_bad_namespace_file_at_create(rt: Runtime, tmp_path: Path) -> None:
    # The spare's init joins the pod's namespaces itself, after the request: its
    # failure must reach create() like any other create-time error.
    _wait_spare(rt)
    bogus = tmp_path / "not-a-namespace"
    bogus.write_text("")
    with pytest.raises(ContainerError, match=f"joining the net namespace {bogus}: Invalid argument"):
        rt.containers.create(rt.spec("bad", ["true"], namespaces={"net": str(bogus)}))
    assert rt.containers.list() == []
    assert rt.run("good", ["sh", "-c", "echo ok"]) == (0, "ok\n")
    rt.containers.remove("good")


def _mnt_ns_links(pid: int) -> set[str]:
    links = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.add(os.readlink(f"/proc/{pid}/fd/{name}"))
        except OSError:
            pass
    return {x for x in links if x.startswith("mnt:")}


@pytest.mark.parametrize("spare", [True, False])
def test_the_shim_holds_its_containers_mount_namespace(rt: Runtime, spare: bool) -> None:
    # So the rootfs's mounts are torn down after the exit is reported, not inside init's exit.
    if not spare:
        _without_spare(rt)
    rt.containers.create(rt.spec("held", ["sleep", "1000"]))
    rt.containers.start("held")
    shim = rt.containers._shim("held")
    init_ns = os.readlink(f"/proc/{shim['pid']}/ns/mnt")
    assert init_ns != os.readlink("/proc/self/ns/mnt")
    deadline = time.monotonic() + 20
    while init_ns not in _mnt_ns_links(shim["shim_pid"]):
        assert time.monotonic() < deadline, f"shim holds {_mnt_ns_links(shim['shim_pid'])}, not {init_ns}"
        time.sleep(0.01)
    st = rt.containers.stop("held", 0)
    assert st.exit_code == 137
    rt.containers.remove("held")


@pytest.mark.parametrize("spare", [True, False])
def test_pid1_is_the_shims_child_and_its_helper_is_reaped(rt: Runtime, spare: bool) -> None:
    # PID 1 starts from a helper's memory (shim._spawn_pid1) but is the shim's child; the
    # helper exits at PID 1's execve and the shim reaps it: no zombie stays behind.
    if not spare:
        _without_spare(rt)
    rt.containers.create(rt.spec("kids", ["sleep", "1000"]))
    shim = rt.containers._shim("kids")
    assert os.readlink(f"/proc/{shim['pid']}/ns/pid") != os.readlink("/proc/self/ns/pid")
    with open(f"/proc/{shim['pid']}/status") as f:
        assert "NSpid:" in (line := next(x for x in f if x.startswith("NSpid:"))) and line.split()[-1] == "1"
    rt.containers.start("kids")
    deadline = time.monotonic() + 20
    while (kids := [pid for pid, _, ppid in _processes() if ppid == shim["shim_pid"]]) != [shim["pid"]]:
        assert time.monotonic() < deadline, f"shim's children: {kids}, PID 1 {shim['pid']}"
        time.sleep(0.01)
    assert rt.containers.stop("kids", 0).exit_code == 137
    rt.containers.remove("kids")


def _sockets(pid: int) -> set[str]:
    found = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if (link := os.readlink(f"/proc/{pid}/fd/{name}")).startswith("socket:"):
                found.add(link)
    return found


def test_a_spares_helper_and_init_hold_no_socket_of_its_shim(rt: Runtime) -> None:
    # The runtime finds a killed spare by its send to the shim failing: no other process
    # may hold the shim's end of that socket (its helper lives until PID 1's execve and,
    # when it is the last of the two to exit, holds its descriptors through the teardown).
    spare = _wait_spare(rt)
    deadline = time.monotonic() + 20
    while len(kids := [pid for pid, _, ppid in _processes() if ppid == spare]) < 2:
        assert time.monotonic() < deadline, f"spare shim {spare} has children {kids}"
        time.sleep(0.01)
    shim_sockets = _sockets(spare)
    assert shim_sockets
    for kid in kids:
        assert not _sockets(kid) & shim_sockets, f"process {kid} holds a socket of its shim {spare}"
