"""Pod sandboxes through the gRPC API of a real daemon: shared localhost and IPC, pod-to-pod
traffic over the bridge, status codes, and nothing left after RemovePodSandbox."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import grpc
import pytest
from pyroute2 import IPRoute

from timonel.node_agent.runtime.api import runtime_pb2 as pb
from timonel.node_agent.runtime.cgroups import detect
from timonel.node_agent.runtime.client import RuntimeClient
from timonel.node_agent.runtime.network import host_veth_name, run_in_netns
from timonel.node_agent.runtime.network.iptables import dumps_with_rules
from timonel.node_agent.runtime.statefs import state_dir

from .rtsvc_daemon import (
    POD_CIDR,
    Daemon,
    container_config,
    load_busybox_module,
    log_text,
    needs_root,
    run_pod,
    running_daemon,
    sandbox_config,
)

pytestmark = needs_root


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, RuntimeClient]]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    files = load_busybox_module().write_busybox_image(tmp_path_factory.mktemp("image"))
    yield from running_daemon(tmp_path_factory.mktemp("rtsvc-pods"), str(files["docker_archive"]))


def wait_exit(c: RuntimeClient, cid: str, timeout: int = 60) -> pb.ContainerStatus:
    st = c.wait_container(cid, timeout=timeout)
    assert st.state == pb.CONTAINER_EXITED, f"container {cid} still {pb.ContainerState.Name(st.state)}"
    return st


def test_two_containers_share_localhost_and_ipc(daemon: tuple[Daemon, RuntimeClient]) -> None:
    _, c = daemon
    sid, ids = run_pod(c, "shared", {
        "server": ["sh", "-c", "readlink /proc/self/ns/ipc; readlink /proc/self/ns/net; echo pong | nc -l -p 7070"],
        "client": ["sh", "-c", "readlink /proc/self/ns/ipc; readlink /proc/self/ns/net; "
                               "for i in $(seq 1 200); do nc 127.0.0.1 7070 && exit 0; sleep 0.1; done; exit 1"],
    })
    client_st = wait_exit(c, ids["client"])
    server_st = wait_exit(c, ids["server"])
    assert (client_st.exit_code, server_st.exit_code) == (0, 0), log_text(client_st.log_path)
    client_out = log_text(client_st.log_path).split()
    server_out = log_text(server_st.log_path).split()
    assert client_out[-1] == "pong"
    assert client_out[:2] == server_out[:2]  # the same IPC and network namespaces
    assert client_out[0].startswith("ipc:[") and client_out[1].startswith("net:[")
    assert client_st.reason == "Completed" and client_st.finished_at >= client_st.started_at > 0
    c.stop_sandbox(sid)
    c.remove_sandbox(sid)


def test_two_sandboxes_get_different_ips_and_reach_each_other(daemon: tuple[Daemon, RuntimeClient]) -> None:
    _, c = daemon
    sid_a, a = run_pod(c, "pod-a", {"web": ["sh", "-c", "echo hello-from-a | nc -l -p 8080"]})
    ip_a = c.sandbox_status(sid_a).status.network.ip
    sid_b, _ = run_pod(c, "pod-b", {"idle": ["sleep", "1000"]})
    ip_b = c.sandbox_status(sid_b).status.network.ip
    assert ip_a != ip_b
    assert {IPv4Address(ip_a), IPv4Address(ip_b)} <= set(IPv4Network(POD_CIDR).hosts())
    cid_b = c.list_containers(pb.ContainerFilter(pod_sandbox_id=sid_b))[0].id
    got = c.exec_sync(cid_b, ["sh", "-c", f"ip -4 addr show eth0; for i in $(seq 1 200); do "
                                          f"nc {ip_a} 8080 && exit 0; sleep 0.1; done; exit 1"], timeout=60)
    assert got.exit_code == 0, got.stderr
    assert f"inet {ip_b}/24" in got.stdout.decode() and got.stdout.decode().rstrip().endswith("hello-from-a")
    assert wait_exit(c, a["web"]).exit_code == 0
    for sid in (sid_a, sid_b):
        c.stop_sandbox(sid)
        c.remove_sandbox(sid)


def test_dns_hosts_and_the_node_network(daemon: tuple[Daemon, RuntimeClient]) -> None:
    _, c = daemon
    cfg = sandbox_config("dns", dns_config=pb.DNSConfig(servers=["10.96.0.10"], searches=["ns.svc.cluster.local"],
                                                        options=["ndots:5"]))
    sid = c.run_sandbox(cfg)
    ip = c.sandbox_status(sid).status.network.ip
    cid = c.create_container(sid, container_config("main", ["sleep", "1000"]), cfg)
    c.start_container(cid)
    out = c.exec_sync(cid, ["sh", "-c", "cat /etc/resolv.conf /etc/hosts; hostname"], timeout=10).stdout.decode()
    assert "nameserver 10.96.0.10" in out and "search ns.svc.cluster.local" in out and "options ndots:5" in out
    assert f"{ip}\tdns" in out and out.rstrip().endswith("dns")
    c.remove_sandbox(sid)

    host = sandbox_config("on-node", linux=pb.LinuxPodSandboxConfig(
        security_context=pb.LinuxSandboxSecurityContext(namespace_options=pb.NamespaceOption(network=pb.NODE))))
    sid = c.run_sandbox(host)
    st = c.sandbox_status(sid).status
    assert st.network.ip == "" and st.linux.namespaces.options.network == pb.NODE
    cid = c.create_container(sid, container_config("main", ["ip", "-o", "link"]), host)
    c.start_container(cid)
    done = wait_exit(c, cid)
    assert done.exit_code == 0 and "rtsvc0" in log_text(done.log_path)  # the node's bridge is visible
    c.remove_sandbox(sid)
    bad = sandbox_config("on-node-sysctl", linux=pb.LinuxPodSandboxConfig(
        sysctls={"net.core.somaxconn": "1024"},
        security_context=pb.LinuxSandboxSecurityContext(namespace_options=pb.NamespaceOption(network=pb.NODE))))
    with pytest.raises(grpc.RpcError) as e:
        c.run_sandbox(bad)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "node's network" in e.value.details()


def node_state(d: Daemon) -> dict[str, object]:
    def links() -> set[str]:
        with IPRoute() as ipr:
            return {link.get("IFLA_IFNAME") for link in ipr.link("dump")}

    rules = sorted(f"{dump.backend} {t} {r}" for dump in dumps_with_rules(d.node_netns)
                   for t, rs in dump.rules.items() for r in rs)
    return {"links": run_in_netns(d.node_netns, links), "rules": rules}


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def processes_in_cgroups_with(needle: str) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cgroup") as f:
                    if needle in f.read():
                        out.append(int(name))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return out


def test_remove_pod_sandbox_leaves_nothing(daemon: tuple[Daemon, RuntimeClient]) -> None:
    d, c = daemon
    before = node_state(d)
    cfg = sandbox_config("leaky", linux=pb.LinuxPodSandboxConfig(sysctls={"net.ipv4.ip_unprivileged_port_start": "0"}))
    sid = c.run_sandbox(cfg)
    cid = c.create_container(sid, container_config("main", ["sh", "-c", "sleep 1000 & sleep 1000"]), cfg)
    c.start_container(cid)
    st = c.container_status(cid, verbose=True)
    shim_dir = json.loads(st.info["info"])["stateDir"]
    assert c.exec_sync(cid, ["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"], timeout=10).stdout == b"0\n"
    session = c.exec(cid, ["sleep", "1000"])  # an exec still running when the pod goes
    deadline = time.monotonic() + 20
    while len(processes_in_cgroups_with(sid)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = processes_in_cgroups_with(sid)
    # init, its background sleep, the exec helper and the exec'd sleep
    assert len(pids) == 4 and st.status.pid in pids
    veth = host_veth_name(sid)
    assert veth in node_state(d)["links"]  # type: ignore[operator]
    cgroups = detect()
    pod_cgroup = f"{d.cgroup_parent}/{sid}"
    assert cgroups.exists(pod_cgroup)

    c.stop_sandbox(sid)
    assert c.sandbox_status(sid).status.state == pb.SANDBOX_NOTREADY
    assert c.sandbox_status(sid).status.network.ip == ""
    c.remove_sandbox(sid)
    c.remove_sandbox(sid)  # idempotent

    with pytest.raises(grpc.RpcError) as e:
        c.sandbox_status(sid)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert c.list_containers(pb.ContainerFilter(pod_sandbox_id=sid)) == []
    deadline = time.monotonic() + 20  # a veth of a deleted namespace goes asynchronously
    while node_state(d) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert node_state(d) == before  # no veth, no iptables rule
    with open("/proc/self/mountinfo") as f:
        mounts = f.read()
    assert sid not in mounts and cid not in mounts
    assert not cgroups.exists(pod_cgroup)
    assert not os.path.exists(os.path.join(state_dir(d.root), "netns", sid))
    assert not os.path.exists(shim_dir)
    assert not any(sid in p.name for p in Path(state_dir(d.root), "network", "ipam").iterdir())
    assert not any(sid in p.read_text() for p in Path(state_dir(d.root), "network", "ipam").iterdir() if p.is_file())
    assert [p for p in pids if alive(p)] == []
    assert processes_in_cgroups_with(sid) == []
    # The exec stream ends: 137 if its helper reported the kill, 255 if it was killed first.
    assert session.collect()[0] in (137, 255)


def test_status_codes(daemon: tuple[Daemon, RuntimeClient]) -> None:
    _, c = daemon

    def code(fn, *args) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
        with pytest.raises(grpc.RpcError) as e:
            fn(*args)
        return e.value.code()  # type: ignore[no-any-return]

    assert code(c.container_status, "0" * 64) == grpc.StatusCode.NOT_FOUND
    assert code(c.start_container, "nope") == grpc.StatusCode.NOT_FOUND
    assert code(c.run_sandbox, pb.PodSandboxConfig()) == grpc.StatusCode.INVALID_ARGUMENT
    cfg = sandbox_config("codes")
    sid = c.run_sandbox(cfg)
    assert code(c.run_sandbox, cfg) == grpc.StatusCode.ALREADY_EXISTS
    assert code(c.create_container, sid, container_config("x", ["true"], image="")) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert code(c.create_container, sid, container_config("x", ["true"], image="no-such-image:1")) == \
        grpc.StatusCode.NOT_FOUND
    assert code(c.create_container, sid, container_config("x", ["/no/such/binary"])) == \
        grpc.StatusCode.INVALID_ARGUMENT
    bad_mount = container_config("x", ["true"], mounts=[pb.Mount(container_path="/data", host_path="/no/such")])
    assert code(c.create_container, sid, bad_mount) == grpc.StatusCode.INVALID_ARGUMENT
    cid = c.create_container(sid, container_config("x", ["sleep", "1000"]), cfg)
    assert code(c.create_container, sid, container_config("x", ["true"]), cfg) == grpc.StatusCode.ALREADY_EXISTS
    assert code(c.exec_sync, cid, ["true"]) == grpc.StatusCode.FAILED_PRECONDITION  # not started
    c.start_container(cid)
    assert code(c.start_container, cid) == grpc.StatusCode.FAILED_PRECONDITION
    assert code(c.exec_sync, cid, ["sleep", "10"], 1) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert code(c.remove_image, "busybox") == grpc.StatusCode.FAILED_PRECONDITION  # in use
    assert c.list_containers(pb.ContainerFilter(id=cid[:8]))[0].id == cid  # a prefix is enough
    c.stop_container(cid, 0)
    c.stop_container(cid, 0)  # idempotent
    assert c.container_status(cid[:12]).status.exit_code == 137
    c.stop_sandbox(sid)
    assert code(c.create_container, sid, container_config("y", ["true"]), cfg) == \
        grpc.StatusCode.FAILED_PRECONDITION
    c.remove_container(cid)
    c.remove_container(cid)  # idempotent
    c.remove_sandbox(sid)


def test_wait_container_timeout_concurrent_waiters_and_a_racing_remove(daemon: tuple[Daemon, RuntimeClient]) -> None:
    # WaitContainer is served by the event loop watching the exit descriptor, not a thread.
    _, c = daemon
    sid, ids = run_pod(c, "waits", {"slow": ["sh", "-c", "sleep 3; exit 7"], "long": ["sleep", "1000"]})
    t0 = time.monotonic()
    assert c.wait_container(ids["long"], timeout=1).state == pb.CONTAINER_RUNNING
    assert time.monotonic() - t0 >= 0.9
    waiters = [RuntimeClient(daemon[0].socket) for _ in range(3)]
    try:
        with ThreadPoolExecutor(3) as pool:
            done = list(pool.map(lambda w: w.wait_container(ids["slow"], timeout=60), waiters))
        assert [(st.state, st.exit_code) for st in done] == [(pb.CONTAINER_EXITED, 7)] * 3
        # A wait in flight when the container is removed ends (its descriptor is its own).
        pending = pool_submit(waiters[0], ids["long"])
        time.sleep(0.5)
        c.stop_container(ids["long"], 0)
        c.remove_container(ids["long"])
        assert pending.result(timeout=30).state == pb.CONTAINER_EXITED
    finally:
        for w in waiters:
            w.close()
    c.stop_sandbox(sid)
    c.remove_sandbox(sid)


def pool_submit(c: RuntimeClient, cid: str) -> Future[pb.ContainerStatus]:
    return ThreadPoolExecutor(1).submit(c.wait_container, cid, 60)
