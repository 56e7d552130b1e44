"""From CRI messages to the runtime's own specs: ContainerConfig -> ContainerSpec, resources.

Pure functions (no I/O but reading the image's /etc files and checking host
paths), so the CRI semantics are unit-tested without root: the command is
`command` (else the image's entrypoint) followed by `args` (else, when no
command was given, the image's cmd); env is the image's, overridden by the
config's; the working dir and user default to the image's. User names are
resolved inside the container, in the image's own /etc/passwd (container/users.py).
"""

from __future__ import annotations

import os
import re
from typing import Any

from ..api import runtime_pb2 as pb
from ..cgroups import Resources
from ..container import ContainerSpec, Mount, Seccomp, User
from ..container.spec import SECCOMP_LOCALHOST, SECCOMP_RUNTIME_DEFAULT, SECCOMP_UNCONFINED
from .errors import InvalidArgument, Unimplemented

_PROFILE = {0: SECCOMP_RUNTIME_DEFAULT, 1: SECCOMP_UNCONFINED, 2: SECCOMP_LOCALHOST}
_ENV_KEY = re.compile(r"^[^=\0]+$")


def resources(r: pb.LinuxContainerResources | None, where: str) -> Resources:
    """CRI's 0 means "not set"; negative values are mistakes (but cpu_quota -1: unlimited)."""
    if r is None:
        return Resources()
    for name in ("cpu_period", "cpu_shares", "memory_limit_in_bytes", "memory_swap_limit_in_bytes",
                 "pids_limit"):
        if getattr(r, name) < 0 and not (name in ("memory_swap_limit_in_bytes", "pids_limit")
                                          and getattr(r, name) == -1):
            raise InvalidArgument(f"{where}: {name} {getattr(r, name)} is negative; use 0 for 'not set'")
    if r.cpu_quota < -1:
        raise InvalidArgument(f"{where}: cpu_quota {r.cpu_quota}: use -1 (unlimited), 0 (not set) or "
                              "microseconds per period")
    if r.cpu_period and not 1000 <= r.cpu_period <= 1_000_000:
        raise InvalidArgument(f"{where}: cpu_period {r.cpu_period} must be 1000..1000000 microseconds")
    for name in ("cpuset_cpus", "cpuset_mems"):
        if getattr(r, name):
            raise Unimplemented(f"{where}: {name} is not supported by this runtime; leave it empty")
    if r.unified:
        raise Unimplemented(f"{where}: unified (raw cgroup v2 files) is not supported; use the typed fields")
    return Resources(
        memory_limit=r.memory_limit_in_bytes or None,
        memory_swap_limit=r.memory_swap_limit_in_bytes or None,
        cpu_quota=r.cpu_quota or None,
        cpu_period=r.cpu_period or None,
        cpu_shares=r.cpu_shares or None,
        pids_limit=r.pids_limit or None,
    )


def command(config: pb.ContainerConfig, image: dict[str, Any], where: str) -> list[str]:
    """Docker's and containerd's rule: command replaces the entrypoint, args the cmd."""
    cmd, args = list(config.command), list(config.args)
    if not cmd:
        cmd = list(image.get("entrypoint") or [])
        if not args:
            args = list(image.get("cmd") or [])
    full = cmd + args
    if not full:
        raise InvalidArgument(f"{where}: no command: the config has neither command nor args and the "
                              "image has no entrypoint or cmd")
    return full


def environment(config: pb.ContainerConfig, image: dict[str, Any], where: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in image.get("env") or []:
        key, sep, value = str(item).partition("=")
        if key and sep:
            env[key] = value
    for kv in config.envs:
        if not _ENV_KEY.match(kv.key):
            raise InvalidArgument(f"{where}: envs: {kv.key!r} is not a valid variable name")
        env[kv.key] = kv.value
    return env


def mounts(config: pb.ContainerConfig, where: str) -> list[Mount]:
    out = []
    for i, m in enumerate(config.mounts):
        if not m.container_path.startswith("/"):
            raise InvalidArgument(f"{where}: mounts[{i}].container_path {m.container_path!r} must be absolute")
        if not m.host_path.startswith("/"):
            raise InvalidArgument(f"{where}: mounts[{i}].host_path {m.host_path!r} must be absolute")
        source = os.path.realpath(m.host_path)  # CRI: a symlink is followed to its destination
        if not os.path.exists(source):
            raise InvalidArgument(f"{where}: mounts[{i}].host_path {m.host_path} does not exist; "
                                  "create it before the container")
        out.append(Mount(source=source, destination=m.container_path, read_only=m.readonly))
    return out


def log_path(log_directory: str, path: str, where: str) -> str | None:
    """CRI: the container's log_path is relative to the sandbox's log_directory."""
    if not path:
        return None
    if not log_directory:
        if os.path.isabs(path):
            return os.path.normpath(path)
        raise InvalidArgument(f"{where}: log_path {path!r} is relative but the sandbox has no "
                              "log_directory; give an absolute path or set log_directory")
    base = os.path.normpath(log_directory)
    full = os.path.normpath(os.path.join(base, path))
    if full != base and not full.startswith(base + os.sep):
        raise InvalidArgument(f"{where}: log_path {path!r} leaves the sandbox's log_directory {base}")
    return full


def seccomp(sc: pb.LinuxContainerSecurityContext, where: str) -> Seccomp:
    if not sc.HasField("seccomp"):
        return Seccomp(type=SECCOMP_UNCONFINED)  # as CRI: no profile asked for, none applied
    kind = _PROFILE.get(sc.seccomp.profile_type)
    if kind is None:
        raise InvalidArgument(f"{where}: seccomp.profile_type {sc.seccomp.profile_type} is unknown")
    if kind != SECCOMP_LOCALHOST:
        return Seccomp(type=kind)
    ref = sc.seccomp.localhost_ref
    if not ref.startswith("/") or not os.path.isfile(ref):
        raise InvalidArgument(f"{where}: seccomp localhost_ref {ref!r} must be the absolute path of an "
                              "existing profile file on the node")
    return Seccomp(type=kind, localhost_path=ref)


def check_namespaces(sc: pb.LinuxContainerSecurityContext, where: str) -> None:
    if not sc.HasField("namespace_options"):
        return
    pid = sc.namespace_options.pid
    if pid != pb.CONTAINER:
        name = pb.NamespaceMode.Name(pid)
        raise Unimplemented(f"{where}: pid namespace mode {name} is not supported; every container gets "
                            "its own PID namespace (CONTAINER)")


def user(image_user: str, sc: pb.LinuxContainerSecurityContext, where: str) -> User:
    """CRI's run_as_user / run_as_username / run_as_group over the image's User, as a Docker user string."""
    has_uid, has_gid = sc.HasField("run_as_user"), sc.HasField("run_as_group")
    if has_uid and sc.run_as_username:
        raise InvalidArgument(f"{where}: give run_as_user or run_as_username, not both")
    if has_gid and not (has_uid or sc.run_as_username):
        raise InvalidArgument(f"{where}: run_as_group needs run_as_user or run_as_username")
    for field_name in ("run_as_user", "run_as_group"):
        if sc.HasField(field_name) and not 0 <= getattr(sc, field_name).value < 1 << 32:
            raise InvalidArgument(f"{where}: {field_name} {getattr(sc, field_name).value} is not a valid id")
    if has_uid:
        name = str(sc.run_as_user.value)
    elif sc.run_as_username:
        if ":" in sc.run_as_username:
            raise InvalidArgument(f"{where}: run_as_username {sc.run_as_username!r} must be a user name only")
        name = sc.run_as_username
    else:
        name = image_user
    if has_gid:
        name = f"{name.partition(':')[0]}:{sc.run_as_group.value}"
    groups = [int(g) for g in sc.supplemental_groups]
    if any(not 0 <= g < 1 << 32 for g in groups):
        raise InvalidArgument(f"{where}: supplemental_groups {groups} holds an invalid id")
    return User(uid=0, gid=0, additional_gids=groups, name=name or None)


def container_spec(cid: str, config: pb.ContainerConfig, image: dict[str, Any], layers: list[str],
                   sandbox_log_directory: str = "", sandbox_privileged: bool = False) -> ContainerSpec:
    """The spec before the sandbox puts it in its namespaces and cgroup."""
    where = f"container {config.metadata.name or cid}"
    linux = config.linux
    sc = linux.security_context
    if sc.privileged and not sandbox_privileged:
        raise InvalidArgument(f"{where}: privileged container in a sandbox that is not privileged; set "
                              "linux.security_context.privileged on the pod sandbox too")
    if sc.capabilities.add_ambient_capabilities:
        raise Unimplemented(f"{where}: add_ambient_capabilities is not supported")
    check_namespaces(sc, where)
    working_dir = config.working_dir or str(image.get("working_dir") or "") or "/"
    if not working_dir.startswith("/"):
        raise InvalidArgument(f"{where}: working_dir {working_dir!r} must be absolute")
    return ContainerSpec(
        id=cid,
        args=command(config, image, where),
        rootfs_layers=list(layers),
        env=environment(config, image, where),
        working_dir=working_dir,
        user=user(str(image.get("user") or ""), sc, where),
        cap_add=list(sc.capabilities.add_capabilities),
        cap_drop=list(sc.capabilities.drop_capabilities),
        privileged=sc.privileged,
        no_new_privs=sc.no_new_privs,
        seccomp=seccomp(sc, where),
        readonly_rootfs=sc.readonly_rootfs,
        mounts=mounts(config, where),
        resources=resources(linux.resources if linux.HasField("resources") else None, where),
        log_path=log_path(sandbox_log_directory, config.log_path, where),
        masked_paths=list(sc.masked_paths) or None,
        readonly_paths=list(sc.readonly_paths) or None,
        labels=dict(config.labels),
        annotations=dict(config.annotations),
        stdin=config.stdin,
        stdin_once=config.stdin and config.stdin_once,
        tty=config.tty,
    )
