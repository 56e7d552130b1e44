"""Pods on one node: addresses, reachability over the bridge, idempotence, crash repair."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from pyroute2 import IPRoute
from timonel_netlab import Lab, links, ping, requires_root, tcp_peer

from timonel.node_agent.runtime.network import (
    NetworkConfig,
    NetworkError,
    host_veth_name,
    ipam,
    is_netns,
    run_in_netns,
    setup_node_network,
    setup_pod_network,
    teardown_pod_network,
)
from timonel.node_agent.runtime.network.nsrun import join_netns

pytestmark = requires_root


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with Lab(tmp_path) as lab:
        yield lab


@pytest.fixture
def node(lab: Lab) -> NetworkConfig:
    cfg = lab.node("node", "10.88.0.0/24")
    setup_node_network(cfg)
    return cfg


def _ipv6(ipr: IPRoute, index: int) -> list[str]:
    return [a.get("IFA_ADDRESS") for a in ipr.addr("dump", index=index, family=10)]


def pod_view(netns: str) -> dict[str, object]:
    def work() -> dict[str, object]:
        with IPRoute() as ipr:
            eth0 = ipr.link("get", ifname="eth0")[0]
            lo = ipr.link("get", ifname="lo")[0]
            addrs = [(a.get("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.addr("dump", index=eth0["index"], family=2)]
            default = [r.get("RTA_GATEWAY") for r in ipr.route("dump", family=2, table=254) if r["dst_len"] == 0]
            return {"addrs": addrs, "default": default, "mtu": eth0.get("IFLA_MTU"),
                    "eth0_up": bool(eth0["flags"] & 1), "lo_up": bool(lo["flags"] & 1),
                    "eth0_ipv6": _ipv6(ipr, eth0["index"]), "lo_ipv6": _ipv6(ipr, lo["index"]),
                    "queues": (eth0.get("IFLA_NUM_TX_QUEUES"), eth0.get("IFLA_NUM_RX_QUEUES"))}

    return run_in_netns(netns, work)


def _host_ipv6(name: str) -> list[str]:
    with IPRoute() as ipr:
        return _ipv6(ipr, ipr.link_lookup(ifname=name)[0])


def test_two_pods_get_different_ips_and_reach_each_other(lab: Lab, node: NetworkConfig) -> None:
    a, b = lab.netns("pod-a"), lab.netns("pod-b")
    na = setup_pod_network(a, "pod-a", node)
    nb = setup_pod_network(b, "pod-b", node)
    assert na.ip != nb.ip
    assert {na.ip, nb.ip} <= {f"10.88.0.{i}" for i in range(2, 255)}
    assert na.gateway == nb.gateway == "10.88.0.1" and na.prefix == 24 and na.interface == "eth0"

    view = pod_view(a)
    # IPv4 only: no IPv6 link-local address on either end of the veth (lo keeps ::1).
    assert view == {"addrs": [(na.ip, 24)], "default": ["10.88.0.1"], "mtu": na.mtu, "eth0_up": True, "lo_up": True,
                    "eth0_ipv6": [], "lo_ipv6": ["::1"], "queues": (1, 1)}
    host_v6 = run_in_netns(node.node_netns or "", lambda: _host_ipv6(host_veth_name("pod-a")))
    assert host_v6 == []
    # Both directions, and the server sees the real pod address (no masquerade inside the node).
    assert tcp_peer(a, b, nb.ip) == na.ip
    assert tcp_peer(b, a, na.ip) == nb.ip
    assert ping(a, nb.ip)
    # A pod reaches the node through the bridge address, and reaches itself.
    assert tcp_peer(a, node.node_netns or "", "10.88.0.1") == na.ip
    assert tcp_peer(a, a, "127.0.0.1") == "127.0.0.1"


def test_setup_and_teardown_are_idempotent(lab: Lab, node: NetworkConfig) -> None:
    p = lab.netns("pod")
    first = setup_pod_network(p, "pod", node)
    assert setup_pod_network(p, "pod", node) == first
    assert pod_view(p)["addrs"] == [(first.ip, 24)]
    assert first.host_veth in links(node.node_netns or "")

    teardown_pod_network("pod", node, p)
    teardown_pod_network("pod", node, p)
    teardown_pod_network("pod", node)
    assert first.host_veth not in links(node.node_netns or "")
    assert "eth0" not in links(p)
    assert ipam.list_allocations(node.state_dir) == []


def test_teardown_without_setup_or_namespace_is_fine(lab: Lab, node: NetworkConfig) -> None:
    teardown_pod_network("never-set-up", node, os.path.join(lab.netns_dir, "missing"))


def test_setup_repairs_a_half_done_pod(lab: Lab, node: NetworkConfig) -> None:
    p = lab.netns("pod")
    net = setup_pod_network(p, "pod", node)

    # A crash after the veth was made but before it was configured: wipe the pod side.
    def break_pod() -> None:
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname="eth0")[0]
            for a in ipr.addr("dump", index=idx, family=2):
                ipr.addr("del", index=idx, address=a.get("IFA_ADDRESS"), prefixlen=a["prefixlen"])
            ipr.link("set", index=idx, state="down")
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="down")

    run_in_netns(p, break_pod)
    assert pod_view(p)["default"] == []  # the route went with the address
    assert setup_pod_network(p, "pod", node) == net
    assert pod_view(p) == {"addrs": [(net.ip, 24)], "default": ["10.88.0.1"], "mtu": net.mtu, "eth0_up": True,
                           "lo_up": True, "eth0_ipv6": [], "lo_ipv6": ["::1"], "queues": (1, 1)}
    assert tcp_peer(p, node.node_netns or "", "10.88.0.1") == net.ip


def test_setup_replaces_a_stale_host_veth(lab: Lab, node: NetworkConfig) -> None:
    """The pod's previous namespace died but its host veth name is taken by a pair elsewhere."""
    old, new = lab.netns("old"), lab.netns("new")
    name = host_veth_name("pod")

    def stale() -> None:
        fd = os.open(old, os.O_RDONLY)
        with IPRoute() as ipr:
            ipr.link("add", ifname=name, kind="veth", peer={"ifname": "eth0", "net_ns_fd": fd})
        os.close(fd)

    run_in_netns(node.node_netns, stale)
    net = setup_pod_network(new, "pod", node)
    assert "eth0" not in links(old)
    assert pod_view(new)["addrs"] == [(net.ip, 24)]
    assert tcp_peer(new, node.node_netns or "", "10.88.0.1") == net.ip


def test_failed_setup_frees_what_it_took(lab: Lab, node: NetworkConfig) -> None:
    p = lab.netns("pod")
    # Something that is not a bridge carries the bridge's name: found after IPAM ran.
    cfg = replace(node, bridge="squatted")

    def squat() -> None:
        with IPRoute() as ipr:
            ipr.link("add", ifname="squatted", kind="veth", peer="squatted-peer")

    run_in_netns(node.node_netns, squat)
    with pytest.raises(NetworkError, match="interface squatted exists but is a veth device"):
        setup_pod_network(p, "pod", cfg)
    assert ipam.list_allocations(node.state_dir) == []
    assert host_veth_name("pod") not in links(node.node_netns or "")
    with pytest.raises(NetworkError, match="pod interface name"):
        setup_pod_network(p, "pod", node, interface="eth0-that-is-way-too-long")
    assert ipam.list_allocations(node.state_dir) == []


def test_setup_needs_a_namespace(lab: Lab, node: NetworkConfig, tmp_path: Path) -> None:
    plain = tmp_path / "not-a-netns"
    plain.write_text("")
    with pytest.raises(NetworkError, match="is not a network namespace file"):
        setup_pod_network(str(plain), "pod", node)
    assert ipam.list_allocations(node.state_dir) == []


def test_many_pods_in_parallel(lab: Lab, node: NetworkConfig) -> None:
    names = [f"par-{i}" for i in range(12)]
    paths = {n: lab.netns(n) for n in names}
    with ThreadPoolExecutor(6) as ex:
        nets = list(ex.map(lambda n: setup_pod_network(paths[n], n, node), names))
    assert len({n.ip for n in nets}) == 12
    assert tcp_peer(paths["par-0"], paths["par-11"], nets[11].ip) == nets[0].ip
    with ThreadPoolExecutor(6) as ex:
        list(ex.map(lambda n: teardown_pod_network(n, node, paths[n]), names))
    assert not [x for x in links(node.node_netns or "") if x.startswith("veth")]
    assert ipam.list_allocations(node.state_dir) == []


def test_namespace_has_lo_up_and_is_held_by_its_file(lab: Lab) -> None:
    p = lab.netns("held")
    assert is_netns(p)
    assert tcp_peer(p, p, "127.0.0.1") == "127.0.0.1"

    def join_and_read() -> int:
        join_netns(p)
        return os.stat("/proc/thread-self/ns/net").st_ino

    assert run_in_netns(p, join_and_read) == os.stat(p).st_ino
