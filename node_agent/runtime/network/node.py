"""Node-wide network setup and teardown: bridge, forwarding, firewall, peer routes."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from . import ipam
from ._netlink import NetlinkError, get_link, ignore_missing, iproute, link_kind
from .bridge import Bridge, delete_bridge, ensure_bridge
from .config import NetworkConfig, NetworkError
from .firewall import ensure_firewall, remove_firewall
from .nsrun import run_in_netns
from .pod import host_veth_name
from .routes import set_peer_routes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeNetwork:
    bridge: Bridge
    iptables_backend: str


def setup_node_network(config: NetworkConfig) -> NodeNetwork:
    """Everything pods on this node need before the first one starts; idempotent."""
    br = ensure_bridge(config)
    run_in_netns(config.node_netns, _enable_forwarding)
    backend = ensure_firewall(config)
    return NodeNetwork(bridge=br, iptables_backend=backend)


def teardown_node_network(config: NetworkConfig) -> None:
    """Remove what :func:`setup_node_network` and pods added: rules, routes, veths, bridge.

    ``ip_forward`` is left on: other software (Docker) may rely on it by now.
    IPAM records are released too, so run this only when no pod is left running.
    """
    remove_firewall(config)
    set_peer_routes({}, config)
    gc_pod_networks(config, live_pod_ids=())
    delete_bridge(config)


def gc_pod_networks(config: NetworkConfig, live_pod_ids: Iterable[str]) -> list[str]:
    """Remove host veths on the bridge and IP allocations of pods not in ``live_pod_ids``.

    For the runtime at start-up and periodically: a crash between a sandbox's
    removal and its network teardown would otherwise leak both.  Returns the
    removed veth names.
    """
    live = set(live_pod_ids)
    keep = {host_veth_name(p) for p in live}

    def work() -> list[str]:
        removed = []
        with iproute() as ipr:
            br = get_link(ipr, config.bridge)
            if br is None:
                return []
            for link in ipr.link("dump", master=br["index"]):
                name = link.get("IFLA_IFNAME")
                if link_kind(link) != "veth" or not name.startswith("veth") or name in keep:
                    continue
                try:
                    ipr.link("del", index=link["index"])
                    removed.append(name)
                except NetlinkError as e:
                    if not ignore_missing(e):
                        raise NetworkError(f"cannot remove stale pod veth {name}: {e}") from e
        return removed

    removed = run_in_netns(config.node_netns, work)
    ipam.gc(config.state_dir, live)
    for name in removed:
        log.info("veth=%s msg=removed veth of a pod that no longer exists", name)
    return removed


def _enable_forwarding() -> None:
    path = "/proc/sys/net/ipv4/ip_forward"
    with open(path) as f:
        if f.read().strip() == "1":
            return
    try:
        with open(path, "w") as f:
            f.write("1")
    except OSError as e:
        raise NetworkError(f"cannot enable IPv4 forwarding ({path}): {e.strerror}; run as root") from e
    log.info("msg=enabled IPv4 forwarding")
