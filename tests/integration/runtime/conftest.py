"""Fixtures for the runtime's root tests: a busybox layer and a live runtime on a temp root."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from timonel.node_agent.runtime.cgroups import Cgroups, detect
from timonel.node_agent.runtime.container import (
    ContainerManager,
    ContainerSpec,
    start_fork_server,
)
from timonel.node_agent.runtime.container.forkserver import ForkServer
from timonel.node_agent.runtime.linux import Syscalls
from timonel.node_agent.runtime.sandbox import SandboxManager

from .rt_busybox import build_rootfs, ensure_busybox


def _is_privileged() -> bool:
    """Root with CAP_SYS_ADMIN (root in a capability-stripped shell cannot mount)."""
    if os.geteuid() != 0:
        return False
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> 21 & 1)
    return False


PRIVILEGED = _is_privileged()
_WHY = "needs root with CAP_SYS_ADMIN: namespaces, mounts and cgroups"
needs_root = pytest.mark.skipif(not PRIVILEGED, reason=_WHY)


@pytest.fixture(scope="session")
def busybox_layer(tmp_path_factory: pytest.TempPathFactory) -> str:
    if not PRIVILEGED:
        pytest.skip(_WHY)
    busybox = ensure_busybox()
    if busybox is None:
        pytest.fail("no static busybox: install Debian's busybox-static (deploy/install.sh does)")
    return build_rootfs(str(tmp_path_factory.mktemp("busybox") / "layer"), busybox)


@dataclass
class Runtime:
    root: str
    sys: Syscalls
    cgroups: Cgroups
    forkserver: ForkServer
    containers: ContainerManager
    sandboxes: SandboxManager
    cgroup_parent: str
    layer: str

    def spec(self, cid: str, args: list[str], **kw: object) -> ContainerSpec:
        kw.setdefault("cgroup_parent", self.cgroup_parent)
        return ContainerSpec(id=cid, args=args, rootfs_layers=[self.layer], **kw)  # type: ignore[arg-type]

    def run(self, cid: str, args: list[str], timeout: float = 30.0, **kw: object) -> tuple[int | None, str]:
        """Create, start, wait; the exit code and the log's contents (just the text)."""
        self.containers.create(self.spec(cid, args, **kw))
        self.containers.start(cid)
        st = self.containers.wait(cid, timeout)
        assert st.state == "exited", f"{cid} still {st.state} after {timeout}s"
        return st.exit_code, log_text(st.log_path)

    def reopen(self) -> None:
        """A new fork server and managers over the same root, as after a runtime restart."""
        self.containers.close()
        self.forkserver.close()
        self.forkserver = start_fork_server(self.sys, self.cgroups)
        self.containers = ContainerManager(self.root, self.cgroups, self.forkserver, self.sys)
        self.sandboxes = SandboxManager(self.root, self.cgroups, self.sys)


def log_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return "".join(ln.split(b" ", 3)[3].decode() for ln in f.read().splitlines(keepends=True))
    except FileNotFoundError:
        return ""


@pytest.fixture
def rt(busybox_layer: str, tmp_path: Path) -> Iterator[Runtime]:
    sysc = Syscalls()
    cgroups = detect()
    forkserver = start_fork_server(sysc, cgroups)
    root = str(tmp_path / "runtime")
    parent = f"timonel-test/{uuid.uuid4().hex[:12]}"
    r = Runtime(root, sysc, cgroups, forkserver, ContainerManager(root, cgroups, forkserver, sysc),
                SandboxManager(root, cgroups, sysc), parent, busybox_layer)
    try:
        yield r
    finally:
        for st in r.containers.list():
            try:
                r.containers.remove(st.id)
            except Exception as e:  # keep cleaning; the test already reports its own failure
                print(f"cleanup: container {st.id}: {e}")
        for sb in r.sandboxes.list():
            r.sandboxes.remove(sb.id)
        r.containers.close()
        r.forkserver.close()
        if r.cgroups.exists(parent):
            r.cgroups.kill(parent)
            r.cgroups.remove(parent)
        for d in r.cgroups.dirs("timonel-test"):  # shared by concurrent runs: only if empty
            try:
                os.rmdir(d)
            except OSError:
                pass
