"""Probes and lifecycle hooks through a real API server, runtime daemon and
`timonel agent`: httpGet and tcpSocket readiness (from inside the pod's
network namespace: the runtime runs in a node namespace of its own), an exec
liveness probe that restarts its container after the preStop hook ran before
SIGTERM, a startup probe holding back readiness, and postStart hooks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .agent_harness import Cluster, run_cluster, wait_for

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the runtime daemon creates "
                                 "namespaces, cgroups, mounts and network interfaces"),
              pytest.mark.timeout(300)]

LOOP = "trap 'exit 0' TERM; while true; do sleep 1; done"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from run_cluster(Path(tmp_path_factory.mktemp("probes")))


def make_pod(c: Cluster, ns: str, name: str, containers: list[dict[str, Any]], **spec: Any) -> None:
    for x in containers:
        x.setdefault("image", "busybox:latest")
        x.setdefault("imagePullPolicy", "IfNotPresent")
    c.create(f"/api/v1/namespaces/{ns}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": c.agent.node, "terminationGracePeriodSeconds": 5,
                 "containers": containers, **spec}})


def get_pod(c: Cluster, ns: str, name: str) -> dict[str, Any]:
    pod = c.get(f"/api/v1/namespaces/{ns}/pods/{name}")
    assert pod is not None
    return pod


def conditions(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {x["type"]: x for x in (pod.get("status") or {}).get("conditions", [])}


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in pod["status"]["containerStatuses"] if s["name"] == name)


def events(c: Cluster, ns: str) -> list[tuple[str, str]]:
    items = (c.get(f"/api/v1/namespaces/{ns}/events") or {}).get("items", [])
    return [(e["reason"], e["message"]) for e in items]


def exec_in(c: Cluster, pod: dict[str, Any], name: str, *cmd: str) -> tuple[int, str]:
    cid = container(pod, name)["containerID"].split("://", 1)[1]
    resp = c.runtime.exec_sync(cid, list(cmd), 10)
    return resp.exit_code, (resp.stdout + resp.stderr).decode()


def test_http_and_tcp_readiness(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    make_pod(c, ns, "web", [
        {"name": "web", "command": ["sh", "-c", "mkdir -p /www && echo ok > /www/healthz && "
                                    "exec httpd -f -p 8080 -h /www"],
         "ports": [{"name": "http", "containerPort": 8080}],
         "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http",
                                        "httpHeaders": [{"name": "X-Probe", "value": "yes"}]},
                            "periodSeconds": 1, "failureThreshold": 1}},
        # Listens only after a while: not ready before.
        {"name": "late", "command": ["sh", "-c", "mkdir -p /w && sleep 4 && exec httpd -f -p 9000 -h /w"],
         "readinessProbe": {"tcpSocket": {"port": 9000}, "periodSeconds": 1}},
    ])

    def both_running() -> dict[str, Any] | None:
        pod = get_pod(c, ns, "web")
        css = pod["status"].get("containerStatuses") or []
        return pod if len(css) == 2 and all("running" in s["state"] for s in css) else None
    pod = wait_for("both containers running", both_running)
    started = time.monotonic()
    late = container(pod, "late")
    assert late["ready"] is False and late["started"] is True
    assert conditions(pod)["Ready"]["status"] == "False"

    def ready() -> dict[str, Any] | None:
        p = get_pod(c, ns, "web")
        return p if conditions(p)["Ready"]["status"] == "True" else None
    pod = wait_for("the pod to be Ready", ready, timeout=60)
    assert time.monotonic() - started > 1.0  # the tcp one waited for its listener
    assert all(s["ready"] for s in pod["status"]["containerStatuses"])
    assert conditions(pod)["ContainersReady"]["status"] == "True"

    assert exec_in(c, pod, "web", "rm", "/www/healthz")[0] == 0

    def not_ready() -> dict[str, Any] | None:
        p = get_pod(c, ns, "web")
        return p if conditions(p)["Ready"]["status"] == "False" else None
    pod = wait_for("the pod to turn NotReady", not_ready, timeout=60)
    cond = conditions(pod)["Ready"]
    assert cond["reason"] == "ContainersNotReady"
    assert cond["message"] == "containers with unready status: [web]"
    assert container(pod, "web")["ready"] is False and container(pod, "web")["restartCount"] == 0
    assert container(pod, "late")["ready"] is True
    wait_for("an Unhealthy event", lambda: (
        "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 404") in events(c, ns), timeout=30)


def test_liveness_failure_restarts_after_prestop(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    # Healthy for 3 s after each start; preStop and SIGTERM each leave a line in the emptyDir.
    script = ("touch /tmp/healthy; (sleep 3; rm /tmp/healthy) & "
              "trap 'echo term >> /data/log; exit 0' TERM; while true; do sleep 1; done")
    make_pod(c, ns, "live", [
        {"name": "live", "command": ["sh", "-c", script],
         "volumeMounts": [{"name": "data", "mountPath": "/data"}],
         "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 1,
                           "failureThreshold": 2, "terminationGracePeriodSeconds": 10},
         "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo prestop >> /data/log"]}}}},
    ], volumes=[{"name": "data", "emptyDir": {}}])

    def restarted() -> dict[str, Any] | None:
        p = get_pod(c, ns, "live")
        css = p["status"].get("containerStatuses") or []
        return p if css and css[0]["restartCount"] >= 1 and "running" in css[0]["state"] else None
    pod = wait_for("the container to be restarted", restarted, timeout=90)
    st = container(pod, "live")
    assert st["lastState"]["terminated"]["exitCode"] == 0  # it took the SIGTERM
    def told() -> bool:
        seen = events(c, ns)
        return any(r == "Unhealthy" and m.startswith("Liveness probe failed: cat: can't open '/tmp/healthy'")
                   for r, m in seen) and ("Killing", "Container live failed liveness probe, will be restarted") in seen
    wait_for("the Unhealthy and Killing events", told, timeout=30)
    code, log = exec_in(c, pod, "live", "cat", "/data/log")
    assert code == 0 and log.splitlines()[:2] == ["prestop", "term"], log


def test_startup_probe_holds_back_readiness(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    make_pod(c, ns, "slow", [
        {"name": "slow", "command": ["sh", "-c", "sleep 4; touch /tmp/up; " + LOOP],
         "startupProbe": {"exec": {"command": ["test", "-f", "/tmp/up"]}, "periodSeconds": 1,
                          "failureThreshold": 60},
         "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1},
         "livenessProbe": {"exec": {"command": ["test", "-f", "/tmp/up"]}, "periodSeconds": 1,
                           "failureThreshold": 1}},
    ])

    def running() -> dict[str, Any] | None:
        p = get_pod(c, ns, "slow")
        css = p["status"].get("containerStatuses") or []
        return p if css and "running" in css[0]["state"] else None
    pod = wait_for("the container to run", running)
    st = container(pod, "slow")
    assert (st["started"], st["ready"]) == (False, False)
    code, _ = exec_in(c, pod, "slow", "test", "-f", "/tmp/up")
    assert code != 0  # still starting: the status above was not a late one

    def ready() -> dict[str, Any] | None:
        p = get_pod(c, ns, "slow")
        return p if conditions(p)["Ready"]["status"] == "True" else None
    pod = wait_for("the pod to be Ready", ready, timeout=60)
    st = container(pod, "slow")
    assert (st["started"], st["ready"], st["restartCount"]) == (True, True, 0)  # liveness waited too


def test_post_start_hooks(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    make_pod(c, ns, "hooks", [
        {"name": "good", "command": ["sh", "-c", LOOP],
         "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "echo hello > /tmp/poststart"]}}}},
        {"name": "bad", "command": ["sh", "-c", LOOP],
         "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "echo nope; exit 3"]}}}},
    ])

    def hook_failed() -> list[tuple[str, str]] | None:
        seen = events(c, ns)
        return seen if ("FailedPostStartHook", "PostStartHook failed") in seen and \
            ("Killing", "FailedPostStartHook") in seen else None
    wait_for("the failed postStart hook's events", hook_failed, timeout=60)

    def good_running() -> dict[str, Any] | None:
        p = get_pod(c, ns, "hooks")
        css = p["status"].get("containerStatuses") or []
        return p if css and "running" in container(p, "good")["state"] else None
    pod = wait_for("the good container to run", good_running)
    assert exec_in(c, pod, "good", "cat", "/tmp/poststart") == (0, "hello\n")

    # Killed after each start, restarted at once the first time, then backing off.
    def bad_backing_off() -> dict[str, Any] | None:
        p = get_pod(c, ns, "hooks")
        st = container(p, "bad")
        w = st["state"].get("waiting") or {}
        return p if w.get("reason") == "CrashLoopBackOff" and st["restartCount"] >= 1 else None
    pod = wait_for("the bad container to back off", bad_backing_off, timeout=60)
    st = container(pod, "bad")
    assert st["lastState"]["terminated"]["finishedAt"] and (st["ready"], st["started"]) == (False, False)
    assert not any(r == "Failed" for r, _ in events(c, ns))


def test_probes_resume_after_an_agent_restart(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    make_pod(c, ns, "steady", [
        {"name": "steady", "command": ["sh", "-c", "touch /tmp/ready; " + LOOP],
         "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1,
                            "failureThreshold": 1},
         "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}},
    ])

    def ready() -> dict[str, Any] | None:
        p = get_pod(c, ns, "steady")
        return p if conditions(p)["Ready"]["status"] == "True" else None
    before = container(wait_for("the pod to be Ready", ready), "steady")["containerID"]
    c.agent.stop()
    c.agent.start()
    # The adopted container gets probe workers again: the readiness probe sees the file go.
    pod = get_pod(c, ns, "steady")
    assert exec_in(c, pod, "steady", "rm", "/tmp/ready")[0] == 0

    def not_ready() -> dict[str, Any] | None:
        p = get_pod(c, ns, "steady")
        return p if conditions(p)["Ready"]["status"] == "False" else None
    pod = wait_for("the pod to turn NotReady", not_ready, timeout=60)
    st = container(pod, "steady")
    assert st["containerID"] == before and st["restartCount"] == 0 and "running" in st["state"]


def test_pre_stop_runs_before_sigterm_on_deletion(cluster: Cluster) -> None:
    c = cluster
    ns = c.namespace()
    make_pod(c, ns, "bye", [
        {"name": "bye", "command": ["sh", "-c", "trap 'echo term; sleep 3; exit 0' TERM; echo up; "
                                    "while true; do sleep 1; done"],
         "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo prestop > /proc/1/fd/1; sleep 1"]}}}},
    ], terminationGracePeriodSeconds=20)

    def running() -> dict[str, Any] | None:
        p = get_pod(c, ns, "bye")
        css = p["status"].get("containerStatuses") or []
        return p if css and "running" in css[0]["state"] else None
    pod = wait_for("the container to run", running)
    md = pod["metadata"]
    log = c.agent.data_dir / "logs" / f"{ns}_bye_{md['uid']}" / "bye" / "0.log"
    started = time.monotonic()
    r = c.http.delete(c.url(f"/api/v1/namespaces/{ns}/pods/bye"))
    assert r.status_code in (200, 202), r.text

    def both_lines() -> list[str] | None:
        if not log.exists():
            return None
        lines = [x.split(" ", 3)[-1] for x in log.read_text().splitlines()]
        return lines if "term" in lines else None
    lines = wait_for("the container to log its SIGTERM", both_lines, timeout=60, interval=0.1)
    assert lines[:3] == ["up", "prestop", "term"], lines
    wait_for("the pod object to go", lambda: c.get(f"/api/v1/namespaces/{ns}/pods/bye") is None, timeout=90)
    assert time.monotonic() - started >= 3.0  # the trap's sleep ran: SIGTERM, not SIGKILL
    assert not any(r == "FailedPreStopHook" for r, _ in events(c, ns))


def test_host_network_pod_is_probed_in_the_node_namespace(cluster: Cluster) -> None:
    # The runtime's node namespace is not the agent's: the probe must be made in there.
    c = cluster
    ns = c.namespace()
    port = 20000 + os.getpid() % 20000
    make_pod(c, ns, "hostnet", [
        {"name": "web", "command": ["sh", "-c", f"mkdir -p /www && echo ok > /www/index.html && "
                                    f"exec httpd -f -p {port} -h /www"],
         "startupProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1, "failureThreshold": 30},
         "readinessProbe": {"httpGet": {"path": "/index.html", "port": port}, "periodSeconds": 1}},
    ], hostNetwork=True)

    def ready() -> dict[str, Any] | None:
        p = get_pod(c, ns, "hostnet")
        return p if conditions(p)["Ready"]["status"] == "True" else None
    pod = wait_for("the pod to be Ready", ready, timeout=60)
    assert pod["status"]["podIP"] == pod["status"]["hostIP"]
    assert container(pod, "web")["started"] is True
