"""Service pieces without root: records and ID prefixes, sysctl rules, pod config checks,
gRPC status mapping."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import grpc
import pytest

from timonel.node_agent.runtime.api import runtime_pb2 as pb
from timonel.node_agent.runtime.container import (
    ContainerError,
    ContainerStatus,
    NotFoundError,
    SpecError,
)
from timonel.node_agent.runtime.images import errors as image_errors
from timonel.node_agent.runtime.sandbox import SandboxError
from timonel.node_agent.runtime.server import messages, pods, sysctls
from timonel.node_agent.runtime.server.errors import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    Unimplemented,
    status_for,
)
from timonel.node_agent.runtime.server.records import (
    ContainerRecord,
    Records,
    SandboxRecord,
    new_id,
)


def test_records_persist_and_resolve_prefixes(tmp_path: Path) -> None:
    r = Records(str(tmp_path))
    sid = new_id()
    r.save_sandbox(SandboxRecord(id=sid, name="p_ns_uid_0", config={"metadata": {"name": "p"}}, created_at=1,
                                 cgroup_parent="timonel", ip="10.88.0.2"))
    cids = ["ab" + new_id()[2:], "ac" + new_id()[2:]]
    for cid in cids:
        r.save_container(ContainerRecord(id=cid, sandbox_id=sid, name=f"{cid}_0", config={}, created_at=2,
                                         image_id="sha256:img"))
    (tmp_path / "cri" / "containers" / "junk.json.tmp.1").write_text("{")  # an interrupted write
    again = Records(str(tmp_path))
    assert again.sandbox(sid[:6]).ip == "10.88.0.2"
    assert again.container(cids[0][:3]).id == cids[0]
    with pytest.raises(InvalidArgument, match="matches 2"):
        again.container("a")
    with pytest.raises(NotFound):
        again.container("zz")
    with pytest.raises(InvalidArgument, match="empty"):
        again.sandbox("")
    assert again.image_ids_in_use() == {"sha256:img"}
    assert {c.id for c in again.containers_of(sid)} == set(cids)
    again.drop_container(cids[0])
    assert Records(str(tmp_path)).find_container(cids[0]) is None


def test_configs_remembered_at_create_match_the_records(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c", attempt=2), image=pb.ImageSpec(image="busybox"),
                             args=["sleep", "1"], labels={"a": "b"}, mounts=[pb.Mount(container_path="/x")])
    rec = ContainerRecord(id=new_id(), sandbox_id="s", name="c_2", config=messages.to_dict(cfg), created_at=1,
                          image_id="sha256:img")
    sb_cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="p", namespace="ns", uid="u"), hostname="h")
    sb = SandboxRecord(id=new_id(), name="p_ns_u_0", config=messages.to_dict(sb_cfg), created_at=1,
                       cgroup_parent="timonel")
    parsed = messages.container_config(rec), messages.sandbox_config(sb)
    assert parsed == (cfg, sb_cfg)
    messages.remember_container_config(rec, cfg)
    messages.remember_sandbox_config(sb, sb_cfg)
    cfg.args.append("changed later")  # what is remembered is a copy
    monkeypatch.setattr(messages.json_format, "ParseDict", lambda *a, **k: pytest.fail("parsed again"))
    assert (messages.container_config(rec), messages.sandbox_config(sb)) == parsed
    # A record read back from disk holds another dict: parsed from it, not taken from the cache.
    again = dataclasses.replace(rec, config=dict(rec.config))
    with pytest.raises(pytest.fail.Exception, match="parsed again"):
        messages.container_config(again)


def test_list_entries_are_built_once_per_state(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), image=pb.ImageSpec(image="busybox"),
                             labels={"io.kubernetes.pod.name": "web"}, annotations={"a": "1"})
    rec = ContainerRecord(id=new_id(), sandbox_id="s", name="c_0", config=messages.to_dict(cfg), created_at=7,
                          image_id="sha256:img", image_ref="busybox@sha256:x")
    sb_cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="p", namespace="ns", uid="u"), labels={"l": "v"})
    sb = SandboxRecord(id=new_id(), name="p_ns_u_0", config=messages.to_dict(sb_cfg), created_at=3,
                       cgroup_parent="timonel")

    def status(state: str) -> ContainerStatus:
        return ContainerStatus(id=rec.id, state=state, pid=1, exit_code=None, reason="", message="", created_at=7,
                               started_at=0, finished_at=0, log_path="", sandbox_id="s", labels={}, annotations={})

    running = messages.container(rec, status("running"))
    assert (running.state, running.image_ref, running.created_at) == (pb.CONTAINER_RUNNING, "busybox@sha256:x", 7)
    assert dict(running.labels) == {"io.kubernetes.pod.name": "web"} and dict(running.annotations) == {"a": "1"}
    ready = messages.sandbox(sb, pb.SANDBOX_READY)
    assert (ready.metadata.name, dict(ready.labels), ready.created_at) == ("p", {"l": "v"}, 3)

    built: list[object] = []
    real = pb.Container

    def counted(**kw: object) -> pb.Container:
        built.append(kw)
        return real(**kw)  # type: ignore[arg-type]

    monkeypatch.setattr(messages.pb, "Container", counted)
    assert messages.container(rec, status("running")) is running  # nothing built again
    assert messages.sandbox(sb, pb.SANDBOX_READY) is ready
    assert built == []
    exited = messages.container(rec, status("exited"))  # a new state: a new entry
    assert exited.state == pb.CONTAINER_EXITED and len(built) == 1
    assert messages.sandbox(sb, pb.SANDBOX_NOTREADY).state == pb.SANDBOX_NOTREADY
    # A record read back from disk holds another dict: its entry is built from it.
    assert messages.container(dataclasses.replace(rec, config=dict(rec.config)), status("exited")) is not exited

    # A response holds copies: changing one leaves the shared entry as it was.
    resp = pb.ListContainersResponse(containers=[exited])
    resp.containers[0].labels["io.kubernetes.pod.name"] = "other"
    assert dict(exited.labels) == {"io.kubernetes.pod.name": "web"}


@pytest.mark.parametrize(("name", "host_network", "ok"), [
    ("net.ipv4.ip_unprivileged_port_start", False, True),
    ("net/ipv4/ping_group_range", False, True),
    ("kernel.shmmax", True, True),
    ("kernel.sem", False, True),
    ("fs.mqueue.msg_max", False, True),
    ("net.core.somaxconn", True, False),  # would change the node's network
    ("kernel.panic", False, False),  # not namespaced
    ("vm.swappiness", False, False),
    ("net.ipv4/../../../etc", False, False),
])
def test_only_namespaced_sysctls(name: str, host_network: bool, ok: bool) -> None:
    if ok:
        assert sysctls.validate({name: "1"}, host_network, "pod")
    else:
        with pytest.raises(InvalidArgument):
            sysctls.validate({name: "1"}, host_network, "pod")


def sandbox(**kw: object) -> pb.PodSandboxConfig:
    return pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="web-0", namespace="default"),
                               **kw)  # type: ignore[arg-type]


def test_pod_config_checks() -> None:
    host, hostname, parent, wanted = pods._check(sandbox(), "", "timonel")
    assert (host, hostname, parent, wanted) == (False, "web-0", "timonel", {})
    cfg = sandbox(hostname="h", linux=pb.LinuxPodSandboxConfig(
        cgroup_parent="/kubepods/burstable", security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.NODE))))
    assert pods._check(cfg, "", "timonel")[:3] == (True, "h", "kubepods/burstable")
    bad = [
        (pb.PodSandboxConfig(), InvalidArgument, "metadata.name"),
        (sandbox(hostname="bad_host!"), InvalidArgument, "hostname"),
        (sandbox(linux=pb.LinuxPodSandboxConfig(cgroup_parent="a/../b")), InvalidArgument, "cgroup"),
        (sandbox(port_mappings=[pb.PortMapping(container_port=80, host_port=8080)]), Unimplemented, "host_port"),
        (sandbox(log_directory="relative"), InvalidArgument, "log_directory"),
    ]
    for config, err, match in bad:
        with pytest.raises(err, match=match):
            pods._check(config, "", "timonel")
    with pytest.raises(InvalidArgument, match="runtime_handler"):
        pods._check(sandbox(), "kata", "timonel")
    assert pods.resolv_conf(pb.DNSConfig(servers=["10.96.0.10"], searches=["default.svc.cluster.local"],
                                         options=["ndots:5"])) == \
        "nameserver 10.96.0.10\nsearch default.svc.cluster.local\noptions ndots:5\n"
    assert pods.resolv_conf(pb.DNSConfig()) is None
    assert "10.88.0.7\tweb-0" in pods.hosts_file("web-0", "10.88.0.7")


@pytest.mark.parametrize(("error", "code"), [
    (NotFoundError("container x not found"), grpc.StatusCode.NOT_FOUND),
    (SpecError("bad"), grpc.StatusCode.INVALID_ARGUMENT),
    (ContainerError("container x is running; only a created container can start"),
     grpc.StatusCode.FAILED_PRECONDITION),
    (SandboxError("sandbox x not found"), grpc.StatusCode.NOT_FOUND),
    (SandboxError("sandbox x already exists; remove it first"), grpc.StatusCode.ALREADY_EXISTS),
    (image_errors.ImageNotFoundError("no"), grpc.StatusCode.NOT_FOUND),
    (image_errors.ImageInUseError("in use"), grpc.StatusCode.FAILED_PRECONDITION),
    (image_errors.DigestMismatchError("tampered"), grpc.StatusCode.DATA_LOSS),
    (image_errors.UnsafeLayerError("../"), grpc.StatusCode.INVALID_ARGUMENT),
    (image_errors.RegistryError("denied", status=401), grpc.StatusCode.UNAUTHENTICATED),
    (image_errors.RegistryError("gone", status=404), grpc.StatusCode.NOT_FOUND),
    (image_errors.RegistryError("down"), grpc.StatusCode.UNAVAILABLE),
    (DeadlineExceeded("slow"), grpc.StatusCode.DEADLINE_EXCEEDED),
    (KeyError("surprise"), grpc.StatusCode.INTERNAL),
])
def test_status_codes(error: Exception, code: grpc.StatusCode) -> None:
    got, msg = status_for(error, "SomeRpc")
    assert got == code and msg
