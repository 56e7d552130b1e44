"""Pod networking: namespaces, the node bridge, veth pairs, IPAM, firewall, host-gw routes.

Typical use by the runtime::

    cfg = NetworkConfig(pod_cidr="10.88.0.0/24", state_dir=f"{root}/network")
    setup_node_network(cfg)                           # once per node start
    path = create_netns(pod_id, f"{root}/netns")      # per sandbox
    net = setup_pod_network(path, pod_id, cfg)        # -> PodNetwork(ip=..., ...)
    teardown_pod_network(pod_id, cfg, path)
    delete_netns(pod_id, f"{root}/netns")
    set_peer_routes({"10.88.1.0/24": "192.168.0.12"}, cfg)   # when nodes change

Everything node-side runs in ``cfg.node_netns`` when given (tests, test clusters).
"""

from .bridge import Bridge, delete_bridge, ensure_bridge
from .config import ROUTE_PROTOCOL, NetworkConfig, NetworkError
from .firewall import FORWARD_CHAIN, POSTROUTING_CHAIN, ensure_firewall, remove_firewall
from .ipam import Allocation
from .netns import (
    DEFAULT_NETNS_DIR,
    create_netns,
    delete_netns,
    is_netns,
    list_netns,
    netns_path,
    release_netns_dir,
)
from .node import NodeNetwork, gc_pod_networks, setup_node_network, teardown_node_network
from .nsrun import run_in_netns
from .pod import PodNetwork, host_veth_name, setup_pod_network, teardown_pod_network
from .routes import RouteChanges, list_peer_routes, set_peer_routes

__all__ = [
    "DEFAULT_NETNS_DIR",
    "FORWARD_CHAIN",
    "POSTROUTING_CHAIN",
    "ROUTE_PROTOCOL",
    "Allocation",
    "Bridge",
    "NetworkConfig",
    "NetworkError",
    "NodeNetwork",
    "PodNetwork",
    "RouteChanges",
    "create_netns",
    "delete_bridge",
    "delete_netns",
    "ensure_bridge",
    "ensure_firewall",
    "gc_pod_networks",
    "host_veth_name",
    "is_netns",
    "list_netns",
    "list_peer_routes",
    "netns_path",
    "release_netns_dir",
    "remove_firewall",
    "run_in_netns",
    "set_peer_routes",
    "setup_node_network",
    "setup_pod_network",
    "teardown_node_network",
    "teardown_pod_network",
]
