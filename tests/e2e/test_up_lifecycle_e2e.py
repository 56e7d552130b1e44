"""`timonel up` itself: a stop removes every pod's containers, a later `up` on the
same directory brings the pods back, and a part that dies stops everything
with a message naming it and the tail of its log."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import UpCluster, needs_root, restart_up, start_up, stop_up, wait_for
from timonel.node_agent.runtime.client import RuntimeClient

pytestmark = needs_root

POD = """
apiVersion: v1
kind: Pod
metadata: {name: keeper}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'trap "exit 0" TERM; while true; do sleep 1; done']
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  volumes:
  - {name: scratch, emptyDir: {medium: Memory}}
"""


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(f"{path}/")]


def running_container(cluster: UpCluster) -> str | None:
    p = json.loads(cluster.kubectl("get", "pod", "keeper", "-o", "json").stdout)
    st = (p["status"].get("containerStatuses") or [{}])[0]
    return str(st["containerID"]) if st.get("ready") and "running" in st.get("state", {}) else None


@pytest.fixture
def base() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="tmnl-e2e-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_stop_removes_pods_and_up_again_brings_them_back(base: Path) -> None:
    cluster = start_up(base)
    try:
        cluster.kubectl("apply", "-f", "-", input=POD)
        first = wait_for("keeper to run", lambda: running_container(cluster))
        second_up = subprocess.run(cluster.argv, capture_output=True, text=True, timeout=60)
        assert second_up.returncode == 5, second_up.stderr
        assert f"another timonel up (pid {cluster.proc.pid}) is using {cluster.data_dir}" in second_up.stderr
        # The first one is untouched: same container, its memory emptyDir still mounted.
        assert running_container(cluster) == first
        pods_dir = cluster.data_dir / "agent" / "pods"
        assert mounts_under(pods_dir), "the refused second up unmounted the running pod's tmpfs"
        assert stop_up(cluster) == 0, cluster.log()
        assert "stopped" in cluster.log()
        assert not mounts_under(pods_dir)
        assert not os.path.exists(cluster.runtime_socket)
        bridge = cluster.argv[cluster.argv.index("--bridge") + 1]
        assert subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode != 0, \
            f"bridge {bridge} left behind"
        cluster = restart_up(cluster)
        # Nothing of the first run's pod was left: the runtime recovered no container.
        last_recovery = cluster.log("runtime").rsplit("msg=recovered", 1)[-1]
        assert last_recovery.startswith(" sandboxes=0 containers=0"), last_recovery[:200]

        def new_container() -> str | None:
            c = running_container(cluster)
            return c if c != first else None
        wait_for("keeper to run again in a new container", new_container)
        with RuntimeClient(cluster.runtime_socket, timeout=30) as rt:
            assert len(rt.list_sandboxes()) == 1
    finally:
        code = stop_up(cluster)
        cluster.http.close()
    assert code == 0, cluster.log()


def test_a_dead_part_stops_everything_and_says_which(base: Path) -> None:
    # Also the default pod CIDR: the node IPAM controller's, given to the runtime.
    cluster = start_up(base, own_pod_cidr=False)
    try:
        cluster.kubectl("apply", "-f", "-", input=POD)
        wait_for("keeper to run", lambda: running_container(cluster))
        assert "--pod-cidr" not in cluster.argv
        assert ipaddress.IPv4Network(cluster.pod_cidr).subnet_of(ipaddress.IPv4Network("10.244.0.0/16"))
        ip = json.loads(cluster.kubectl("get", "pod", "keeper", "-o", "json").stdout)["status"]["podIP"]
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(cluster.pod_cidr)
        os.kill(_agent_pid(cluster), signal.SIGKILL)
        assert cluster.proc.wait(120) == 5, cluster.log()
        out = cluster.log()
        assert "error [UP_CHILD_EXITED]: the agent was killed by signal 9" in out, out
        assert "logs/agent.log" in out
        # The pod went too, through the runtime, before the runtime stopped.
        runtime = cluster.log("runtime")
        assert "msg=stopping" in runtime
        before_stop = runtime.rsplit("msg=stopping", 1)[0]
        assert "msg=removed" in before_stop.rsplit("msg=serving", 1)[-1], runtime
        assert not os.path.exists(cluster.runtime_socket)
    finally:
        stop_up(cluster)
        cluster.http.close()


def _agent_pid(cluster: UpCluster) -> int:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == cluster.proc.pid and b"agent" in argv:
            return int(entry)
    raise AssertionError("no agent child of timonel up")
