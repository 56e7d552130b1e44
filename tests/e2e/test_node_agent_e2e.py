"""The node agent end to end on `timonel up`, driven by the real kubectl.

One pod with two containers sharing an emptyDir and localhost, a configMap
volume, env from a Secret, limits, a restricted security context and probes:
it gets Ready; `kubectl logs` and `kubectl exec` work and show the isolation
asked for; SIGKILL of a container's process restarts it (restartCount 1); a
container over its memory limit is OOMKilled; deleting the pod leaves no
mount, cgroup, network namespace or veth of it on the host.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.e2e.conftest import UpCluster
from tests.integration.runtime.rtsvc_daemon import load_busybox_module
from timonel.api.kubeconfig import load_kubeconfig
from timonel.node_agent.runtime.client import RuntimeClient
from timonel.node_agent.runtime.network.pod import host_veth_name

Obj = dict[str, Any]
POD_UID_LABEL = "io.kubernetes.pod.uid"

DUO = """
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config}
data:
  index.html: "hello from a configMap\\n"
---
apiVersion: v1
kind: Secret
metadata: {name: web-secret}
stringData:
  password: s3cret-value
---
apiVersion: v1
kind: Pod
metadata: {name: duo, labels: {app: duo}}
spec:
  terminationGracePeriodSeconds: 2
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: web
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'cp /config/index.html /shared/index.html && echo "web: serving $(cat /shared/index.html), password has ${#PASSWORD} characters" && exec httpd -f -p 8080 -h /shared']
    env:
    - name: PASSWORD
      valueFrom: {secretKeyRef: {name: web-secret, key: password}}
    ports: [{containerPort: 8080}]
    volumeMounts:
    - {name: shared, mountPath: /shared}
    - {name: config, mountPath: /config, readOnly: true}
    resources:
      requests: {cpu: 100m, memory: 32Mi}
      limits: {cpu: 500m, memory: 64Mi}
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
    readinessProbe:
      httpGet: {path: /index.html, port: 8080}
      periodSeconds: 1
    livenessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 2
  - name: client
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'while true; do wget -q -O /shared/fetched.html http://127.0.0.1:8080/index.html && echo "client: fetched $(cat /shared/fetched.html)"; sleep 2; done']
    volumeMounts:
    - {name: shared, mountPath: /shared}
    resources:
      limits: {cpu: 200m, memory: 32Mi}
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
    readinessProbe:
      exec: {command: [test, -s, /shared/fetched.html]}
      periodSeconds: 1
  volumes:
  - {name: shared, emptyDir: {}}
  - {name: config, configMap: {name: web-config}}
"""

# dd's 64 MiB block is one buffer it fills from /dev/zero: over a 24 MiB limit.
OOM = """
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [dd, if=/dev/zero, of=/dev/null, bs=64M, count=4]
    resources:
      limits: {memory: 24Mi}
"""


def pod(cluster: UpCluster, name: str) -> Obj:
    out: Obj = json.loads(cluster.kubectl("get", "pod", name, "-o", "json").stdout)
    return out


def ready(p: Obj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))


def statuses(p: Obj) -> dict[str, Obj]:
    return {s["name"]: s for s in p["status"].get("containerStatuses", [])}


def container_pid(cluster: UpCluster, uid: str, name: str) -> tuple[str, int]:
    """The running container's ID and host PID, from the runtime."""
    with RuntimeClient(cluster.runtime_socket, timeout=30) as rt:
        for c in rt.list_containers():
            if c.labels.get(POD_UID_LABEL) == uid and c.metadata.name == name and c.state == 1:
                info = json.loads(rt.container_status(c.id, verbose=True).info["info"])
                return c.id, int(info["pid"])
    raise AssertionError(f"no running container {name} of pod {uid}")


def cgroup_file(pid: int, controller: str, v1_file: str, v2_file: str) -> str:
    """The file of `pid`'s own cgroup: cgroup v1 hierarchy of `controller`, or v2."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    for _, controllers, path in lines:
        if controller in controllers.split(","):
            mount = next(m for m in glob.glob(f"/sys/fs/cgroup/*{controller}*")
                         if os.path.exists(f"{m}{path}/{v1_file}"))
            return f"{mount}{path}/{v1_file}"
    path = next(p for _, c, p in lines if c == "")
    return f"/sys/fs/cgroup{path}/{v2_file}"


@pytest.fixture(scope="module")
def duo(up_cluster: UpCluster) -> Iterator[Obj]:
    up_cluster.kubectl("apply", "-f", "-", input=DUO)

    def is_ready() -> Obj | None:
        p = pod(up_cluster, "duo")
        return p if ready(p) else None
    try:
        yield up_cluster.wait_for("pod duo to be Ready", is_ready, timeout=120)
    except AssertionError:
        print(up_cluster.kubectl("describe", "pod", "duo", check=False).stdout)
        print(f"--- agent log ---\n{up_cluster.log('agent')}")
        raise


def test_up_node_ready_with_its_own_credentials(up_cluster: UpCluster) -> None:
    node = up_cluster.get(f"/api/v1/nodes/{up_cluster.node}")
    assert node is not None
    assert node["spec"]["podCIDR"] == up_cluster.pod_cidr
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == "127.0.0.1"
    assert f"node/{up_cluster.node}" in up_cluster.kubectl("get", "nodes", "-o", "name").stdout
    # The agent authenticates as its node, never with the admin token.
    agent = load_kubeconfig(str(up_cluster.data_dir / "agent" / "kubeconfig"))
    assert agent.token is None and agent.client_cert_pem
    subject = x509.load_pem_x509_certificate(agent.client_cert_pem).subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"system:node:{up_cluster.node}"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"


def test_pod_runs_ready_with_volumes_env_and_limits(up_cluster: UpCluster, duo: Obj) -> None:
    st = statuses(duo)
    assert st["web"]["ready"] and st["client"]["ready"] and st["web"]["restartCount"] == 0
    ip = duo["status"]["podIP"]
    prefix = up_cluster.pod_cidr.rsplit(".", 1)[0] + "."
    assert ip.startswith(prefix), f"pod IP {ip} is not in the node's pod CIDR {up_cluster.pod_cidr}"
    # configMap volume + env from the Secret, in the container's own log.
    assert "web: serving hello from a configMap, password has 12 characters" in \
        up_cluster.kubectl("logs", "duo", "-c", "web").stdout
    # The client reaches the web container on localhost and writes into the shared emptyDir.
    up_cluster.wait_for("the client's log", lambda: "client: fetched hello from a configMap" in
                        up_cluster.kubectl("logs", "duo", "-c", "client").stdout)
    shared = up_cluster.kubectl("exec", "duo", "-c", "web", "--", "cat", "/shared/fetched.html").stdout
    assert shared == "hello from a configMap\n"
    assert up_cluster.kubectl("exec", "duo", "-c", "web", "--", "sh", "-c",
                              "echo $PASSWORD").stdout == "s3cret-value\n"
    # Limits, as the kernel holds them for each container's cgroup.
    _, web_pid = container_pid(up_cluster, duo["metadata"]["uid"], "web")
    with open(cgroup_file(web_pid, "memory", "memory.limit_in_bytes", "memory.max")) as f:
        assert int(f.read()) == 64 << 20
    quota = cgroup_file(web_pid, "cpu", "cpu.cfs_quota_us", "cpu.max")
    with open(quota) as f:
        text = f.read().split()
    assert text[0] == "50000", f"{quota}: {text}"


def test_exec_shows_the_isolation_asked_for(up_cluster: UpCluster, duo: Obj) -> None:
    status = up_cluster.kubectl("exec", "duo", "-c", "web", "--", "cat", "/proc/self/status").stdout
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in status.splitlines())}
    assert fields["Uid"].split() == ["1000"] * 4  # runAsUser
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):  # drop: [ALL]
        assert int(fields[cap], 16) == 0, f"{cap}={fields[cap]}"
    assert fields["NoNewPrivs"] == "1"  # allowPrivilegeEscalation: false
    assert fields["Seccomp"] == "2"  # RuntimeDefault: a filter
    # Own PID namespace (the container's command is PID 1), own UTS (the pod's name).
    assert up_cluster.kubectl("exec", "duo", "-c", "web", "--", "cat", "/proc/1/cmdline").stdout \
        .startswith("httpd\0")
    assert up_cluster.kubectl("exec", "duo", "-c", "web", "--", "hostname").stdout == "duo\n"
    host_pid = os.readlink("/proc/self/ns/pid")
    _, web_pid = container_pid(up_cluster, duo["metadata"]["uid"], "web")
    assert os.readlink(f"/proc/{web_pid}/ns/pid") != host_pid
    assert os.readlink(f"/proc/{web_pid}/ns/net") != os.readlink("/proc/self/ns/net")


def test_killed_container_is_restarted(up_cluster: UpCluster, duo: Obj) -> None:
    uid = duo["metadata"]["uid"]
    cid, pid = container_pid(up_cluster, uid, "web")
    os.kill(pid, signal.SIGKILL)

    def restarted() -> Obj | None:
        p = pod(up_cluster, "duo")
        web = statuses(p)["web"]
        return p if web["restartCount"] == 1 and web["ready"] and "running" in web["state"] else None
    p = up_cluster.wait_for("web to restart once and be Ready again", restarted, timeout=120)
    last = statuses(p)["web"]["lastState"]["terminated"]
    assert last["exitCode"] == 137 and last["containerID"].endswith(cid)
    assert statuses(p)["client"]["restartCount"] == 0
    assert container_pid(up_cluster, uid, "web")[0] != cid


def test_container_over_its_memory_limit_is_oom_killed(up_cluster: UpCluster) -> None:
    up_cluster.kubectl("apply", "-f", "-", input=OOM)

    def terminated() -> Obj | None:
        st = statuses(pod(up_cluster, "hog")).get("hog", {})
        return st.get("state", {}).get("terminated")
    t = up_cluster.wait_for("the hog to be terminated", terminated, timeout=120)
    assert t["reason"] == "OOMKilled", t
    assert t["exitCode"] == 137
    assert pod(up_cluster, "hog")["status"]["phase"] == "Failed"
    up_cluster.kubectl("delete", "pod", "hog", "--wait=true", "--timeout=90s")


def _traces(cluster: UpCluster, uid: str, sandbox: str, containers: list[str]) -> list[str]:
    """What is left of the pod on the host, described."""
    found: list[str] = []
    keys = [uid, sandbox, *containers]
    with open("/proc/self/mountinfo") as f:
        found += [f"mount: {line.split()[4]}" for line in f if any(k in line for k in keys)]
    for key in (sandbox, *containers):
        found += [f"cgroup: {p}" for p in glob.glob(f"/sys/fs/cgroup/**/{key}", recursive=True)]
        found += [f"runtime state: {p}" for p in glob.glob(f"{cluster.data_dir}/runtime/*/{key}*")]
        found += [f"runtime state: {p}" for p in glob.glob(f"{cluster.data_dir}/runtime/run/*/{key}*")]
    found += [f"netns: {p}" for p in glob.glob(f"{cluster.data_dir}/runtime/run/netns/*{sandbox}*")]
    found += [f"pod dir: {p}" for p in glob.glob(f"{cluster.data_dir}/agent/pods/{uid}")]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    veth = host_veth_name(sandbox)
    found += [f"veth: {veth}"] if f" {veth}@" in links or f" {veth}:" in links else []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cgroup") as f:
                    if sandbox in f.read():
                        found.append(f"process: {entry}")
            except OSError:
                continue
    return found


def test_deleting_the_pod_leaves_no_trace_on_the_host(up_cluster: UpCluster, duo: Obj) -> None:
    uid = duo["metadata"]["uid"]
    with RuntimeClient(up_cluster.runtime_socket, timeout=30) as rt:
        sandboxes = [s.id for s in rt.list_sandboxes() if s.labels.get(POD_UID_LABEL) == uid]
        containers = [c.id for c in rt.list_containers() if c.labels.get(POD_UID_LABEL) == uid]
    assert len(sandboxes) == 1 and len(containers) >= 3  # web (twice: restarted) and client
    before = _traces(up_cluster, uid, sandboxes[0], containers)
    assert any(t.startswith("veth:") for t in before) and any(t.startswith("cgroup:") for t in before), before
    up_cluster.kubectl("delete", "pod", "duo", "--wait=true", "--timeout=90s")

    def gone() -> bool:
        left = _traces(up_cluster, uid, sandboxes[0], containers)
        assert not left, left  # the wait's timeout message shows what is left
        return True
    up_cluster.wait_for("every trace of pod duo to go", gone, timeout=60)


def test_example_manifests_run(up_cluster: UpCluster) -> None:
    examples = os.path.join(os.path.dirname(__file__), "..", "..", "manifests", "examples")
    up_cluster.kubectl("apply", "-f", examples)
    try:
        up_cluster.kubectl("rollout", "status", "deployment/hello", "--timeout=120s", timeout=150)

        def all_ready() -> bool:
            items = json.loads(up_cluster.kubectl("get", "pods", "-o", "json").stdout)["items"]
            names = {p["metadata"]["name"]: ready(p) for p in items}
            assert names.get("web") and names.get("probed"), names
            return all(names.values())
        up_cluster.wait_for("the example pods to be Ready", all_ready, timeout=120)
        assert up_cluster.kubectl("exec", "web", "--", "wget", "-qO-", "http://127.0.0.1:8080/").stdout \
            == "hello from web\n"
        assert up_cluster.kubectl("exec", "probed", "--", "cat", "/www/index.html").stdout \
            .startswith("prepared by the init container")
    finally:
        up_cluster.kubectl("delete", "-f", examples, "--wait=true", "--timeout=90s", check=False)


def test_image_import_makes_a_new_image_runnable(up_cluster: UpCluster, tmp_path: Path) -> None:
    files = load_busybox_module().write_busybox_image(tmp_path, ["e2e.local/imported:v1"])
    manifest = """
apiVersion: v1
kind: Pod
metadata: {name: imported}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - {name: main, image: "e2e.local/imported:v1", imagePullPolicy: Never, command: [sleep, "3600"]}
"""
    up_cluster.kubectl("apply", "-f", "-", input=manifest)
    try:
        def waiting_reason() -> str | None:
            st = statuses(pod(up_cluster, "imported")).get("main", {})
            return (st.get("state", {}).get("waiting") or {}).get("reason")
        assert up_cluster.wait_for("the pod to wait for its image", waiting_reason) == "ErrImageNeverPull"
        r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "timonel"), "image", "import",
                            str(files["oci_tar"]), "--runtime-socket", up_cluster.runtime_socket],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "e2e.local/imported:v1" in r.stdout
        up_cluster.wait_for("the pod to run from the imported image",
                            lambda: ready(pod(up_cluster, "imported")), timeout=120)
    finally:
        up_cluster.kubectl("delete", "pod", "imported", "--wait=true", "--timeout=60s", check=False)
