"""Pod CIDR allocation: carve the cluster CIDR into per-node subnets.

Like upstream's range allocator (`cidrset`): subnets of `mask_size` bits
are handed out round-robin from a cursor, never twice while in use, and come
back when the node that held them is deleted. State is rebuilt at start from
the podCIDRs the nodes already carry, so a restart never hands one out again.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CIDRExhaustedError(Exception):
    """Every subnet of the cluster CIDR is in use."""


def parse_cluster_cidr(text: str, mask_size: int) -> Network:
    """The cluster CIDR as a network, with a message that says what is
    wrong with the controller options when it cannot be used."""
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as e:
        raise ValueError(f"cluster CIDR {text!r} is not a valid CIDR ({e}); "
                         "give one like 10.244.0.0/16") from None
    if mask_size < net.prefixlen or mask_size > net.max_prefixlen:
        raise ValueError(f"node CIDR mask size /{mask_size} does not fit the cluster CIDR "
                         f"{net} (must be between /{net.prefixlen} and /{net.max_prefixlen})")
    if mask_size - net.prefixlen > 24:
        # Same bound as upstream: the bitmap of subnets stays small.
        raise ValueError(f"node CIDR mask size /{mask_size} cuts {net} into more than 2^24 "
                         "subnets; use a smaller mask size or a smaller cluster CIDR")
    return net


@dataclass
class CIDRSet:
    cluster: Network
    mask_size: int
    _used: set[int] = field(default_factory=set)
    _next: int = 0

    @property
    def max_subnets(self) -> int:
        return 1 << (self.mask_size - self.cluster.prefixlen)

    def __len__(self) -> int:
        return len(self._used)

    def _subnet(self, index: int) -> Network:
        step = 1 << (self.cluster.max_prefixlen - self.mask_size)
        base = int(self.cluster.network_address) + index * step
        return ipaddress.ip_network((base, self.mask_size))

    def _index(self, cidr: str) -> int | None:
        """The subnet index of `cidr`, or None when it is not one of ours
        (another range or another size)."""
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return None
        if net.version != self.cluster.version or net.prefixlen != self.mask_size:
            return None
        if not net.subnet_of(self.cluster):  # type: ignore[arg-type]
            return None
        step = 1 << (self.cluster.max_prefixlen - self.mask_size)
        return (int(net.network_address) - int(self.cluster.network_address)) // step

    def allocate(self) -> str:
        total = self.max_subnets
        if len(self._used) >= total:
            raise CIDRExhaustedError(f"no free /{self.mask_size} left in cluster CIDR "
                                     f"{self.cluster} ({total} in use)")
        for i in range(total):
            index = (self._next + i) % total
            if index not in self._used:
                self._used.add(index)
                self._next = (index + 1) % total
                return str(self._subnet(index))
        raise CIDRExhaustedError(f"no free /{self.mask_size} left in cluster CIDR {self.cluster}")

    def occupy(self, cidr: str) -> bool:
        """Mark a CIDR a node already has as used; False if it is not ours."""
        index = self._index(cidr)
        if index is None:
            return False
        self._used.add(index)
        return True

    def release(self, cidr: str) -> bool:
        index = self._index(cidr)
        if index is None or index not in self._used:
            return False
        self._used.discard(index)
        return True

    def in_use(self, cidr: str) -> bool:
        index = self._index(cidr)
        return index is not None and index in self._used
