"""`timonel runtime` as a user runs it: run (exit codes, OOM 137, output), the crictl-like verbs,
and the daemon's refusal without root."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from timonel.node_agent.runtime.client import RuntimeClient

from .rtsvc_daemon import Daemon, load_busybox_module, needs_root, run_pod, running_daemon

pytestmark = needs_root

HOG = 'a=xxxxxxxxxxxxxxxx; while :; do a="$a$a"; done'


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, RuntimeClient]]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    files = load_busybox_module().write_busybox_image(tmp_path_factory.mktemp("image"))
    yield from running_daemon(tmp_path_factory.mktemp("rtsvc-cli"), str(files["docker_archive"]))


def timonel(*args: str, timeout: float = 120, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "timonel.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)  # type: ignore[call-overload, no-any-return]


def rt(d: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return timonel("runtime", *args[:1], "--socket", d.socket, *args[1:])


def test_run_exits_with_the_container_code_and_streams_its_output(daemon: tuple[Daemon, RuntimeClient]) -> None:
    d, c = daemon
    r = rt(d, "run", "busybox", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    r = rt(d, "run", "--user", "1000", "--cpus", "0.5", "-e", "X=y z", "busybox", "--",
           "sh", "-c", 'echo "$(id -u) $X"; cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || '
                       'cat /sys/fs/cgroup/cpu.max; grep -E "^(NoNewPrivs|Seccomp):" /proc/self/status')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "1000 y z" and lines[1].split()[0] == "50000"
    assert [ln.split()[1] for ln in lines[2:]] == ["1", "2"]  # default security: no_new_privs, seccomp filter
    assert c.list_sandboxes() == [] and c.list_containers() == []  # run removed what it made


def test_run_of_a_memory_hog_exits_137(daemon: tuple[Daemon, RuntimeClient]) -> None:
    d, c = daemon
    r = rt(d, "run", "--memory", "32000000", "busybox", "--", "sh", "-c", HOG)
    assert r.returncode == 137, r.stderr
    assert "memory limit" in r.stderr
    assert c.list_sandboxes() == []


def test_client_verbs(daemon: tuple[Daemon, RuntimeClient], tmp_path: Path) -> None:
    d, c = daemon
    r = rt(d, "images")
    assert r.returncode == 0 and "docker.io/library/busybox" in r.stdout
    sid, ids = run_pod(c, "verbs", {"main": ["sh", "-c", "echo logged; sleep 1000"]})
    cid = ids["main"]
    r = rt(d, "ps")
    assert r.returncode == 0 and cid[:13] in r.stdout and "RUNNING" in r.stdout
    assert rt(d, "pods", "-q").stdout.split() == [sid]
    inspect = json.loads(rt(d, "inspect", cid[:10]).stdout)
    assert inspect["status"]["id"] == cid and inspect["info"]["info"]["pid"] > 0
    assert json.loads(rt(d, "inspect", sid[:10]).stdout)["status"]["network"]["ip"].startswith("10.97.0.")
    assert rt(d, "logs", cid[:10]).stdout == "logged\n"
    r = rt(d, "exec", cid[:10], "--", "sh", "-c", "echo in; exit 4")
    assert (r.returncode, r.stdout) == (4, "in\n")
    r = rt(d, "rm", cid[:10])
    assert r.returncode == 0 and cid in r.stdout
    assert rt(d, "ps", "-a", "-q").stdout == ""
    assert rt(d, "rm", sid).returncode == 0 and c.list_sandboxes() == []
    r = rt(d, "rm", "f" * 20)
    assert r.returncode == 6 and "no container or pod sandbox" in r.stderr
    r = rt(d, "inspect", "nothing-like-this")
    assert r.returncode == 6 and "NOT_FOUND" in r.stderr and "Traceback" not in r.stderr


def test_no_socket_and_no_root(daemon: tuple[Daemon, RuntimeClient], tmp_path: Path) -> None:
    r = timonel("runtime", "ps", "--socket", str(tmp_path / "none.sock"))
    assert r.returncode == 5 and "no runtime socket" in r.stderr and "Traceback" not in r.stderr
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv (util-linux) is missing")
    os.chmod(tmp_path, 0o755)
    r = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                        "timonel.cli.main", "runtime", "--root", str(tmp_path / "root"),
                        "--socket", str(tmp_path / "rt.sock")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 4, r.stderr
    assert "needs root" in r.stderr and "sudo" in r.stderr and "Traceback" not in r.stderr
    d, _ = daemon
    assert stat.S_IMODE(os.stat(d.socket).st_mode) == 0o660
    r = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                        "timonel.cli.main", "runtime", "ps", "--socket", d.socket],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode in (4, 5) and "Traceback" not in r.stderr  # 0660 root socket (5: dir not searchable)


def test_a_second_daemon_is_refused(daemon: tuple[Daemon, RuntimeClient], tmp_path: Path) -> None:
    d, c = daemon
    same_root = timonel("runtime", "--root", d.root, "--socket", str(tmp_path / "other.sock"),
                        "--node-netns", d.node_netns, "--cgroup-parent", d.cgroup_parent)
    assert same_root.returncode == 3 and "another runtime is using" in same_root.stderr, same_root.stderr
    same_socket = timonel("runtime", "--root", str(tmp_path / "root"), "--socket", d.socket,
                          "--node-netns", d.node_netns, "--cgroup-parent", d.cgroup_parent, "--bridge", "rtsvc1",
                          "--pod-cidr", "10.98.0.0/24")
    assert same_socket.returncode == 3 and "another runtime is serving" in same_socket.stderr, same_socket.stderr
    assert c.version().runtime_name == "timonel"  # the first one is unharmed
