"""The daemon's state survives it: containers outlive a stopped or crashed daemon and the next
one lists and drives them; what a crash left half-made is cleaned up at start."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from pyroute2 import IPRoute

from timonel.node_agent.runtime.api import runtime_pb2 as pb
from timonel.node_agent.runtime.cgroups import detect
from timonel.node_agent.runtime.client import RuntimeClient
from timonel.node_agent.runtime.network import (
    create_netns,
    host_veth_name,
    ipam,
    list_netns,
    run_in_netns,
)
from timonel.node_agent.runtime.statefs import state_dir, tmpfs_mounted_at

from .rtsvc_daemon import (
    POD_CIDR,
    Daemon,
    container_config,
    load_busybox_module,
    needs_root,
    run_pod,
)

pytestmark = needs_root


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    files = load_busybox_module().write_busybox_image(tmp_path / "image")
    d = Daemon(tmp_path / "rt")
    (tmp_path / "rt").mkdir()
    try:
        d.start().import_image(str(files["docker_archive"]))
        yield d
    finally:
        if d.proc is None:
            d.start()
        d.cleanup(detect())


def alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def node_links(d: Daemon) -> set[str]:
    def work() -> set[str]:
        with IPRoute() as ipr:
            return {link.get("IFLA_IFNAME") for link in ipr.link("dump")}

    return run_in_netns(d.node_netns, work)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "crashed"])
def test_containers_outlive_the_daemon_and_are_adopted(daemon: Daemon, how: int) -> None:
    c = RuntimeClient(daemon.socket)
    sid, ids = run_pod(c, "survivor", {"web": ["sh", "-c", "echo up; sleep 1000"]})
    before = {x.id: x for x in c.list_containers()}
    pid = c.container_status(ids["web"]).status.pid
    ip = c.sandbox_status(sid).status.network.ip
    assert before[ids["web"]].state == pb.CONTAINER_RUNNING and alive(pid)
    waiter = RuntimeClient(daemon.socket)  # a wait in flight must not keep the daemon from stopping
    pending = ThreadPoolExecutor(1).submit(waiter.wait_container, ids["web"])
    time.sleep(0.5)
    c.close()

    assert daemon.stop(how) == (0 if how == signal.SIGTERM else -signal.SIGKILL)
    with pytest.raises(grpc.RpcError):
        pending.result(timeout=30)
    waiter.close()
    assert alive(pid)  # the container does not depend on the daemon
    assert tmpfs_mounted_at(state_dir(daemon.root))  # its records stay for the next daemon
    c = daemon.start()
    after = {x.id: x for x in c.list_containers()}
    assert after.keys() == before.keys() and after[ids["web"]].state == pb.CONTAINER_RUNNING
    assert c.container_status(ids["web"]).status.pid == pid
    sb = c.sandbox_status(sid).status
    assert sb.state == pb.SANDBOX_READY and sb.network.ip == ip
    assert c.exec_sync(ids["web"], ["echo", "still here"], timeout=10).stdout == b"still here\n"
    # New containers join the adopted sandbox, and the old one still stops and goes.
    cid = c.create_container(sid, container_config("late", ["hostname"]))
    c.start_container(cid)
    assert c.wait_container(cid, 30).exit_code == 0
    c.stop_container(ids["web"], 1)
    assert c.container_status(ids["web"]).status.exit_code == 137  # sleep as PID 1 ignores SIGTERM
    assert not alive(pid)
    c.remove_sandbox(sid)
    assert c.list_sandboxes() == []
    c.close()


def test_state_is_on_a_tmpfs_that_goes_with_the_last_pod(daemon: Daemon) -> None:
    state = state_dir(daemon.root)
    assert tmpfs_mounted_at(state)
    c = RuntimeClient(daemon.socket)
    sid, _ = run_pod(c, "brief", {"main": ["sleep", "1000"]})
    assert os.path.exists(os.path.join(state, "cri", "sandboxes", f"{sid}.json"))
    c.stop_sandbox(sid)
    c.remove_sandbox(sid)
    c.close()
    assert daemon.stop() == 0
    assert not tmpfs_mounted_at(state)  # nothing left to remember: not even the mount
    assert daemon.start().list_sandboxes() == []
    assert tmpfs_mounted_at(state)


def test_start_cleans_up_what_a_crash_left(daemon: Daemon) -> None:
    c = RuntimeClient(daemon.socket)
    keep_sid, keep = run_pod(c, "keep", {"main": ["sleep", "1000"]})
    half_sid, _ = run_pod(c, "half", {"main": ["sleep", "1000"]})
    half = c.list_containers(pb.ContainerFilter(pod_sandbox_id=half_sid))[0]
    half_pid = c.container_status(half.id).status.pid
    c.close()
    assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL

    # What a crash in the middle of RunPodSandbox and CreateContainer looks like:
    root = Path(daemon.root)
    state = Path(state_dir(daemon.root))
    record = state / "cri" / "sandboxes" / f"{half_sid}.json"
    data = json.loads(record.read_text())
    data["phase"] = "creating"
    record.write_text(json.dumps(data))
    (state / "containers" / "deadbeef").mkdir()  # a create that died before writing its spec
    (root / "containers" / "deadbeef").mkdir()  # and its writable layer
    (root / "containers" / "orphan").mkdir()  # a layer whose state is gone (a reboot cleared the tmpfs)
    network_state = str(state / "network")
    ipam.allocate(network_state, POD_CIDR, "ghost-pod")  # an address of a pod that is gone
    create_netns("ghost-pod", str(state / "netns"))  # and its namespace

    c = daemon.start()
    assert [s.id for s in c.list_sandboxes()] == [keep_sid]
    assert [x.id for x in c.list_containers()] == [keep["main"]]
    assert not alive(half_pid)
    assert sorted(a.pod_id for a in ipam.list_allocations(network_state)) == [keep_sid]
    assert list_netns(str(state / "netns")) == [keep_sid]
    assert not (state / "containers" / "deadbeef").exists()
    assert not (root / "containers" / "deadbeef").exists()
    deadline = time.monotonic() + 10  # the janitor deletes it in the background
    while (root / "trash").exists() and any((root / "trash").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (root / "containers" / "orphan").exists() and not any((root / "trash").iterdir())
    assert host_veth_name(half_sid) not in node_links(daemon)
    assert host_veth_name(keep_sid) in node_links(daemon)
    assert not detect().exists(f"{daemon.cgroup_parent}/{half_sid}")
    c.close()
