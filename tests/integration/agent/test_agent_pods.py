"""The node agent end to end: a real API server, runtime daemon and `timonel agent`.

A pod of two busybox containers sharing an emptyDir, with env from a secret
and a configMap volume, runs, shows upstream-valid status, restarts a killed
container, survives an agent restart untouched, and leaves nothing behind
when deleted; a pod deleted while the agent was down is removed as an orphan.
"""

from __future__ import annotations

import base64
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.integration.conftest import start_server
from timonel.node_agent.runtime.api import runtime_pb2 as pb

from .agent_harness import Cluster, event_reasons, run_cluster, wait_for

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the runtime daemon creates "
                                 "namespaces, cgroups, mounts and network interfaces"),
              pytest.mark.timeout(300)]

POD_UID = "io.kubernetes.pod.uid"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from run_cluster(Path(tmp_path_factory.mktemp("agent")))


def deserialize(obj: dict[str, Any], kind: str) -> Any:
    # The official client's own model check: it raises on anything off-schema.
    return k8s.ApiClient()._ApiClient__deserialize(obj, kind)  # type: ignore[attr-defined]


def shared_pod(name: str, node: str) -> dict[str, Any]:
    loop = "trap 'exit 0' TERM; while true; do sleep 1; done"
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "nodeName": node, "terminationGracePeriodSeconds": 10,
            "volumes": [{"name": "shared", "emptyDir": {}},
                        {"name": "config", "configMap": {"name": "app-config"}}],
            "containers": [
                {"name": "writer", "image": "busybox:latest", "imagePullPolicy": "IfNotPresent",
                 "command": ["sh", "-c"],
                 "args": ["echo \"$(GREETING) from $(POD_NAME)\" > /shared/msg; echo $(POD_IP) > /shared/ip; "
                          + loop],
                 "env": [{"name": "GREETING", "valueFrom": {"secretKeyRef": {"name": "app-secret",
                                                                              "key": "greeting"}}},
                         {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                         {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                 "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
                 "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]},
                {"name": "reader", "image": "busybox:latest", "imagePullPolicy": "IfNotPresent",
                 "command": ["sh", "-c", loop],
                 "envFrom": [{"secretRef": {"name": "app-secret"}, "prefix": "S_"}],
                 "volumeMounts": [{"name": "shared", "mountPath": "/shared"},
                                  {"name": "config", "mountPath": "/etc/app", "readOnly": True}]},
            ],
        },
    }


def running_ready(c: Cluster, ns: str, name: str, restarts: int = 0) -> dict[str, Any] | None:
    pod = c.get(f"/api/v1/namespaces/{ns}/pods/{name}")
    if not pod:
        return None
    st = pod.get("status") or {}
    ready = {x["type"]: x["status"] for x in st.get("conditions", [])}.get("Ready") == "True"
    css = st.get("containerStatuses") or []
    if st.get("phase") == "Running" and ready and all("running" in s["state"] for s in css) and \
            sum(s["restartCount"] for s in css) >= restarts:
        return pod
    return None


def ids_and_pids(c: Cluster, pod: dict[str, Any]) -> dict[str, tuple[str, int]]:
    out = {}
    for s in pod["status"]["containerStatuses"]:
        cid = s["containerID"].removeprefix("timonel://")
        out[s["name"]] = (cid, int(c.runtime.container_status(cid).status.pid))
    return out


def test_node_registered_with_lease(cluster: Cluster) -> None:
    node = cluster.get(f"/api/v1/nodes/{cluster.agent.node}")
    assert node is not None
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == cluster.agent.node
    assert labels["kubernetes.io/os"] == "linux" and labels["kubernetes.io/arch"]
    st = node["status"]
    assert int(st["capacity"]["cpu"]) == os.cpu_count() and st["capacity"]["pods"] == "110"
    assert st["capacity"]["memory"].endswith("Ki") and st["allocatable"]["ephemeral-storage"]
    assert {c["type"] for c in st["conditions"]} == {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure"}
    assert st["nodeInfo"]["containerRuntimeVersion"].startswith("timonel")
    assert deserialize(node, "V1Node").status.node_info.operating_system == "linux"
    lease = cluster.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{cluster.agent.node}")
    assert lease and lease["spec"]["holderIdentity"] == cluster.agent.node
    assert deserialize(lease, "V1Lease").spec.renew_time is not None


def test_pod_runs_restarts_survives_agent_restart_and_is_removed(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    c.create(f"/api/v1/namespaces/{ns}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app-secret"},
        "data": {"greeting": base64.b64encode(b"hello").decode()}})
    c.create(f"/api/v1/namespaces/{ns}/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config"},
        "data": {"mode": "shared volume, not base64!"}})
    c.create(f"/api/v1/namespaces/{ns}/pods", shared_pod("web", c.agent.node))
    pod = wait_for("the pod to be Running and Ready", lambda: running_ready(c, ns, "web"), timeout=120)

    # Status in the upstream schema, as the official client reads it.
    v1 = deserialize(pod, "V1Pod")
    assert v1.status.phase == "Running" and v1.status.qos_class == "Burstable"
    assert {x.type for x in v1.status.conditions} >= {"PodScheduled", "Initialized", "ContainersReady", "Ready"}
    assert v1.status.pod_ip and v1.status.pod_ips[0].ip == v1.status.pod_ip and v1.status.host_ip
    assert v1.status.start_time is not None
    for s in v1.status.container_statuses:
        assert s.ready and s.started and s.restart_count == 0 and s.state.running.started_at
        assert s.image == "busybox:latest" and s.image_id and s.container_id.startswith("timonel://")

    ids = ids_and_pids(c, pod)
    reader = ids["reader"][0]
    got = c.runtime.exec_sync(reader, ["sh", "-c", "cat /shared/msg; cat /etc/app/mode; echo; echo $S_greeting; "
                                               "cat /shared/ip"], timeout=30)
    assert got.exit_code == 0, got.stderr
    assert got.stdout.decode().split("\n")[:4] == ["hello from web", "shared volume, not base64!", "hello",
                                                   pod["status"]["podIP"]]
    # The runtime got the memory limit of the writer.
    writer_res = c.runtime.container_status(ids["writer"][0]).status.resources.linux
    assert writer_res.memory_limit_in_bytes == 64 << 20 and writer_res.cpu_quota == 50_000

    # Events are written in the background (a busy agent holds them back a little).
    wait_for("Pulled, Created and Started events",
             lambda: {"Pulled", "Created", "Started"} <= event_reasons(c, ns), timeout=30)

    # Kill the writer's process: it is restarted once, the old run is lastState.
    os.kill(ids["writer"][1], signal.SIGKILL)
    pod = wait_for("the writer to restart", lambda: running_ready(c, ns, "web", restarts=1), timeout=90)
    writer = next(s for s in pod["status"]["containerStatuses"] if s["name"] == "writer")
    assert writer["restartCount"] == 1
    assert writer["lastState"]["terminated"]["exitCode"] == 137
    assert writer["containerID"] != "timonel://" + ids["writer"][0]
    deserialize(pod, "V1Pod")

    # An agent restart adopts what runs: same container IDs, same PIDs.
    before = ids_and_pids(c, pod)
    c.agent.stop()
    c.agent.start()
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{c.agent.node}"
    renew = (c.get(lease_path) or {})["spec"]["renewTime"]
    wait_for("the restarted agent to heartbeat",
             lambda: (c.get(lease_path) or {})["spec"]["renewTime"] != renew, timeout=60)
    adopted = running_ready(c, ns, "web", restarts=1)
    assert adopted is not None
    assert ids_and_pids(c, adopted) == before
    assert sorted(x.id for x in c.runtime.list_containers(
        pb.ContainerFilter(label_selector={POD_UID: pod["metadata"]["uid"]}))) == sorted(
        [before["writer"][0], before["reader"][0], ids["writer"][0]])

    # Deletion: graceful stop, then every trace is gone and the object too.
    uid = pod["metadata"]["uid"]
    r = c.http.delete(c.url(f"/api/v1/namespaces/{ns}/pods/web"))
    assert r.status_code in (200, 202), r.text
    wait_for("the pod object to go", lambda: c.get(f"/api/v1/namespaces/{ns}/pods/web") is None, timeout=90)
    assert c.runtime.list_sandboxes(pb.PodSandboxFilter(label_selector={POD_UID: uid})) == []
    assert c.runtime.list_containers(pb.ContainerFilter(label_selector={POD_UID: uid})) == []
    assert not (c.agent.data_dir / "pods" / uid).exists()
    wait_for("a Killing event", lambda: "Killing" in event_reasons(c, ns), timeout=30)


def test_pod_deleted_while_agent_down_is_removed_as_orphan(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan"},
           "spec": {"nodeName": c.agent.node, "terminationGracePeriodSeconds": 1,
                    # No tag: pull policy Always, yet no pull since the image came from DATA/images.
                    "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}}
    c.create(f"/api/v1/namespaces/{ns}/pods", pod)
    got = wait_for("the pod to run", lambda: running_ready(c, ns, "orphan"), timeout=120)
    assert got["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    uid = got["metadata"]["uid"]
    c.agent.stop()
    r = c.http.delete(c.url(f"/api/v1/namespaces/{ns}/pods/orphan"), json={"gracePeriodSeconds": 0})
    assert r.status_code == 200, r.text
    assert c.runtime.list_sandboxes(pb.PodSandboxFilter(label_selector={POD_UID: uid}))
    c.agent.start()
    wait_for("the orphan sandbox to go",
             lambda: not c.runtime.list_sandboxes(pb.PodSandboxFilter(label_selector={POD_UID: uid})),
             timeout=90)
    assert c.runtime.list_containers(pb.ContainerFilter(label_selector={POD_UID: uid})) == []


def test_api_server_restart_is_survived(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    port = int(c.server.url.rsplit(":", 1)[1])
    c.server.stop()
    c.server = start_server(c.server.data_dir, c.server.etcd_endpoint, port=port, control_plane=False)
    c.http = c.server.session()
    c.create(f"/api/v1/namespaces/{ns}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "after"},
        "spec": {"nodeName": c.agent.node, "terminationGracePeriodSeconds": 1,
                 "volumes": [{"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}}],
                 "containers": [{"name": "main", "image": "busybox:latest", "imagePullPolicy": "IfNotPresent",
                                 "command": ["sleep", "3600"],
                                 "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}]}})
    pod = wait_for("the pod to run after the API server restart", lambda: running_ready(c, ns, "after"),
                   timeout=120)
    cid = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("timonel://")
    got = c.runtime.exec_sync(cid, ["sh", "-c", "grep ' /cache ' /proc/mounts"], timeout=30)
    assert got.stdout.decode().split()[2] == "tmpfs", got.stdout
    volume = c.agent.data_dir / "pods" / pod["metadata"]["uid"] / "volumes" / "cache"
    assert os.path.ismount(volume)
    r = c.http.delete(c.url(f"/api/v1/namespaces/{ns}/pods/after"))
    assert r.status_code in (200, 202), r.text
    wait_for("the pod object to go", lambda: c.get(f"/api/v1/namespaces/{ns}/pods/after") is None, timeout=90)
    assert not os.path.ismount(volume) and not volume.exists()


def test_agent_started_before_the_api_server_registers_when_it_comes(cluster: Cluster) -> None:
    c = cluster
    port = int(c.server.url.rsplit(":", 1)[1])
    c.agent.stop()
    c.server.stop()
    c.agent.start()
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{c.agent.node}"
    wait_for("the agent to retry registration", lambda: "node registration failed" in c.agent.log_tail(),
             timeout=60)
    assert c.agent.proc is not None and c.agent.proc.poll() is None
    c.server = start_server(c.server.data_dir, c.server.etcd_endpoint, port=port, control_plane=False)
    c.http = c.server.session()
    renew = (c.get(lease_path) or {})["spec"]["renewTime"]
    wait_for("the agent to register and heartbeat",
             lambda: (c.get(lease_path) or {})["spec"]["renewTime"] != renew, timeout=60)
