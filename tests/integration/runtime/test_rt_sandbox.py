"""Pod sandboxes: shared namespaces held by files, pod cgroup limits, removal without residue."""

from __future__ import annotations

import os
import time

import pytest

from timonel.node_agent.runtime.cgroups import Resources
from timonel.node_agent.runtime.container import namespaces
from timonel.node_agent.runtime.sandbox import SandboxError, SandboxSpec

from .conftest import Runtime, needs_root

pytestmark = needs_root


def ns_inode(path: str) -> int:
    return os.stat(path).st_ino


def test_containers_in_a_pod_share_net_ipc_uts_and_hostname(rt: Runtime) -> None:
    sb = rt.sandboxes.create(SandboxSpec(id="pod-a", hostname="web-0", cgroup_parent=rt.cgroup_parent))
    assert set(sb.namespaces) == {"net", "ipc", "uts"}
    for name in ("one", "two"):
        spec = rt.sandboxes.container_spec("pod-a", rt.spec(name, ["sleep", "1000"]))
        rt.containers.create(spec)
        rt.containers.start(name)
    links = {}
    for name in ("one", "two"):
        r = rt.containers.exec_sync(name, ["sh", "-c", "hostname; for k in net ipc uts pid mnt; do "
                                                       "readlink /proc/1/ns/$k; done"], timeout=20)
        links[name] = r.stdout.decode().split()
    assert links["one"][0] == links["two"][0] == "web-0"
    for i, kind in enumerate(("net", "ipc", "uts"), start=1):
        assert links["one"][i] == links["two"][i] == f"{kind}:[{ns_inode(sb.namespaces[kind])}]"
    assert links["one"][4] != links["two"][4] and links["one"][5] != links["two"][5]  # own pid, mnt
    # localhost networking is shared: one listens, the other connects
    rt.containers.exec("one", ["sh", "-c", "echo pong | nc -l -p 7070"]).close()
    deadline = time.monotonic() + 20
    out = b""
    while b"pong" not in out and time.monotonic() < deadline:
        out = rt.containers.exec_sync("two", ["nc", "127.0.0.1", "7070"], timeout=5).stdout
        time.sleep(0.05)
    assert out == b"pong\n"


def test_pod_cgroup_limits_apply_to_its_containers(rt: Runtime) -> None:
    rt.sandboxes.create(SandboxSpec(id="pod-b", cgroup_parent=rt.cgroup_parent,
                                    resources=Resources(memory_limit=32 << 20)))
    hog = 'a=xxxxxxxxxxxxxxxx; while :; do a="$a$a"; done'
    spec = rt.sandboxes.container_spec("pod-b", rt.spec("hog", ["sh", "-c", hog]))
    assert spec.cgroup_parent == f"{rt.cgroup_parent}/pod-b"
    rt.containers.create(spec)
    rt.containers.start("hog")
    st = rt.containers.wait("hog", 60)
    assert (st.exit_code, st.reason) == (137, "OOMKilled")


def test_existing_netns_is_used_and_not_owned(rt: Runtime, tmp_path: str) -> None:
    netns = os.path.join(rt.root, "given-netns")
    os.makedirs(rt.root, exist_ok=True)
    namespaces.create_in_thread(rt.sys, ["net"], {"net": netns}, None)
    try:
        sb = rt.sandboxes.create(SandboxSpec(id="pod-c", cgroup_parent=rt.cgroup_parent, netns_path=netns))
        assert sb.namespaces["net"] == netns
        spec = rt.sandboxes.container_spec("pod-c", rt.spec("c", ["readlink", "/proc/self/ns/net"]))
        rt.containers.create(spec)
        rt.containers.start("c")
        st = rt.containers.wait("c", 20)
        with open(st.log_path) as f:
            assert f"net:[{ns_inode(netns)}]" in f.read()
        rt.containers.remove("c")
        rt.sandboxes.remove("pod-c")
        with open("/proc/self/mountinfo") as f:
            assert netns in f.read()  # the caller's namespace is still there
    finally:
        rt.sys.umount2(netns, 2)
        os.unlink(netns)


def test_removal_leaves_nothing_behind(rt: Runtime) -> None:
    with open("/proc/self/mountinfo") as f:
        mounts_before = f.read().count("\n")
    rt.sandboxes.create(SandboxSpec(id="pod-d", hostname="x", cgroup_parent=rt.cgroup_parent))
    spec = rt.sandboxes.container_spec("pod-d", rt.spec("d", ["sleep", "1000"]))
    rt.containers.create(spec)
    rt.containers.start("d")
    with open("/proc/self/mountinfo") as f:
        assert f.read().count("\n") == mounts_before + 3  # the three namespace files
    rt.sandboxes.stop("pod-d")
    assert rt.containers.wait("d", 20).state == "exited"
    assert rt.sandboxes.status("pod-d").state == "notready"
    with pytest.raises(SandboxError, match="stopped"):
        rt.sandboxes.container_spec("pod-d", rt.spec("late", ["true"]))
    rt.containers.remove("d")
    rt.sandboxes.remove("pod-d")
    with open("/proc/self/mountinfo") as f:
        mountinfo = f.read()
    assert mountinfo.count("\n") == mounts_before and "pod-d" not in mountinfo
    assert not rt.cgroups.exists(f"{rt.cgroup_parent}/pod-d")
    assert not os.path.exists(rt.sandboxes.state_dir("pod-d"))
    assert rt.sandboxes.list() == []


def test_duplicate_and_bad_ids(rt: Runtime) -> None:
    rt.sandboxes.create(SandboxSpec(id="pod-e", cgroup_parent=rt.cgroup_parent))
    with pytest.raises(SandboxError, match="already exists"):
        rt.sandboxes.create(SandboxSpec(id="pod-e", cgroup_parent=rt.cgroup_parent))
    assert rt.sandboxes.status("pod-e").hostname == "pod-e"  # not the host's
    with pytest.raises(ValueError, match="sandbox id"):
        rt.sandboxes.create(SandboxSpec(id="../x"))
