"""What the service remembers about sandboxes and containers beyond the managers' state.

The managers know namespaces, cgroups and processes; the service adds the CRI
view: the configs as given (metadata, labels, annotations, image, mounts),
the pod IP, and how far a create got. One JSON file per object under
`<root>/cri/`, written atomically. A sandbox's is written before its
namespaces and network are made (phase "creating"), a container's once the
manager has made it, so a restarted runtime tells finished objects from
leftovers of a create that died half-way, and cleans those up.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from dataclasses import dataclass
from typing import Any

from ..container.state import plain_data, read_json, write_json
from .errors import InvalidArgument, NotFound

log = logging.getLogger(__name__)

CREATING, READY, STOPPED = "creating", "ready", "stopped"  # sandbox phases
CREATED = "created"  # container phase after CREATING


@dataclass
class SandboxRecord:
    id: str
    name: str  # name_namespace_uid_attempt: unique among sandboxes, like containerd
    config: dict[str, Any]  # PodSandboxConfig as proto JSON
    created_at: int
    cgroup_parent: str
    phase: str = CREATING
    host_network: bool = False
    netns: str | None = None  # the namespace file this service created (None: node network)
    ip: str | None = None  # None when the pod network is not (or no longer) set up


@dataclass
class ContainerRecord:
    id: str
    sandbox_id: str
    name: str  # name_attempt: unique within its sandbox
    config: dict[str, Any]  # ContainerConfig as proto JSON
    created_at: int
    image_id: str = ""
    image_ref: str = ""
    phase: str = CREATED


def new_id() -> str:
    return secrets.token_hex(32)


class Records:
    """The records in memory, mirrored to files; thread-safe."""

    def __init__(self, root: str):
        self.sandbox_dir = os.path.join(root, "cri", "sandboxes")
        self.container_dir = os.path.join(root, "cri", "containers")
        os.makedirs(self.sandbox_dir, exist_ok=True)
        os.makedirs(self.container_dir, exist_ok=True)
        self.lock = threading.RLock()
        self.sandboxes: dict[str, SandboxRecord] = {}
        self.containers: dict[str, ContainerRecord] = {}
        self._load()

    def _load(self) -> None:
        for d, cls, into in ((self.sandbox_dir, SandboxRecord, self.sandboxes),
                             (self.container_dir, ContainerRecord, self.containers)):
            for name in sorted(os.listdir(d)):
                if not name.endswith(".json"):
                    continue  # a temp file of an interrupted write
                data = read_json(os.path.join(d, name))
                try:
                    rec = cls(**data) if data else None  # type: ignore[arg-type]
                except TypeError:
                    rec = None
                if rec is None:
                    log.warning("record=%s msg=unreadable, ignoring it", os.path.join(d, name))
                    continue
                into[rec.id] = rec  # type: ignore[index, assignment]

    # -- writes --
    # The file is written outside `lock`: each write releases the GIL a few times, and
    # a lock held across those made every lookup and save of a 100-pod burst queue
    # behind one thread waiting for the GIL (a convoy: ~5 ms per switch). A record is
    # saved only by the holder of its sandbox's lock, so its writes do not race.
    def save_sandbox(self, rec: SandboxRecord) -> None:
        write_json(os.path.join(self.sandbox_dir, f"{rec.id}.json"), plain_data(rec))
        with self.lock:
            self.sandboxes[rec.id] = rec

    def save_container(self, rec: ContainerRecord) -> None:
        write_json(os.path.join(self.container_dir, f"{rec.id}.json"), plain_data(rec))
        with self.lock:
            self.containers[rec.id] = rec

    def claim_sandbox(self, rec: SandboxRecord) -> SandboxRecord | None:
        """Save a new sandbox unless its name is taken; returns the sandbox that holds the name."""
        with self.lock:
            taken = next((r for r in self.sandboxes.values() if r.name == rec.name), None)
            if taken is not None:
                return taken
            self.sandboxes[rec.id] = rec  # the name is ours from here on
        try:
            self.save_sandbox(rec)
        except BaseException:
            with self.lock:
                self.sandboxes.pop(rec.id, None)
            raise
        return None

    def drop_sandbox(self, sid: str) -> None:
        with self.lock:
            self.sandboxes.pop(sid, None)
        _unlink(os.path.join(self.sandbox_dir, f"{sid}.json"))

    def drop_container(self, cid: str) -> None:
        with self.lock:
            self.containers.pop(cid, None)
        _unlink(os.path.join(self.container_dir, f"{cid}.json"))

    # -- lookups --
    def sandbox(self, ref: str) -> SandboxRecord:
        with self.lock:
            return self.sandboxes[_resolve(ref, self.sandboxes, "pod sandbox")]

    def container(self, ref: str) -> ContainerRecord:
        with self.lock:
            return self.containers[_resolve(ref, self.containers, "container")]

    def find_sandbox(self, ref: str) -> SandboxRecord | None:
        try:
            return self.sandbox(ref)
        except NotFound:
            return None

    def find_container(self, ref: str) -> ContainerRecord | None:
        try:
            return self.container(ref)
        except NotFound:
            return None

    def containers_of(self, sid: str) -> list[ContainerRecord]:
        with self.lock:
            return [c for c in self.containers.values() if c.sandbox_id == sid]

    def image_ids_in_use(self) -> set[str]:
        with self.lock:
            return {c.image_id for c in self.containers.values() if c.image_id}


def _resolve(ref: str, items: dict[str, Any], what: str) -> str:
    """A full ID or a unique prefix of one (as crictl and containerd accept)."""
    if not ref:
        raise InvalidArgument(f"{what} ID is empty; give an ID or a unique prefix of one")
    if ref in items:
        return ref
    hits = [k for k in items if k.startswith(ref)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise InvalidArgument(f"{what} ID prefix {ref!r} matches {len(hits)} {what}s; give more characters")
    raise NotFound(f"{what} {ref!r} not found")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
