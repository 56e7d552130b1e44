"""Two "nodes" (namespaces with a bridge each) joined by a wire: host-gw routing, a
Docker-like FORWARD=DROP firewall, masquerading to the outside, rule lifecycle."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyroute2 import IPRoute
from timonel_netlab import Lab, can_connect, iptables_lines, requires_root, sh, tcp_peer

from timonel.node_agent.runtime.network import (
    ROUTE_PROTOCOL,
    NetworkConfig,
    NetworkError,
    ensure_bridge,
    ensure_firewall,
    list_peer_routes,
    remove_firewall,
    run_in_netns,
    set_peer_routes,
    setup_node_network,
    setup_pod_network,
    teardown_node_network,
)
from timonel.node_agent.runtime.network.iptables import detect

pytestmark = requires_root

CLUSTER = ("10.88.0.0/16",)
NEGATIVE_TIMEOUT = 2.0  # a dropped SYN is never answered: any timeout proves it


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with Lab(tmp_path) as lab:
        yield lab


@dataclass
class Cluster:
    a: NetworkConfig
    b: NetworkConfig
    pod_a: str
    pod_b: str


def two_nodes(lab: Lab, docker_like: bool) -> Cluster:
    a = lab.node("node-a", "10.88.0.0/24", cluster_cidrs=CLUSTER)
    b = lab.node("node-b", "10.88.1.0/24", cluster_cidrs=CLUSTER)
    lab.wire("node-a", "192.168.50.1", "node-b", "192.168.50.2")
    for cfg in (a, b):
        if docker_like:
            r = sh(cfg.node_netns or "", "iptables", "-P", "FORWARD", "DROP")
            assert r.returncode == 0, r.stderr
        ensure_bridge(cfg)
    return Cluster(a, b, lab.netns("pod-a"), lab.netns("pod-b"))


def enable_forwarding(cfg: NetworkConfig) -> None:
    def work() -> None:
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("1")

    run_in_netns(cfg.node_netns, work)


def test_pods_on_different_nodes_reach_each_other(lab: Lab) -> None:
    c = two_nodes(lab, docker_like=False)
    setup_node_network(c.a)
    setup_node_network(c.b)
    na = setup_pod_network(c.pod_a, "pod-a", c.a)
    nb = setup_pod_network(c.pod_b, "pod-b", c.b)
    assert na.ip.startswith("10.88.0.") and nb.ip.startswith("10.88.1.")
    assert not can_connect(c.pod_a, c.pod_b, nb.ip, NEGATIVE_TIMEOUT)  # no routes yet

    assert set_peer_routes({"10.88.1.0/24": "192.168.50.2", "10.88.0.0/24": "192.168.50.1"}, c.a).added == {
        "10.88.1.0/24": "192.168.50.2"
    }
    set_peer_routes({"10.88.0.0/24": "192.168.50.1"}, c.b)
    # Inside the cluster network addresses are preserved (no masquerade).
    assert tcp_peer(c.pod_a, c.pod_b, nb.ip) == na.ip
    assert tcp_peer(c.pod_b, c.pod_a, na.ip) == nb.ip


def test_forward_drop_policy_does_not_drop_pod_traffic(lab: Lab) -> None:
    """Docker sets FORWARD's policy to DROP; our ACCEPT rules keep pods talking."""
    c = two_nodes(lab, docker_like=True)
    for cfg in (c.a, c.b):
        enable_forwarding(cfg)
    set_peer_routes({"10.88.1.0/24": "192.168.50.2"}, c.a)
    set_peer_routes({"10.88.0.0/24": "192.168.50.1"}, c.b)
    na = setup_pod_network(c.pod_a, "pod-a", c.a)
    nb = setup_pod_network(c.pod_b, "pod-b", c.b)
    assert not can_connect(c.pod_a, c.pod_b, nb.ip, NEGATIVE_TIMEOUT)  # dropped

    setup_node_network(c.a)
    setup_node_network(c.b)
    assert tcp_peer(c.pod_a, c.pod_b, nb.ip) == na.ip
    assert tcp_peer(c.pod_b, c.pod_a, na.ip) == nb.ip


def test_forward_drop_policy_on_one_bridge(lab: Lab) -> None:
    """Same node: with bridge-nf-call-iptables=1 even bridged pod-to-pod traffic hits FORWARD."""
    node = lab.node("node", "10.88.0.0/24")
    sysctl = "/proc/sys/net/bridge/bridge-nf-call-iptables"

    def bridge_nf() -> str:
        # Only read: on kernels before 5.3 this switch is not per namespace but global.
        try:
            with open(sysctl) as f:
                return f.read().strip()
        except FileNotFoundError:
            return "missing"

    state = run_in_netns(node.node_netns, bridge_nf)
    if state != "1":
        pytest.skip(f"bridge-nf-call-iptables is {state} here (br_netfilter not loaded?): bridged traffic is not filtered")
    assert sh(node.node_netns or "", "iptables", "-P", "FORWARD", "DROP").returncode == 0
    a, b = lab.netns("a"), lab.netns("b")
    ensure_bridge(node)
    na, nb = setup_pod_network(a, "a", node), setup_pod_network(b, "b", node)
    assert not can_connect(a, b, nb.ip, NEGATIVE_TIMEOUT)
    setup_node_network(node)
    assert tcp_peer(a, b, nb.ip) == na.ip


def test_traffic_leaving_the_cluster_network_is_masqueraded(lab: Lab) -> None:
    node = lab.node("node", "10.88.0.0/24", cluster_cidrs=CLUSTER)
    lab.node("outside", "10.99.0.0/24")  # just a namespace; knows no route to the pods
    lab.wire("node", "192.168.77.1", "outside", "192.168.77.2")
    setup_node_network(node)
    pod = lab.netns("pod")
    setup_pod_network(pod, "pod", node)
    outside = lab.path("outside")
    assert tcp_peer(pod, outside, "192.168.77.2") == "192.168.77.1"

    remove_firewall(node)  # without MASQUERADE the reply has no way back
    assert not can_connect(pod, outside, "192.168.77.2", NEGATIVE_TIMEOUT)
    ensure_firewall(node)
    assert tcp_peer(pod, outside, "192.168.77.2") == "192.168.77.1"


def test_rules_are_written_once_and_removed_completely(lab: Lab) -> None:
    node = lab.node("node", "10.88.0.0/24")
    ns = node.node_netns or ""
    assert sh(ns, "iptables", "-P", "FORWARD", "DROP").returncode == 0
    assert sh(ns, "iptables", "-A", "FORWARD", "-s", "10.1.2.3", "-j", "ACCEPT").returncode == 0
    before = iptables_lines(ns)
    setup_node_network(node)
    once = iptables_lines(ns)
    setup_node_network(node)
    setup_node_network(node)
    assert iptables_lines(ns) == once
    assert sum("-j TIMONEL-FORWARD" in line for line in once) == 1
    assert sum("-j TIMONEL-POSTROUTING" in line for line in once) == 1
    assert any(line.startswith("nft filter -A FORWARD") and "TIMONEL-FORWARD" in line for line in once)

    teardown_node_network(node)
    assert iptables_lines(ns) == before
    assert "timonel0" not in sh(ns, "ip", "link").stdout
    teardown_node_network(node)  # nothing left to remove is fine
    assert iptables_lines(ns) == before


def test_legacy_backend_is_followed_when_the_node_uses_it(lab: Lab) -> None:
    node = lab.node("node", "10.88.0.0/24")
    ns = node.node_netns or ""
    assert sh(ns, "iptables-legacy", "-P", "FORWARD", "DROP").returncode == 0
    assert detect(ns)[0] == "legacy"
    lab.node("outside", "10.99.0.0/24")
    lab.wire("node", "192.168.77.1", "outside", "192.168.77.2")
    pod = lab.netns("pod")
    ensure_bridge(node)
    enable_forwarding(node)
    setup_pod_network(pod, "pod", node)
    assert not can_connect(pod, lab.path("outside"), "192.168.77.2", NEGATIVE_TIMEOUT)
    assert setup_node_network(node).iptables_backend == "legacy"
    assert tcp_peer(pod, lab.path("outside"), "192.168.77.2") == "192.168.77.1"
    assert "TIMONEL-FORWARD" in sh(ns, "iptables-legacy-save").stdout
    assert "TIMONEL" not in sh(ns, "iptables-nft-save").stdout
    teardown_node_network(node)
    assert "TIMONEL" not in sh(ns, "iptables-legacy-save").stdout


def test_peer_routes_reconcile_only_our_own(lab: Lab) -> None:
    node = lab.node("node", "10.88.0.0/24")
    lab.node("peer", "10.99.0.0/24")
    lab.wire("node", "192.168.50.1", "peer", "192.168.50.2")
    lab.wire("node", "192.168.60.1", "peer", "192.168.60.2", suffix="2")

    def foreign_route() -> None:
        with IPRoute() as ipr:
            ipr.route("add", dst="10.77.0.0/24", gateway="192.168.50.2")

    run_in_netns(node.node_netns, foreign_route)

    ch = set_peer_routes({"10.88.1.0/24": "192.168.50.2", "10.88.2.0/24": "192.168.50.2"}, node)
    assert ch.added == {"10.88.1.0/24": "192.168.50.2", "10.88.2.0/24": "192.168.50.2"} and not ch.removed
    ch = set_peer_routes({"10.88.1.0/24": "192.168.50.2", "10.88.2.0/24": "192.168.50.2"}, node)
    assert not ch.added and not ch.removed
    ch = set_peer_routes({"10.88.2.0/24": "192.168.60.2", "10.88.3.0/24": "192.168.50.2"}, node)
    assert ch.added == {"10.88.2.0/24": "192.168.60.2", "10.88.3.0/24": "192.168.50.2"}
    assert ch.removed == {"10.88.1.0/24": "192.168.50.2"}
    assert list_peer_routes(node) == {"10.88.2.0/24": "192.168.60.2", "10.88.3.0/24": "192.168.50.2"}
    shown = sh(node.node_netns or "", "ip", "route").stdout
    assert f"10.88.2.0/24 via 192.168.60.2 dev to-peer2 proto {ROUTE_PROTOCOL}" in shown

    with pytest.raises(NetworkError, match=r"10.88.9.0/24 via 172.31.0.1: .*directly connected"):
        set_peer_routes({"10.88.9.0/24": "172.31.0.1", "10.88.4.0/24": "192.168.50.2"}, node)
    assert list_peer_routes(node) == {"10.88.4.0/24": "192.168.50.2"}  # the good one applied

    set_peer_routes({}, node)
    assert list_peer_routes(node) == {}
    assert "10.77.0.0/24 via 192.168.50.2" in sh(node.node_netns or "", "ip", "route").stdout
