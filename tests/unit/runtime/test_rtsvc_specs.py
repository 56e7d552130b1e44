"""CRI ContainerConfig -> ContainerSpec: Docker's command rules, env, user, resources, logs, security."""

from __future__ import annotations

from pathlib import Path

import pytest

from timonel.node_agent.runtime.api import runtime_pb2 as pb
from timonel.node_agent.runtime.container.spec import (
    SECCOMP_LOCALHOST,
    SECCOMP_RUNTIME_DEFAULT,
    SECCOMP_UNCONFINED,
)
from timonel.node_agent.runtime.server import specs
from timonel.node_agent.runtime.server.errors import InvalidArgument, Unimplemented

IMAGE = {"entrypoint": ["/docker-entrypoint.sh"], "cmd": ["nginx", "-g", "daemon off;"],
         "env": ["PATH=/usr/bin:/bin", "NGINX_VERSION=1.25", "BROKEN"], "working_dir": "/srv", "user": "www"}


def cfg(**kw: object) -> pb.ContainerConfig:
    return pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), image=pb.ImageSpec(image="x"),
                              **kw)  # type: ignore[arg-type]


def spec(config: pb.ContainerConfig, image: dict[str, object] | None = None, **kw: object):  # type: ignore[no-untyped-def]
    return specs.container_spec("id1", config, IMAGE if image is None else image, ["/layers/a"], **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("command", "args", "expected"), [
    ([], [], ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]),
    ([], ["nginx", "-t"], ["/docker-entrypoint.sh", "nginx", "-t"]),  # args replace cmd
    (["sh"], [], ["sh"]),  # a command replaces the entrypoint and drops the image's cmd
    (["sh", "-c"], ["echo hi"], ["sh", "-c", "echo hi"]),
])
def test_command_follows_docker_and_containerd(command: list[str], args: list[str], expected: list[str]) -> None:
    assert spec(cfg(command=command, args=args)).args == expected


def test_no_command_anywhere_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="no command"):
        spec(cfg(), image={})


def test_env_image_then_config_and_defaults() -> None:
    s = spec(cfg(envs=[pb.KeyValue(key="NGINX_VERSION", value="override"), pb.KeyValue(key="A", value="a=b")]))
    assert s.env == {"PATH": "/usr/bin:/bin", "NGINX_VERSION": "override", "A": "a=b"}
    assert s.working_dir == "/srv"
    assert spec(cfg(working_dir="/w")).working_dir == "/w"
    assert spec(cfg(command=["x"]), image={}).working_dir == "/"
    with pytest.raises(InvalidArgument, match="envs"):
        spec(cfg(envs=[pb.KeyValue(key="A=B", value="x")]))
    with pytest.raises(InvalidArgument, match="working_dir"):
        spec(cfg(working_dir="relative"))


def sc(**kw: object) -> pb.LinuxContainerConfig:
    return pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(**kw))  # type: ignore[arg-type]


def test_user_from_image_and_security_context() -> None:
    assert spec(cfg()).user.name == "www"
    assert spec(cfg(command=["x"]), image={}).user.name is None  # root
    assert spec(cfg(linux=sc(run_as_user=pb.Int64Value(value=1000)))).user.name == "1000"
    assert spec(cfg(linux=sc(run_as_user=pb.Int64Value(value=0)))).user.name == "0"  # set, even when 0
    assert spec(cfg(linux=sc(run_as_user=pb.Int64Value(value=1000), run_as_group=pb.Int64Value(value=3000)))
                ).user.name == "1000:3000"
    assert spec(cfg(linux=sc(run_as_username="nobody", run_as_group=pb.Int64Value(value=5)))).user.name == "nobody:5"
    assert spec(cfg(linux=sc(supplemental_groups=[10, 20]))).user.additional_gids == [10, 20]
    with pytest.raises(InvalidArgument, match="run_as_group needs"):
        spec(cfg(linux=sc(run_as_group=pb.Int64Value(value=5))))
    with pytest.raises(InvalidArgument, match="not both"):
        spec(cfg(linux=sc(run_as_user=pb.Int64Value(value=1), run_as_username="x")))
    with pytest.raises(InvalidArgument, match="not a valid id"):
        spec(cfg(linux=sc(run_as_user=pb.Int64Value(value=-1))))


def test_resources() -> None:
    r = specs.resources(pb.LinuxContainerResources(cpu_period=100000, cpu_quota=20000, cpu_shares=512,
                                                   memory_limit_in_bytes=64 << 20, pids_limit=100), "c")
    assert (r.cpu_period, r.cpu_quota, r.cpu_shares, r.memory_limit, r.pids_limit) == \
        (100000, 20000, 512, 64 << 20, 100)
    empty = specs.resources(pb.LinuxContainerResources(), "c")
    assert (empty.cpu_quota, empty.memory_limit, empty.pids_limit) == (None, None, None)  # CRI's 0: not set
    assert specs.resources(pb.LinuxContainerResources(cpu_quota=-1), "c").cpu_quota == -1
    for bad in ({"memory_limit_in_bytes": -5}, {"cpu_quota": -2}, {"cpu_period": 10}):
        with pytest.raises(InvalidArgument):
            specs.resources(pb.LinuxContainerResources(**bad), "c")  # type: ignore[arg-type]
    with pytest.raises(Unimplemented, match="cpuset_cpus"):
        specs.resources(pb.LinuxContainerResources(cpuset_cpus="0-1"), "c")


def test_log_path_is_relative_to_the_sandbox_log_directory() -> None:
    assert specs.log_path("/var/log/pods/ns_p_uid", "c/0.log", "c") == "/var/log/pods/ns_p_uid/c/0.log"
    assert specs.log_path("", "", "c") is None
    assert specs.log_path("", "/abs/c.log", "c") == "/abs/c.log"
    with pytest.raises(InvalidArgument, match="leaves"):
        specs.log_path("/var/log/pods/p", "../../../etc/cron.d/x", "c")
    with pytest.raises(InvalidArgument, match="relative"):
        specs.log_path("", "c.log", "c")


def test_mounts(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    s = spec(cfg(mounts=[pb.Mount(container_path="/d", host_path=str(tmp_path / "link"), readonly=True)]))
    assert [(m.source, m.destination, m.read_only) for m in s.mounts] == [(str(tmp_path / "data"), "/d", True)]
    for bad in (pb.Mount(container_path="d", host_path=str(tmp_path)),
                pb.Mount(container_path="/d", host_path=str(tmp_path / "missing"))):
        with pytest.raises(InvalidArgument):
            spec(cfg(mounts=[bad]))


def test_security(tmp_path: Path) -> None:
    s = spec(cfg())
    assert s.seccomp.type == SECCOMP_UNCONFINED and not s.no_new_privs and not s.privileged  # CRI defaults
    s = spec(cfg(linux=sc(seccomp=pb.SecurityProfile(), no_new_privs=True, readonly_rootfs=True,
                          capabilities=pb.Capability(add_capabilities=["NET_ADMIN"], drop_capabilities=["ALL"]))))
    assert s.seccomp.type == SECCOMP_RUNTIME_DEFAULT and s.no_new_privs and s.readonly_rootfs
    assert (s.cap_add, s.cap_drop) == (["NET_ADMIN"], ["ALL"])
    profile = tmp_path / "profile.json"
    profile.write_text("{}")
    local = pb.SecurityProfile(profile_type=pb.SecurityProfile.Localhost, localhost_ref=str(profile))
    s = spec(cfg(linux=sc(seccomp=local)))
    assert (s.seccomp.type, s.seccomp.localhost_path) == (SECCOMP_LOCALHOST, str(profile))
    with pytest.raises(InvalidArgument, match="localhost_ref"):
        spec(cfg(linux=sc(seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.Localhost,
                                                     localhost_ref="relative.json"))))
    with pytest.raises(InvalidArgument, match="privileged"):
        spec(cfg(linux=sc(privileged=True)))
    assert spec(cfg(linux=sc(privileged=True)), sandbox_privileged=True).privileged
    with pytest.raises(Unimplemented, match="pid namespace"):
        spec(cfg(linux=sc(namespace_options=pb.NamespaceOption(pid=pb.POD))))
    s = spec(cfg(tty=True, stdin=True, stdin_once=True))
    assert (s.tty, s.stdin, s.stdin_once) == (True, True, True)
    assert not spec(cfg(stdin_once=True)).stdin_once  # meaningless without stdin, as in CRI
    s = spec(cfg(linux=sc(masked_paths=["/proc/kcore"]), labels={"a": "b"}, annotations={"k": "v"}))
    assert s.masked_paths == ["/proc/kcore"] and s.readonly_paths is None  # empty: the runtime's defaults
    assert (s.labels, s.annotations) == ({"a": "b"}, {"k": "v"})
