"""From a ContainerSpec to the launch plan the shim and init follow.

All decisions and validation happen here, in the runtime, at create time:
the shim only reads `launch.json` (and `seccomp.bpf`) and acts.
"""

from __future__ import annotations

import os
from typing import Any

from .capabilities import effective_set
from .init import InitConfig
from .rootfs import MASKED_PATHS, READONLY_PATHS, RootfsPlan
from .security import Credentials, resolve_rlimits
from .spec import ContainerSpec, Mount
from .state import plain_data

_SHARED_KINDS = ("net", "ipc", "uts")


def default_hosts(hostname: str | None) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    if hostname:
        lines.append(f"127.0.1.1\t{hostname}")
    return "\n".join(lines) + "\n"


def host_resolv_conf() -> str:
    # Loopback resolvers of the host are unreachable from a pod's network namespace.
    try:
        with open("/etc/resolv.conf") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    kept = [ln for ln in lines if not (ln.startswith("nameserver") and
                                         (" 127." in ln or ln.strip().endswith("::1")))]
    return "\n".join(kept) + "\n"


def etc_files(spec: ContainerSpec, state_dir: str) -> dict[str, str]:
    """Write /etc/hosts, /etc/hostname, /etc/resolv.conf into the state dir; map target -> file."""
    hostname = spec.hostname or ""
    contents = {
        "/etc/hosts": spec.hosts if spec.hosts is not None else default_hosts(hostname),
        "/etc/hostname": f"{hostname}\n" if hostname else "",
        "/etc/resolv.conf": spec.resolv_conf if spec.resolv_conf is not None else host_resolv_conf(),
    }
    out = {}
    for target, text in contents.items():
        if target == "/etc/hostname" and not hostname:
            continue
        path = os.path.join(state_dir, os.path.basename(target))
        with open(path, "w") as f:
            f.write(text)
        out[target] = path
    return out


def build(spec: ContainerSpec, state_dir: str, cgroup: str, procs_files: list[str],
          force_copy: bool = False,
          cgroup_mounts: tuple[list[list[str]], dict[str, str]] = ([], {}),
          layer_dir: str | None = None) -> tuple[dict[str, Any], int]:
    """The launch plan (JSON-able) and the capability mask it keeps.

    The writable layer (overlay upper and work dirs, or the copy of the image) is
    in `layer_dir`, on disk; the rest in `state_dir`, which may be a tmpfs.
    """
    layer_dir = layer_dir or state_dir
    if not spec.hostname and "uts" not in spec.namespaces:
        # Its own UTS namespace starts as a copy of the host's name: never show that.
        spec.hostname = spec.id[:63]
    caps = effective_set(spec.cap_add, spec.cap_drop, spec.privileged)
    cred = Credentials(
        uid=spec.user.uid, gid=spec.user.gid, groups=list(spec.user.additional_gids), caps=caps,
        no_new_privs=spec.no_new_privs, seccomp=None, rlimits=resolve_rlimits(spec.rlimits))
    plan = RootfsPlan(
        root=os.path.join(state_dir, "rootfs"),
        layers=list(spec.rootfs_layers),
        upper=os.path.join(layer_dir, "upper"),
        work=os.path.join(layer_dir, "work"),
        copy_dir=os.path.join(layer_dir, "rootfs-copy"),
        mounts=list(spec.mounts),
        etc_files=etc_files(spec, state_dir),
        privileged=spec.privileged,
        masked_paths=MASKED_PATHS if spec.masked_paths is None else spec.masked_paths,
        readonly_paths=READONLY_PATHS if spec.readonly_paths is None else spec.readonly_paths,
        working_dir=spec.working_dir,
        force_copy=force_copy,
        cgroup_mounts=cgroup_mounts[0],
        cgroup_links=cgroup_mounts[1],
    )
    join = {k: p for k, p in spec.namespaces.items() if k in _SHARED_KINDS}
    extra_env = {"HOSTNAME": spec.hostname} if spec.hostname else {}
    cfg = InitConfig(
        args=list(spec.args), env=dict(spec.env), working_dir=spec.working_dir,
        hostname=spec.hostname, procs_files=procs_files,
        new_namespaces=[k for k in _SHARED_KINDS if k not in join],
        rootfs=plan, readonly_rootfs=spec.readonly_rootfs, cred=cred, extra_env=extra_env,
        user_name=spec.user.name, tty=spec.tty)
    launch = {
        "id": spec.id,
        "init": init_config_to_dict(cfg),
        "join": join,
        "cgroup": cgroup,
        "log_path": spec.log_path or os.path.join(state_dir, "container.log"),
        "log_max_size": spec.log_max_size,
        "log_max_files": spec.log_max_files,
        "stdio": {"stdin": spec.stdin, "stdin_once": spec.stdin_once, "tty": spec.tty},
    }
    return launch, caps


def init_config_to_dict(cfg: InitConfig) -> dict[str, Any]:
    d: dict[str, Any] = plain_data(cfg)
    d["cred"].pop("seccomp", None)  # binary: kept in seccomp.bpf
    return d


def init_config_from_dict(d: dict[str, Any]) -> InitConfig:
    d = dict(d)
    rootfs = dict(d["rootfs"])
    rootfs["mounts"] = [Mount(**m) for m in rootfs["mounts"]]
    d["rootfs"] = RootfsPlan(**rootfs)
    cred = dict(d["cred"])
    cred["rlimits"] = [tuple(r) for r in cred["rlimits"]]
    d["cred"] = Credentials(**cred)
    return InitConfig(**d)
