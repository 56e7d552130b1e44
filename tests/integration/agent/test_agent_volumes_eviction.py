"""downwardAPI, projected and hostPath volumes, and eviction under memory pressure, on a real agent.

Pressure is made deterministic by restarting the agent with a threshold no
machine meets (memory.available<1000Ti); its pods survive the restart, and it
then evicts them one per heartbeat in upstream's order.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from timonel.node_agent.runtime.api import runtime_pb2 as pb

from .agent_harness import Cluster, run_cluster, wait_for

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the runtime daemon creates "
                                 "namespaces, cgroups, mounts and network interfaces"),
              pytest.mark.timeout(400)]

LOOP = "trap 'exit 0' TERM; while true; do sleep 1; done"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("agentvol"))


@pytest.fixture(scope="module")
def cluster(base: Path) -> Iterator[Cluster]:
    (base / "cluster").mkdir()
    yield from run_cluster(base / "cluster")


def pod(name: str, node: str, volumes: list[dict[str, Any]], mounts: list[dict[str, Any]],
        script: str = "", resources: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}, "annotations": {"team": "d"}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 5, "volumes": volumes,
                     "containers": [{"name": "main", "image": "busybox:latest", "imagePullPolicy": "IfNotPresent",
                                     "command": ["sh", "-c", script + LOOP], "volumeMounts": mounts,
                                     "resources": resources or {}}]}}


def phase_of(c: Cluster, ns: str, name: str) -> dict[str, Any]:
    got = c.get(f"/api/v1/namespaces/{ns}/pods/{name}")
    assert got is not None
    return got


def running(c: Cluster, ns: str, name: str) -> dict[str, Any] | None:
    p = phase_of(c, ns, name)
    css = (p.get("status") or {}).get("containerStatuses") or []
    return p if css and all("running" in s["state"] for s in css) else None


def container_id(p: dict[str, Any]) -> str:
    return str(p["status"]["containerStatuses"][0]["containerID"]).removeprefix("timonel://")


def cat(c: Cluster, cid: str, path: str) -> str:
    got = c.runtime.exec_sync(cid, ["cat", path], timeout=30)
    assert got.exit_code == 0, got.stderr
    return got.stdout.decode()


def events(c: Cluster, ns: str, reason: str) -> list[dict[str, Any]]:
    items = (c.get(f"/api/v1/namespaces/{ns}/events") or {}).get("items", [])
    return [e for e in items if e["reason"] == reason]


def test_downward_projected_and_host_path_volumes(cluster: Cluster, base: Path) -> None:
    c = cluster
    ns = c.namespace()
    c.create(f"/api/v1/namespaces/{ns}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                                     "metadata": {"name": "cm"}, "data": {"a": "from-cm"}})
    c.create(f"/api/v1/namespaces/{ns}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"},
        "data": {"user": base64.b64encode(b"from-secret").decode()}})
    host_dir = base / "host" / "made-by-agent"
    volumes = [
        {"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "main", "resource": "limits.memory",
                                                 "divisor": "1Mi"}}]}},
        {"name": "all", "projected": {"sources": [
            {"configMap": {"name": "cm", "items": [{"key": "a", "path": "conf/a"}]}},
            {"secret": {"name": "sec"}},
            {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}},
        {"name": "host", "hostPath": {"path": str(host_dir), "type": "DirectoryOrCreate"}},
    ]
    mounts = [{"name": "info", "mountPath": "/etc/info"}, {"name": "all", "mountPath": "/etc/all"},
              {"name": "host", "mountPath": "/host"}]
    c.create(f"/api/v1/namespaces/{ns}/pods",
             pod("vols", c.agent.node, volumes, mounts, script="echo written-in-pod > /host/out; ",
                 resources={"limits": {"memory": "48Mi"}}, labels={"app": "vols", "tier": "one"}))
    p = wait_for("the volumes pod to run", lambda: running(c, ns, "vols"), timeout=120)
    cid = container_id(p)
    assert cat(c, cid, "/etc/info/labels") == 'app="vols"\ntier="one"'
    assert cat(c, cid, "/etc/info/annotations") == 'team="d"'
    assert cat(c, cid, "/etc/info/name") == "vols"
    assert cat(c, cid, "/etc/info/mem") == "48"
    assert cat(c, cid, "/etc/all/conf/a") == "from-cm"
    assert cat(c, cid, "/etc/all/user") == "from-secret"
    assert cat(c, cid, "/etc/all/ns") == ns
    assert host_dir.is_dir()
    wait_for("the container's write on the host", lambda: (host_dir / "out").exists())
    assert (host_dir / "out").read_text() == "written-in-pod\n"

    r = c.http.patch(c.url(f"/api/v1/namespaces/{ns}/pods/vols"), data='{"metadata":{"labels":{"tier":"two"}}}',
                     headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    wait_for("the labels file to follow the change",
             lambda: cat(c, cid, "/etc/info/labels") == 'app="vols"\ntier="two"', timeout=60)


def test_host_path_file_missing_fails_with_upstream_message(cluster: Cluster, base: Path) -> None:
    c = cluster
    ns = c.namespace()
    missing = base / "host" / "no-such-file"
    c.create(f"/api/v1/namespaces/{ns}/pods",
             pod("nofile", c.agent.node, [{"name": "cfg", "hostPath": {"path": str(missing), "type": "File"}}],
                 [{"name": "cfg", "mountPath": "/cfg"}]))
    want = f'MountVolume.SetUp failed for volume "cfg" : hostPath type check failed: {missing} is not a file'
    wait_for("a FailedMount event", lambda: [e for e in events(c, ns, "FailedMount") if e["message"] == want])
    assert not missing.exists()
    p = phase_of(c, ns, "nofile")
    assert p["status"]["phase"] == "Pending" and "running" not in str(p["status"].get("containerStatuses"))


def test_empty_dir_over_its_size_limit_is_evicted(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    c.create(f"/api/v1/namespaces/{ns}/pods", pod(
        "filler", c.agent.node, [{"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}}],
        [{"name": "scratch", "mountPath": "/scratch"}],
        script="dd if=/dev/zero of=/scratch/fill bs=1024 count=2048; "))
    st = wait_for("the filler pod's eviction", lambda: failed_status(c, ns, "filler"), timeout=120)
    assert (st["reason"], st["message"]) == ("Evicted", 'Usage of EmptyDir volume "scratch" exceeds the limit "1Mi". ')
    wait_for("the Evicted event", lambda: [e["message"] for e in events(c, ns, "Evicted")] == [st["message"]],
             timeout=30)


def node_condition(c: Cluster, ctype: str) -> str:
    node = c.get(f"/api/v1/nodes/{c.agent.node}")
    assert node is not None
    return next(x["status"] for x in node["status"]["conditions"] if x["type"] == ctype)


def failed_status(c: Cluster, ns: str, name: str) -> dict[str, Any] | None:
    st: dict[str, Any] = phase_of(c, ns, name).get("status") or {}
    return st if st.get("phase") == "Failed" else None


def test_memory_pressure_evicts_best_effort_then_burstable_then_guaranteed(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    specs = {
        "guaranteed": {"limits": {"memory": "64Mi", "cpu": "500m"}},
        "burstable": {"requests": {"memory": "16Mi"}},
        "besteffort": {},
    }
    for name, res in specs.items():
        c.create(f"/api/v1/namespaces/{ns}/pods", pod(name, c.agent.node, [], [], resources=res))
    for name in specs:
        try:
            wait_for(f"{name} to run", lambda n=name: running(c, ns, n), timeout=120)  # type: ignore[misc]
        except AssertionError:
            raise AssertionError(f"{name} not running: {phase_of(c, ns, name).get('status')}\n"
                                 f"runtime log: {c.daemon.log.read_text()[-3000:]}") from None
    assert phase_of(c, ns, "besteffort")["status"]["qosClass"] == "BestEffort"
    assert node_condition(c, "MemoryPressure") == "False"

    c.agent.stop()
    c.agent.extra_args = ["--eviction-hard", "memory.available<1000Ti"]
    c.agent.start()
    try:
        order: list[str] = []
        deadline = time.monotonic() + 240
        while len(order) < len(specs) and time.monotonic() < deadline:
            assert c.agent.proc is not None and c.agent.proc.poll() is None, c.agent.log_tail()
            for name in specs:
                st = phase_of(c, ns, name)["status"]
                if name not in order and st.get("phase") == "Failed" and st.get("reason") == "Evicted":
                    order.append(name)
            time.sleep(0.3)
        assert order == ["besteffort", "burstable", "guaranteed"], (order, c.agent.log_tail())
        assert node_condition(c, "MemoryPressure") == "True"
        st = phase_of(c, ns, "besteffort")["status"]
        assert st["message"].startswith("The node was low on resource: memory. Threshold quantity: 1000Ti, "
                                        "available: "), st["message"]
        assert "Container main was using " in st["message"]  # over its (zero) request
        assert {x["type"]: x["status"] for x in st["conditions"]}.get("DisruptionTarget") == "True"
        wait_for("the Evicted events", lambda: {e["involvedObject"]["name"]
                                                for e in events(c, ns, "Evicted")} == set(specs), timeout=30)
        for name in specs:  # killed, and the pod objects stay for their controllers
            uid = phase_of(c, ns, name)["metadata"]["uid"]
            wait_for(f"{name}'s containers to stop", lambda uid=uid: all(  # type: ignore[misc]
                x.state == pb.CONTAINER_EXITED for x in c.runtime.list_containers(
                    pb.ContainerFilter(label_selector={"io.kubernetes.pod.uid": uid}))))
        # Still under pressure: a new BestEffort pod is turned away at admission, never started.
        c.create(f"/api/v1/namespaces/{ns}/pods", pod("late", c.agent.node, [], []))
        st = wait_for("the late pod's rejection", lambda: failed_status(c, ns, "late"))
        assert (st["reason"], st["message"]) == (
            "Evicted", "Pod was rejected: The node had condition: [MemoryPressure]. ")
        late_uid = phase_of(c, ns, "late")["metadata"]["uid"]
        assert c.runtime.list_sandboxes(pb.PodSandboxFilter(label_selector={"io.kubernetes.pod.uid": late_uid})) == []
    finally:
        c.agent.stop()
        c.agent.extra_args = []
        c.agent.start()
    wait_for("MemoryPressure to clear", lambda: node_condition(c, "MemoryPressure") == "False", timeout=60)
