"""host-gw routing: a route to every other node's pod CIDR via that node's address.

Our routes carry their own protocol number (:data:`ROUTE_PROTOCOL`), so
reconciling can remove stale ones without touching anybody else's routes.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from ._netlink import NetlinkError, ignore_missing, iproute
from .config import ROUTE_PROTOCOL, NetworkConfig, NetworkError, parse_cidr
from .nsrun import run_in_netns

log = logging.getLogger(__name__)

_MAIN_TABLE = 254


@dataclass
class RouteChanges:
    added: dict[str, str] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)


def set_peer_routes(peers: Mapping[str, str], config: NetworkConfig) -> RouteChanges:
    """Make our routes exactly ``{pod_cidr: node_ip}`` (this node's own CIDR is skipped).

    Every route that can be applied is; failures (e.g. a node address that is not
    on a directly connected network) are reported together afterwards.
    """
    want: dict[str, str] = {}
    for cidr, gw in peers.items():
        net = str(parse_cidr(cidr, "peer pod CIDR"))
        if net == str(config.network):
            continue
        want[net] = gw
    return run_in_netns(config.node_netns, _reconcile, want)


def list_peer_routes(config: NetworkConfig) -> dict[str, str]:
    def work() -> dict[str, str]:
        with iproute() as ipr:
            return _ours(ipr)

    return run_in_netns(config.node_netns, work)


def _ours(ipr: object) -> dict[str, str]:
    out = {}
    for r in ipr.route("dump", family=socket.AF_INET, table=_MAIN_TABLE):  # type: ignore[attr-defined]
        if r["proto"] == ROUTE_PROTOCOL:
            out[f"{r.get('RTA_DST') or '0.0.0.0'}/{r['dst_len']}"] = r.get("RTA_GATEWAY") or ""
    return out


def _reconcile(want: dict[str, str]) -> RouteChanges:
    changes = RouteChanges()
    errors = []
    with iproute() as ipr:
        have = _ours(ipr)
        for cidr, gw in have.items():
            if cidr not in want:
                try:
                    ipr.route("del", dst=cidr, table=_MAIN_TABLE, proto=ROUTE_PROTOCOL)
                    changes.removed[cidr] = gw
                except NetlinkError as e:
                    if not ignore_missing(e):
                        errors.append(f"removing {cidr} via {gw}: {e}")
        for cidr, gw in want.items():
            if have.get(cidr) == gw:
                continue
            try:
                ipr.route("replace", dst=cidr, gateway=gw, table=_MAIN_TABLE, proto=ROUTE_PROTOCOL)
                changes.added[cidr] = gw
            except NetlinkError as e:
                errors.append(f"{cidr} via {gw}: {e}")
    for cidr, gw in changes.added.items():
        log.info("cidr=%s via=%s msg=peer route set", cidr, gw)
    for cidr, gw in changes.removed.items():
        log.info("cidr=%s via=%s msg=stale peer route removed", cidr, gw)
    if errors:
        raise NetworkError(
            "cannot set routes to other nodes' pod networks: " + "; ".join(errors)
            + " (host-gw needs every node address to be on a directly connected network)"
        )
    return changes
