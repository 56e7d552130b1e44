"""Pod spec -> runtime configs: QoS, resources, security context; the Node object."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s

from timonel.node_agent.agent import containers as cfgs
from timonel.node_agent.agent import node as nodes
from timonel.node_agent.agent.envvars import ConfigError
from timonel.node_agent.agent.volumes import MountSpec
from timonel.node_agent.runtime.api import runtime_pb2 as pb


def pod(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
            "spec": {"containers": list(containers), **spec}}


@pytest.mark.parametrize(("resources", "qos"), [
    ({}, "BestEffort"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1Gi"}}, "Guaranteed"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}, "Burstable"),
    ({"limits": {"memory": "1Gi"}}, "Burstable"),
    ({"requests": {"cpu": "100m"}}, "Burstable"),
])
def test_qos_class(resources: dict[str, Any], qos: str) -> None:
    assert cfgs.qos_class(pod({"name": "a", "resources": resources})) == qos


def test_resources_map_to_cgroup_limits() -> None:
    c = {"name": "a", "resources": {"limits": {"cpu": "250m", "memory": "64Mi"},
                                    "requests": {"cpu": "100m", "memory": "32Mi"}}}
    r = cfgs.linux_resources(pod(c), c, memory_capacity=1 << 30)
    assert (r.cpu_period, r.cpu_quota, r.cpu_shares) == (100_000, 25_000, 102)
    assert r.memory_limit_in_bytes == 64 << 20
    assert r.oom_score_adj == 1000 - (1000 * (32 << 20)) // (1 << 30)
    best = {"name": "b"}
    r = cfgs.linux_resources(pod(best), best, memory_capacity=1 << 30)
    assert (r.cpu_quota, r.cpu_shares, r.memory_limit_in_bytes, r.oom_score_adj) == (0, 2, 0, 1000)
    g = {"name": "g", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}
    assert cfgs.linux_resources(pod(g), g, 1 << 30).oom_score_adj == -997


def test_security_context_pod_defaults_and_container_overrides() -> None:
    c = {"name": "a", "securityContext": {"runAsUser": 1000, "allowPrivilegeEscalation": False,
                                          "readOnlyRootFilesystem": True,
                                          "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                                          "seccompProfile": {"type": "RuntimeDefault"}}}
    p = pod(c, securityContext={"runAsUser": 5, "runAsGroup": 7, "fsGroup": 9, "supplementalGroups": [11]})
    sc = cfgs.linux_security(p, c)
    assert sc.run_as_user.value == 1000 and sc.run_as_group.value == 7
    assert list(sc.supplemental_groups) == [11, 9]
    assert sc.no_new_privs and sc.readonly_rootfs and not sc.privileged
    assert list(sc.capabilities.add_capabilities) == ["NET_ADMIN"]
    assert list(sc.capabilities.drop_capabilities) == ["ALL"]
    assert sc.seccomp.profile_type == pb.SecurityProfile.RuntimeDefault
    plain = {"name": "b"}
    sc = cfgs.linux_security(pod(plain), plain)
    assert not sc.no_new_privs and not sc.HasField("run_as_user") and not sc.HasField("seccomp")


def test_run_as_non_root_is_enforced() -> None:
    c = {"name": "a", "securityContext": {"runAsNonRoot": True}}
    root_image = pb.Image(id="sha256:x")
    with pytest.raises(ConfigError, match="will run as root"):
        cfgs.check_non_root(pod(c), c, root_image)
    with pytest.raises(ConfigError, match="non-numeric user"):
        cfgs.check_non_root(pod(c), c, pb.Image(id="x", username="nobody"))
    cfgs.check_non_root(pod(c), c, pb.Image(id="x", uid=pb.Int64Value(value=1000)))
    ok = {"name": "a", "securityContext": {"runAsNonRoot": True, "runAsUser": 1000}}
    cfgs.check_non_root(pod(ok), ok, root_image)


def test_container_config_carries_identity_labels_and_mounts() -> None:
    c = {"name": "a", "image": "busybox:latest", "workingDir": "/w"}
    p = pod(c)
    cfg = cfgs.container_config(p, c, "regular", 2, "n1", "sha256:img", ["sh"], ["-c", "true"],
                                [("A", "1")], [MountSpec("/data", "/host/data", True)], 1 << 30)
    assert cfg.metadata.attempt == 2 and cfg.log_path == "a/2.log" and cfg.working_dir == "/w"
    assert dict(cfg.labels) == {cfgs.POD_UID: "u-1", cfgs.POD_NAME: "p", cfgs.POD_NAMESPACE: "ns",
                                cfgs.NODE: "n1", cfgs.CONTAINER_NAME: "a", cfgs.CONTAINER_KIND: "regular"}
    assert [(m.container_path, m.host_path, m.readonly) for m in cfg.mounts] == [("/data", "/host/data", True)]
    sb = cfgs.sandbox_config(pod(c, hostNetwork=True), "n1", "/d", 1)
    assert sb.linux.security_context.namespace_options.network == pb.NODE and sb.metadata.attempt == 1


def test_node_object_is_upstream_valid() -> None:
    m = nodes.Machine(cpus=2, memory_bytes=4 << 30, storage_bytes=20 << 30, hostname="h1",
                      internal_ip="192.0.2.7")
    conds = nodes.node_conditions([], nodes.Pressure(), runtime_ready=True)
    obj = nodes.node_object("h1", m, "timonel://0.1.0", conds)
    obj["metadata"]["uid"] = "x"
    v1 = k8s.ApiClient()._ApiClient__deserialize(obj, "V1Node")  # type: ignore[attr-defined]
    assert v1.status.capacity == {"cpu": "2", "memory": f"{4 << 20}Ki", "ephemeral-storage": f"{20 << 20}Ki",
                                  "pods": "110", "hugepages-1Gi": "0", "hugepages-2Mi": "0"}
    by_type = {c.type: c for c in v1.status.conditions}
    assert by_type["Ready"].status == "True" and by_type["Ready"].reason == "KubeletReady"
    assert by_type["MemoryPressure"].reason == "KubeletHasSufficientMemory"
    down = nodes.node_conditions(conds, nodes.Pressure(disk=True), runtime_ready=False, runtime_message="x")
    by_type2 = {c["type"]: c for c in down}
    assert by_type2["Ready"]["status"] == "False" and by_type2["DiskPressure"]["reason"] == "KubeletHasDiskPressure"
    same = nodes.node_conditions(conds, nodes.Pressure(), runtime_ready=True)
    assert [c["lastTransitionTime"] for c in same] == [c["lastTransitionTime"] for c in conds]
    lease = nodes.lease_object(obj, "2026-01-01T00:00:00.000000Z")
    assert k8s.ApiClient()._ApiClient__deserialize(lease, "V1Lease").spec.holder_identity == "h1"  # type: ignore[attr-defined]


def test_container_ports_become_port_mappings() -> None:
    c = {"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP", "hostPort": 5353}]}
    sb = cfgs.sandbox_config(pod(c), "n1", "/d", 0)
    assert [(m.protocol, m.container_port, m.host_port) for m in sb.port_mappings] == [
        (pb.TCP, 80, 0), (pb.UDP, 53, 5353)]
