"""The node's network settings and the error type every network function raises."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

DEFAULT_BRIDGE = "timonel0"
DEFAULT_STATE_DIR = "/var/lib/timonel/network"
# iproute2 shows this as "proto 151" on routes we own (peer routes), so reconciling
# never touches routes someone else added.  Unassigned in /etc/iproute2/rt_protos.
ROUTE_PROTOCOL = 151


class NetworkError(Exception):
    """A pod or node network operation failed; the message says what, where and what to do."""


@dataclass(frozen=True)
class NetworkConfig:
    """How this node's pod network looks.

    ``node_netns`` is the path of a network-namespace file in which the whole node
    side (bridge, host veths, iptables, routes, sysctls) lives; ``None`` means the
    namespace of the calling thread.  Tests and the multi-node test cluster use it
    to run several "nodes" on one machine.
    """

    pod_cidr: str
    state_dir: str = DEFAULT_STATE_DIR
    bridge: str = DEFAULT_BRIDGE
    # All pod CIDRs of the cluster: traffic to them is not masqueraded.  Empty means
    # just this node's pod CIDR.
    cluster_cidrs: tuple[str, ...] = ()
    # None: the MTU of the node's default-route interface (1500 if there is none).
    mtu: int | None = None
    node_netns: str | None = None
    iptables: str = "auto"  # "auto" (what the node already uses), "nft" or "legacy"
    hairpin: bool = True
    _network: ipaddress.IPv4Network = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_network", parse_pod_cidr(self.pod_cidr, "pod_cidr"))
        for c in self.cluster_cidrs:
            parse_cidr(c, "cluster_cidrs")
        if self.iptables not in ("auto", "nft", "legacy"):
            raise NetworkError(
                f"iptables backend {self.iptables!r} is not known: use 'auto', 'nft' or 'legacy'"
            )
        if self.mtu is not None and not 576 <= self.mtu <= 65535:
            raise NetworkError(f"mtu {self.mtu} is out of range: use a value in 576..65535")
        if not self.bridge or len(self.bridge) > 15 or "/" in self.bridge or " " in self.bridge:
            raise NetworkError(
                f"bridge name {self.bridge!r} is not a valid interface name (1-15 characters, no '/' or spaces)"
            )

    @property
    def network(self) -> ipaddress.IPv4Network:
        return self._network

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The bridge's address: the first usable address of the pod CIDR."""
        return self._network.network_address + 1

    @property
    def prefix(self) -> int:
        return self._network.prefixlen

    @property
    def no_masquerade_cidrs(self) -> tuple[str, ...]:
        return self.cluster_cidrs or (str(self._network),)


def parse_cidr(value: str, what: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(value, strict=True)
    except ValueError as e:
        raise NetworkError(
            f"{what}: {value!r} is not an IPv4 network in CIDR form ({e}); "
            "give e.g. '10.88.0.0/24' with the host bits zero"
        ) from None


def parse_pod_cidr(value: str, what: str) -> ipaddress.IPv4Network:
    net = parse_cidr(value, what)
    if net.prefixlen > 29:
        raise NetworkError(
            f"{what}: {value} leaves no room for pods (network, gateway and broadcast "
            "take three addresses): use a prefix of /29 or shorter, e.g. /24"
        )
    return net
