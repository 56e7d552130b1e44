"""The runtime service's state: options, the managers, the records, and the locks.

Everything here is synchronous and thread-safe; the gRPC servicer calls the
functions of pods.py, containers.py and images.py in worker threads.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from ..cgroups import Cgroups
from ..container import ContainerManager
from ..container.forkserver import ForkServer
from ..images import ImageService
from ..linux import SyscallsLike
from ..network import NetworkConfig, NetworkError, setup_node_network
from ..sandbox import READY as SANDBOX_READY
from ..sandbox import SandboxError, SandboxManager
from ..statefs import state_dir
from .errors import Unavailable
from .options import RuntimeOptions
from .records import READY, Records, SandboxRecord

log = logging.getLogger(__name__)

class Runtime:
    def __init__(self, opts: RuntimeOptions, sys: SyscallsLike, cgroups: Cgroups, forkserver: ForkServer):
        self.opts = opts
        self.sys = sys
        self.cgroups = cgroups
        os.makedirs(opts.root, mode=0o711, exist_ok=True)
        # Volatile state (see statefs); serve() mounts a tmpfs there first.
        self.state_dir = state_dir(opts.root)
        self.records = Records(self.state_dir)
        self.containers = ContainerManager(opts.root, cgroups, forkserver, sys,
                                           force_copy_rootfs=opts.force_copy_rootfs, state_root=self.state_dir)
        self.sandboxes = SandboxManager(self.state_dir, cgroups, sys)
        self.images = ImageService(os.path.join(opts.root, "images"),
                                   insecure_registries=opts.insecure_registries,
                                   in_use=self.records.image_ids_in_use)
        self.network = NetworkConfig(pod_cidr=opts.pod_cidr, state_dir=os.path.join(self.state_dir, "network"),
                                     bridge=opts.bridge, node_netns=opts.node_netns,
                                     cluster_cidrs=opts.cluster_cidrs)
        self.netns_dir = os.path.join(self.state_dir, "netns")
        self.network_error = "not set up yet"
        self.stopping = threading.Event()  # set when the daemon stops: long waits give up
        self._image_configs: dict[str, dict[str, Any]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def sandbox_lock(self, sid: str) -> threading.Lock:
        """Serializes a sandbox's lifecycle with the creation of containers in it."""
        with self._guard:
            return self._locks.setdefault(sid, threading.Lock())

    def forget_lock(self, sid: str) -> None:
        with self._guard:
            self._locks.pop(sid, None)

    def check_not_stopping(self) -> None:
        if self.stopping.is_set():
            raise Unavailable("the runtime is stopping; retry when it is back (containers keep running)")

    def image_config(self, image_id: str) -> dict[str, Any]:
        """The image's runtime config; cached, as an image ID is the digest of its config."""
        cfg = self._image_configs.get(image_id)
        if cfg is None:
            cfg = self.images.store.image_config(image_id)
            with self._guard:
                if len(self._image_configs) > 256:
                    self._image_configs.clear()
                self._image_configs[image_id] = cfg
        return cfg

    def setup_network(self) -> None:
        """The node bridge and firewall; the runtime serves without them (host-network pods only)."""
        try:
            setup_node_network(self.network)
            self.network_error = ""
        except NetworkError as e:
            self.network_error = str(e)
            log.error("msg=pod network unavailable error=%s", e)

    @property
    def network_ready(self) -> bool:
        return not self.network_error

    def sandbox_ready(self, rec: SandboxRecord) -> bool:
        """Ready: fully created, not stopped, and its namespaces are still there."""
        if rec.phase != READY:
            return False
        try:
            return self.sandboxes.status(rec.id).state == SANDBOX_READY
        except SandboxError:
            return False

    def host_netns(self) -> str:
        """The namespace file host-network pods join: the node's, else the runtime's own.

        /proc/self resolves in the shim, a child of the fork server, which shares
        the runtime's network namespace.
        """
        return self.opts.node_netns or "/proc/self/ns/net"

    def close(self) -> None:
        self.containers.close()
