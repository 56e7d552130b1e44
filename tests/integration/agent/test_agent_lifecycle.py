"""Pod lifecycle rules through a real agent: init containers in order, restart
policies and CrashLoopBackOff, a missing secret holding a container back until
it exists, and the securityContext reaching the container."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from timonel.node_agent.runtime.api import runtime_pb2 as pb

from .agent_harness import Cluster, event_reasons, namespace_events, run_cluster, wait_for

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the runtime daemon creates "
                                 "namespaces, cgroups, mounts and network interfaces"),
              pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from run_cluster(Path(tmp_path_factory.mktemp("agent-life")))


def container(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox:latest", "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", script], **extra}


def make_pod(c: Cluster, ns: str, name: str, containers: list[dict[str, Any]], **spec: Any) -> None:
    c.create(f"/api/v1/namespaces/{ns}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": c.agent.node, "terminationGracePeriodSeconds": 2,
                 "containers": containers, **spec}})


def pod_when(c: Cluster, ns: str, name: str, check: Any) -> dict[str, Any] | None:
    pod = c.get(f"/api/v1/namespaces/{ns}/pods/{name}")
    return pod if pod and check(pod.get("status") or {}) else None


def valid(pod: dict[str, Any]) -> None:
    k8s.ApiClient()._ApiClient__deserialize(pod, "V1Pod")  # type: ignore[attr-defined]


def test_never_pod_fails_when_its_container_fails(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    make_pod(c, ns, "fails", [container("main", "exit 1")], restartPolicy="Never",
             initContainers=[container("prep", "true")])
    pod = wait_for("the pod to finish", lambda: pod_when(
        c, ns, "fails", lambda st: st.get("phase") in ("Succeeded", "Failed")), timeout=120)
    st = pod["status"]
    assert st["phase"] == "Failed"
    main = st["containerStatuses"][0]
    assert main["state"]["terminated"]["exitCode"] == 1 and main["state"]["terminated"]["reason"] == "Error"
    assert main["restartCount"] == 0
    valid(pod)


def test_init_containers_run_in_order_then_the_pod_succeeds(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    mount = [{"name": "work", "mountPath": "/work"}]
    make_pod(c, ns, "init2", [container("main", 'test "$(cat /work/log)" = "$(printf "one\\ntwo")" && '
                                                'test "$(id -u)" = 1000', volumeMounts=mount)],
             restartPolicy="Never", securityContext={"runAsUser": 1000},
             volumes=[{"name": "work", "emptyDir": {}}],
             initContainers=[container(n, f"echo {n} >> /work/log", volumeMounts=mount)
                             for n in ("one", "two")])
    pod = wait_for("the pod to finish", lambda: pod_when(
        c, ns, "init2", lambda st: st.get("phase") in ("Succeeded", "Failed")), timeout=120)
    st = pod["status"]
    assert st["phase"] == "Succeeded", st
    assert [s["state"]["terminated"]["reason"] for s in st["initContainerStatuses"]] == ["Completed"] * 2
    main = st["containerStatuses"][0]
    assert main["state"]["terminated"]["exitCode"] == 0 and main["restartCount"] == 0
    conds = {x["type"]: x for x in st["conditions"]}
    assert conds["Initialized"]["status"] == "True" and conds["Ready"]["status"] == "False"
    valid(pod)


def test_crashing_container_backs_off(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    make_pod(c, ns, "crash", [container("bad", "exit 3")])

    def backing_off(st: dict[str, Any]) -> bool:
        s = (st.get("containerStatuses") or [{}])[0]
        return (s.get("state") or {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"
    pod = wait_for("CrashLoopBackOff", lambda: pod_when(c, ns, "crash", backing_off), timeout=120)
    s = pod["status"]["containerStatuses"][0]
    assert s["restartCount"] >= 1 and s["lastState"]["terminated"]["exitCode"] == 3
    assert s["lastState"]["terminated"]["reason"] == "Error" and not s["ready"]
    assert "back-off 10s" in s["state"]["waiting"]["message"]
    assert pod["status"]["phase"] == "Running"
    valid(pod)
    wait_for("a BackOff event", lambda: "BackOff" in event_reasons(c, ns), timeout=30)


def test_on_failure_pod_succeeds_and_is_not_restarted(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    make_pod(c, ns, "once", [container("ok", "exit 0")], restartPolicy="OnFailure")
    pod = wait_for("Succeeded", lambda: pod_when(c, ns, "once", lambda st: st.get("phase") == "Succeeded"),
                   timeout=120)
    s = pod["status"]["containerStatuses"][0]
    assert s["restartCount"] == 0 and s["state"]["terminated"]["reason"] == "Completed"


def test_missing_secret_holds_the_container_until_it_exists(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    make_pod(c, ns, "needs", [container("main", "sleep 3600", env=[
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "token"}}}])])

    def config_error(st: dict[str, Any]) -> bool:
        s = (st.get("containerStatuses") or [{}])[0]
        return (s.get("state") or {}).get("waiting", {}).get("reason") == "CreateContainerConfigError"
    pod = wait_for("CreateContainerConfigError", lambda: pod_when(c, ns, "needs", config_error), timeout=120)
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"] == 'secret "later" not found'
    valid(pod)
    c.create(f"/api/v1/namespaces/{ns}/secrets", {"apiVersion": "v1", "kind": "Secret",
                                                  "metadata": {"name": "later"},
                                                  "data": {"token": base64.b64encode(b"t").decode()}})
    wait_for("Running", lambda: pod_when(c, ns, "needs", lambda st: st.get("phase") == "Running"), timeout=120)


def test_security_context_reaches_the_container(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    make_pod(c, ns, "locked", [container("main", "sleep 3600", securityContext={
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsUser": 1000,
        "runAsGroup": 3000, "capabilities": {"drop": ["ALL"]}})])
    pod = wait_for("Running", lambda: pod_when(c, ns, "locked", lambda st: st.get("phase") == "Running"),
                   timeout=120)
    cid = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("timonel://")
    got = c.runtime.exec_sync(cid, ["sh", "-c", "grep -E '^(NoNewPrivs|CapEff|Uid|Gid):' /proc/1/status; "
                                                "touch /rootfs-write && echo WROTE"], timeout=30)
    out = got.stdout.decode()
    fields = {line.split(":")[0]: line.split()[1] for line in out.splitlines() if ":" in line}
    assert fields == {"NoNewPrivs": "1", "CapEff": "0000000000000000", "Uid": "1000", "Gid": "3000"}, out
    assert "WROTE" not in out


def test_missing_command_is_retried_with_back_off(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    make_pod(c, ns, "nocmd", [container("main", "", command=["/does-not-exist"])])

    def create_error(st: dict[str, Any]) -> bool:
        s = (st.get("containerStatuses") or [{}])[0]
        return (s.get("state") or {}).get("waiting", {}).get("reason") == "CreateContainerError"
    pod = wait_for("CreateContainerError", lambda: pod_when(c, ns, "nocmd", create_error), timeout=120)
    assert "/does-not-exist" in pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    valid(pod)
    time.sleep(8)
    failed = [e for e in (c.get(f"/api/v1/namespaces/{ns}/events") or {}).get("items", [])
              if e["reason"] == "Failed"]
    # 1 s doubling: at most ~5 tries in 8 s, not one a second.
    assert 1 <= sum(e.get("count", 1) for e in failed) <= 5, failed


def test_sandbox_the_runtime_refuses_is_reported_and_retried(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    # The runtime maps no host ports yet: it refuses the sandbox.
    make_pod(c, ns, "hostport", [container("main", "sleep 3600",
                                           ports=[{"containerPort": 80, "hostPort": 8080}])])

    def reported() -> bool:
        items = (c.get(f"/api/v1/namespaces/{ns}/events") or {}).get("items", [])
        return any(e["reason"] == "FailedCreatePodSandBox" for e in items)
    wait_for("FailedCreatePodSandBox", reported, timeout=120)
    pod = c.get(f"/api/v1/namespaces/{ns}/pods/hostport")
    assert pod is not None and pod["status"]["phase"] == "Pending"
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
    valid(pod)


def test_active_deadline_fails_the_pod(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    make_pod(c, ns, "deadline", [container("main", "trap 'exit 0' TERM; while true; do sleep 1; done")],
             activeDeadlineSeconds=3)
    pod = wait_for("the deadline to fail the pod", lambda: pod_when(
        c, ns, "deadline", lambda st: st.get("phase") == "Failed"), timeout=120)
    st = pod["status"]
    assert st["reason"] == "DeadlineExceeded" and "deadline" in st["message"]
    assert "terminated" in st["containerStatuses"][0]["state"]
    valid(pod)
    uid = pod["metadata"]["uid"]
    running = [x for x in c.runtime.list_containers(pb.ContainerFilter(label_selector={
        "io.kubernetes.pod.uid": uid})) if x.state == pb.CONTAINER_RUNNING]
    assert running == []


def test_deleted_pod_held_by_a_finalizer_ends_in_a_terminal_phase(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    c.create(f"/api/v1/namespaces/{ns}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "held", "finalizers": ["example.com/hold"]},
        "spec": {"nodeName": c.agent.node, "terminationGracePeriodSeconds": 20,
                 "containers": [container("main", "trap 'exit 0' TERM; while true; do sleep 1; done")]}})
    pod = wait_for("Running", lambda: pod_when(c, ns, "held", lambda st: st.get("phase") == "Running"),
                   timeout=120)
    uid = pod["metadata"]["uid"]
    r = c.http.delete(c.url(f"/api/v1/namespaces/{ns}/pods/held"))
    assert r.status_code in (200, 202), r.text
    pod = wait_for("the terminal phase", lambda: pod_when(c, ns, "held", lambda st: st.get("phase") == "Succeeded"),
                   timeout=90)
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"  # SIGTERM was handled: a graceful stop
    valid(pod)
    wait_for("the runtime to be clean", lambda: not c.runtime.list_sandboxes(
        pb.PodSandboxFilter(label_selector={"io.kubernetes.pod.uid": uid})), timeout=60)
    r = c.http.patch(c.url(f"/api/v1/namespaces/{ns}/pods/held"), json={"metadata": {"finalizers": None}},
                     headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    wait_for("the pod to go", lambda: c.get(f"/api/v1/namespaces/{ns}/pods/held") is None, timeout=60)


def test_images_missing_locally(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    # Never: not pulled at all. IfNotPresent from a registry that is not there
    # (a closed loopback port): a failed pull, then back-off.
    make_pod(c, ns, "never", [{"name": "main", "image": "nothere:1", "imagePullPolicy": "Never"}])
    make_pod(c, ns, "pull", [{"name": "main", "image": "127.0.0.1:1/nothere:1", "imagePullPolicy": "IfNotPresent"}])

    def reason(name: str) -> str:
        pod = c.get(f"/api/v1/namespaces/{ns}/pods/{name}") or {}
        s = ((pod.get("status") or {}).get("containerStatuses") or [{}])[0]
        return str((s.get("state") or {}).get("waiting", {}).get("reason", ""))
    wait_for("ErrImageNeverPull", lambda: reason("never") == "ErrImageNeverPull", timeout=120)
    wait_for("ImagePullBackOff", lambda: reason("pull") == "ImagePullBackOff", timeout=120)
    def pull_events() -> list[tuple[str, str]] | None:
        seen = [(e["reason"], e["involvedObject"]["name"]) for e in namespace_events(c, ns)]
        return seen if ("Pulling", "pull") in seen and ("Failed", "pull") in seen else None
    events = wait_for("the Pulling and Failed events", pull_events, timeout=30)
    assert not any(name == "never" and r == "Pulling" for r, name in events)
    for name in ("never", "pull"):
        valid(c.get(f"/api/v1/namespaces/{ns}/pods/{name}") or {})


def test_run_as_non_root_refuses_a_root_image(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    make_pod(c, ns, "nonroot", [container("main", "sleep 3600")], securityContext={"runAsNonRoot": True})

    def refused(st: dict[str, Any]) -> bool:
        s = (st.get("containerStatuses") or [{}])[0]
        return (s.get("state") or {}).get("waiting", {}).get("reason") == "CreateContainerConfigError"
    pod = wait_for("CreateContainerConfigError", lambda: pod_when(c, ns, "nonroot", refused), timeout=120)
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"] == \
        "container has runAsNonRoot and image will run as root"
    assert not c.runtime.list_containers(pb.ContainerFilter(label_selector={
        "io.kubernetes.pod.uid": pod["metadata"]["uid"]}))
