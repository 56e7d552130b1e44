"""What a container is asked to be: the spec the runtime service fills in.

Stored as `spec.json` in the container's state dir, so a restarted runtime
(and the shim) read the same thing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..cgroups import Resources
from .state import plain_data

SECCOMP_RUNTIME_DEFAULT = "RuntimeDefault"
SECCOMP_UNCONFINED = "Unconfined"
SECCOMP_LOCALHOST = "Localhost"

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class SpecError(ValueError):
    """A spec the runtime cannot run; the message names the field and the fix."""


@dataclass
class Mount:
    """A bind mount from the host (emptyDir, configMap, secret, hostPath ...)."""

    source: str
    destination: str
    read_only: bool = False


@dataclass
class Rlimit:
    type: str  # "RLIMIT_NOFILE" or "nofile"
    soft: int
    hard: int


@dataclass
class User:
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)
    # A Docker-style user ("nobody", "1000", "app:staff", "1000:1000"), e.g. from the image
    # config or runAsUserName: resolved in the image's /etc/passwd, overriding uid/gid.
    name: str | None = None


@dataclass
class Seccomp:
    type: str = SECCOMP_RUNTIME_DEFAULT  # RuntimeDefault | Unconfined | Localhost
    localhost_path: str | None = None  # a Docker-format JSON profile (Localhost)


@dataclass
class ContainerSpec:
    id: str
    args: list[str]
    # Read-only layer dirs, top layer first: overlay's lowerdir order, as ImageStore.rootfs_layers gives them.
    rootfs_layers: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str = "/"
    hostname: str | None = None  # set only when the container has its own UTS namespace
    user: User = field(default_factory=User)
    cap_add: list[str] = field(default_factory=list)  # "NET_ADMIN" or "CAP_NET_ADMIN"; "ALL"
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    no_new_privs: bool = True
    seccomp: Seccomp = field(default_factory=Seccomp)
    readonly_rootfs: bool = False
    rlimits: list[Rlimit] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)
    # Namespace files to join, e.g. {"net": ".../netns", "ipc": ..., "uts": ...};
    # every other namespace the container gets new.
    namespaces: dict[str, str] = field(default_factory=dict)
    sandbox_id: str | None = None
    cgroup_parent: str = "timonel"  # the pod's cgroup when in a sandbox
    hosts: str | None = None  # /etc/hosts content; None: a localhost-only file
    resolv_conf: str | None = None  # /etc/resolv.conf content; None: the host's
    log_path: str | None = None  # None: container.log in the state dir
    log_max_size: int = 10 * 1024 * 1024
    log_max_files: int = 5
    masked_paths: list[str] | None = None  # None: Docker's defaults
    readonly_paths: list[str] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    stdin: bool = False  # a pipe (or the tty) the shim holds open, written through Attach
    stdin_once: bool = False  # stdin closes when the first attached client leaves
    tty: bool = False  # a pty: the shim holds the master, output is logged as stdout

    def to_dict(self) -> dict[str, Any]:
        return plain_data(self)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerSpec:
        d = dict(data)
        d["user"] = User(**d.get("user", {}))
        d["seccomp"] = Seccomp(**d.get("seccomp", {}))
        d["rlimits"] = [Rlimit(**r) for r in d.get("rlimits", [])]
        d["mounts"] = [Mount(**m) for m in d.get("mounts", [])]
        d["resources"] = Resources.from_dict(d.get("resources"))
        return cls(**d)

    def validate(self) -> None:
        if not _ID.match(self.id):
            raise SpecError(f"container id {self.id!r}: use 1-128 letters, digits, '_', '.', '-'")
        if not self.args:
            raise SpecError(f"container {self.id}: args is empty; give the command to run")
        if not self.rootfs_layers:
            raise SpecError(f"container {self.id}: rootfs_layers is empty; give the image's layer dirs")
        for i, m in enumerate(self.mounts):
            if not m.destination.startswith("/"):
                raise SpecError(f"container {self.id}: mounts[{i}].destination {m.destination!r} "
                                "must be an absolute path")
        if not self.working_dir.startswith("/"):
            raise SpecError(f"container {self.id}: working_dir {self.working_dir!r} must be absolute")
        if self.seccomp.type not in (SECCOMP_RUNTIME_DEFAULT, SECCOMP_UNCONFINED, SECCOMP_LOCALHOST):
            raise SpecError(f"container {self.id}: seccomp.type {self.seccomp.type!r}: use "
                            "RuntimeDefault, Unconfined or Localhost")
        if self.seccomp.type == SECCOMP_LOCALHOST and not self.seccomp.localhost_path:
            raise SpecError(f"container {self.id}: seccomp type Localhost needs localhost_path")
        for kind in self.namespaces:
            if kind not in ("net", "ipc", "uts"):
                raise SpecError(f"container {self.id}: namespaces[{kind!r}]: only net, ipc and uts "
                                "can be joined; the container always gets its own mnt, pid, cgroup")
