"""Pod sandboxes: the namespaces and cgroup a pod's containers share.

A sandbox holds IPC and UTS namespaces (and a network namespace, unless the
caller brings one, e.g. from the pod network code) as bind-mounted files in
`<root>/sandboxes/<id>/ns/`, so no process has to stay alive for them. Its
cgroup `<parent>/<id>` carries pod-level limits; containers nest under it.
Removing a sandbox kills what is left in its cgroup, unmounts the namespace
files and deletes its cgroup and state: nothing remains.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

from .cgroups import Cgroups, Resources
from .container import namespaces
from .container.spec import ContainerSpec, SpecError
from .container.state import read_json, write_json
from .linux import SyscallsLike

log = logging.getLogger(__name__)

READY, NOTREADY = "ready", "notready"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class SandboxError(RuntimeError):
    pass


@dataclass
class SandboxSpec:
    id: str
    hostname: str = ""
    netns_path: str | None = None  # an existing network namespace to use instead of a new one
    resources: Resources = field(default_factory=Resources)
    cgroup_parent: str = "timonel"
    hosts: str | None = None  # /etc/hosts for the pod's containers
    resolv_conf: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class SandboxStatus:
    id: str
    state: str  # ready | notready
    created_at: int
    hostname: str
    namespaces: dict[str, str]  # kind -> namespace file to join
    cgroup: str
    labels: dict[str, str]
    annotations: dict[str, str]


class SandboxManager:
    def __init__(self, root: str, cgroups: Cgroups, sys: SyscallsLike):
        self.dir = os.path.join(root, "sandboxes")
        os.makedirs(self.dir, exist_ok=True)
        self.cgroups = cgroups
        self.sys = sys
        # sandbox.json as last written: only this process writes it (the agent lists every
        # sandbox each sync pass, which read and parsed every file)
        self._records: dict[str, dict[str, Any]] = {}

    def state_dir(self, sid: str) -> str:
        return os.path.join(self.dir, sid)

    def create(self, spec: SandboxSpec) -> SandboxStatus:
        if not _ID.match(spec.id):
            raise SpecError(f"sandbox id {spec.id!r}: use 1-128 letters, digits, '_', '.', '-'")
        if spec.netns_path is not None and not os.path.exists(spec.netns_path):
            raise SpecError(f"sandbox {spec.id}: netns_path {spec.netns_path} does not exist; "
                            "create the network namespace first or leave it unset")
        d = self.state_dir(spec.id)
        try:
            os.makedirs(os.path.join(d, "ns"))
        except FileExistsError:
            raise SandboxError(f"sandbox {spec.id} already exists; remove it first") from None
        cgroup = f"{spec.cgroup_parent.strip('/')}/{spec.id}"
        spec.hostname = spec.hostname or spec.id[:63]  # never the host's name, which a new UTS ns copies
        kinds = ["ipc", "uts"] + ([] if spec.netns_path else ["net"])
        paths = {k: os.path.join(d, "ns", k) for k in kinds}
        record: dict[str, Any] = {
            "id": spec.id, "hostname": spec.hostname, "created_at": time.time_ns(), "state": READY,
            "cgroup": cgroup, "owned": paths,
            "namespaces": {**paths, **({"net": spec.netns_path} if spec.netns_path else {})},
            "hosts": spec.hosts, "resolv_conf": spec.resolv_conf,
            "labels": spec.labels, "annotations": spec.annotations,
            "resources": spec.resources.to_dict(),
        }
        try:
            write_json(os.path.join(d, "sandbox.json"), record)
            self._records[spec.id] = record
            self.cgroups.create(cgroup, spec.resources)
            namespaces.create_in_thread(self.sys, kinds, paths, spec.hostname)
        except BaseException:
            self._release(d, record)
            raise
        return self.status(spec.id)

    def _record(self, sid: str) -> dict[str, Any]:
        """The sandbox's record; callers must not change it (see stop)."""
        rec = self._records.get(sid)
        if rec is None:
            rec = read_json(os.path.join(self.state_dir(sid), "sandbox.json"))
            if rec is None:
                raise SandboxError(f"sandbox {sid} not found")
            self._records[sid] = rec
        return rec

    def status(self, sid: str) -> SandboxStatus:
        r = self._record(sid)
        return SandboxStatus(r["id"], r["state"], r["created_at"], r["hostname"], r["namespaces"],
                             r["cgroup"], r["labels"], r["annotations"])

    def list(self) -> list[SandboxStatus]:
        out = []
        for name in sorted(os.listdir(self.dir)):
            try:
                out.append(self.status(name))
            except SandboxError:
                continue
        return out

    def container_spec(self, sid: str, spec: ContainerSpec) -> ContainerSpec:
        """`spec` placed in the sandbox: its namespaces, cgroup, hostname and /etc files."""
        r = self._record(sid)
        if r["state"] != READY:
            raise SandboxError(f"sandbox {sid} is stopped; start a new sandbox for new containers")
        spec.sandbox_id = sid
        spec.namespaces = dict(r["namespaces"])
        spec.cgroup_parent = r["cgroup"]
        spec.hostname = r["hostname"] or spec.hostname
        if spec.hosts is None:
            spec.hosts = r.get("hosts")
        if spec.resolv_conf is None:
            spec.resolv_conf = r.get("resolv_conf")
        return spec

    def stop(self, sid: str) -> None:
        """Kill every process of the pod; the namespaces stay until remove."""
        r = dict(self._record(sid), state=NOTREADY)
        if self.cgroups.exists(r["cgroup"]):
            self.cgroups.kill(r["cgroup"])
        write_json(os.path.join(self.state_dir(sid), "sandbox.json"), r)
        self._records[sid] = r

    def remove(self, sid: str) -> None:
        d = self.state_dir(sid)
        r = self._record(sid)
        if self.cgroups.exists(r["cgroup"]):
            self.cgroups.kill(r["cgroup"])
        self._release(d, r)

    def _release(self, d: str, r: dict[str, Any]) -> None:
        for path in r.get("owned", {}).values():
            namespaces.release(self.sys, path)
        if self.cgroups.exists(r["cgroup"]):
            self.cgroups.remove(r["cgroup"])
        shutil.rmtree(d, ignore_errors=True)
        self._records.pop(r["id"], None)
