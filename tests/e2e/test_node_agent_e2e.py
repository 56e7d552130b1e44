"""End to end on `timonel up`: a pod applied with the real kubectl runs on this node."""

from __future__ import annotations

from tests.e2e.conftest import UpCluster


def test_up_node_ready(up_cluster: UpCluster) -> None:
    node = up_cluster.get(f"/api/v1/nodes/{up_cluster.node}")
    assert node is not None
    assert node["spec"]["podCIDR"] == up_cluster.pod_cidr
    out = up_cluster.kubectl("get", "nodes", "-o", "name").stdout
    assert f"node/{up_cluster.node}" in out
