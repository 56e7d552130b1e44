"""The runtime daemon's options and defaults (no grpc here: the daemon reads them before its fork server starts)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_ROOT = "/var/lib/timonel/runtime"
DEFAULT_SOCKET = "/run/timonel/runtime.sock"
# containerd's and podman's default pod network; a multi-node cluster gives each
# node its own slice (the Node's spec.podCIDR) with --pod-cidr.
DEFAULT_POD_CIDR = "10.88.0.0/16"
DEFAULT_CGROUP_PARENT = "timonel"
RUNTIME_NAME = "timonel"
API_VERSION = "v1"


@dataclass
class RuntimeOptions:
    root: str = DEFAULT_ROOT
    socket: str = DEFAULT_SOCKET
    pod_cidr: str = DEFAULT_POD_CIDR
    cgroup_parent: str = DEFAULT_CGROUP_PARENT
    bridge: str = "timonel0"
    # Where the node side of pod networking lives (bridge, host veths, firewall);
    # None: the runtime's own network namespace. Test clusters give a namespace file.
    node_netns: str | None = None
    cluster_cidrs: tuple[str, ...] = ()
    insecure_registries: tuple[str, ...] = ()
    # Threads for the calls that do a pod's work (sandboxes, creates). On two CPUs, 32 let a
    # burst of 100 pod starts interleave every start with every other (and thrash the GIL);
    # since the pool serves pods under way first, 4 beat 8 as well (less GIL hand-over).
    workers: int = 4
    force_copy_rootfs: bool = False
