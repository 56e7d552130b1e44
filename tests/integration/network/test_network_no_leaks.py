"""200 pod network lifecycles leave nothing behind: veths, netns files, mounts,
iptables rules, IPAM records, file descriptors, threads."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from timonel_netlab import Lab, iptables_lines, links, requires_root, tcp_peer

from timonel.node_agent.runtime.network import (
    NetworkConfig,
    create_netns,
    delete_netns,
    gc_pod_networks,
    ipam,
    list_netns,
    setup_node_network,
    setup_pod_network,
    teardown_node_network,
    teardown_pod_network,
)

pytestmark = requires_root

CYCLES = 200


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with Lab(tmp_path) as lab:
        yield lab


def fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if path in line]


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def cycle(lab: Lab, node: NetworkConfig, i: int, check: bool = False) -> None:
    name = f"cycle-{i}"
    path = create_netns(name, lab.netns_dir)
    net = setup_pod_network(path, name, node)
    if check:
        assert tcp_peer(path, node.node_netns or "", "10.88.0.1") == net.ip
    teardown_pod_network(name, node, path)
    delete_netns(name, lab.netns_dir)


def test_no_leaks_after_200_pod_cycles(lab: Lab) -> None:
    node = lab.node("node", "10.88.0.0/24")
    ns = node.node_netns or ""
    setup_node_network(node)
    rules = iptables_lines(ns)
    node_links = links(ns)
    for i in range(20):  # warm-up: first-use imports, caches, malloc arenas are not leaks
        cycle(lab, node, -1 - i)
    gc.collect()  # descriptors of earlier tests' garbage must not close mid-count
    fds_before, threads_before, rss_before = fds(), threading.active_count(), rss_kib()

    started = time.monotonic()
    for i in range(CYCLES):
        cycle(lab, node, i, check=i % 50 == 0)
    elapsed = time.monotonic() - started

    assert links(ns) == node_links
    assert list_netns(lab.netns_dir) == ["node"]
    assert [m for m in mounts_under(lab.netns_dir) if "cycle-" in m] == []
    assert ipam.list_allocations(node.state_dir) == []
    assert iptables_lines(ns) == rules
    gc.collect()
    assert fds() - fds_before == set()  # new descriptors are leaks; closed old ones are not
    assert threading.active_count() == threads_before
    # Generous: catches a per-cycle leak of tens of KiB, not allocator noise.
    assert rss_kib() - rss_before < 8 * 1024, f"RSS grew {rss_kib() - rss_before} KiB over {CYCLES} cycles"
    assert elapsed < 120, f"{CYCLES} cycles took {elapsed:.1f}s"

    teardown_node_network(node)
    assert not [line for line in iptables_lines(ns) if "TIMONEL" in line]
    assert links(ns) == {"lo"}


def test_gc_cleans_up_after_a_crash(lab: Lab) -> None:
    """The runtime died between deleting sandboxes and tearing down their networks."""
    node = lab.node("node", "10.88.0.0/24")
    setup_node_network(node)
    paths = {f"p{i}": create_netns(f"p{i}", lab.netns_dir) for i in range(4)}
    nets = {name: setup_pod_network(p, name, node) for name, p in paths.items()}

    removed = gc_pod_networks(node, live_pod_ids={"p0", "p1"})
    assert sorted(removed) == sorted([nets["p2"].host_veth, nets["p3"].host_veth])
    assert sorted(a.pod_id for a in ipam.list_allocations(node.state_dir)) == ["p0", "p1"]
    assert tcp_peer(paths["p0"], paths["p1"], nets["p1"].ip) == nets["p0"].ip
    for name in paths:
        delete_netns(name, lab.netns_dir)
