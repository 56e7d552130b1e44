"""The node bridge every pod's veth is plugged into; its address is the pods' gateway."""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from typing import Any

from ._netlink import NetlinkError, default_route_mtu, get_link, iproute, link_kind
from .config import NetworkConfig, NetworkError
from .nsrun import run_in_netns
from .rtnl import Rtnl

log = logging.getLogger(__name__)

_DEFAULT_MTU = 1500
_IFF_UP = 0x1


@dataclass(frozen=True)
class Bridge:
    name: str
    index: int
    mtu: int
    gateway: str
    prefix: int


def ensure_bridge(config: NetworkConfig) -> Bridge:
    """Create the bridge if needed and make it carry the gateway address, up.  Idempotent."""

    def work() -> Bridge:
        with iproute() as ipr:
            return ensure_bridge_with(ipr, config)

    return run_in_netns(config.node_netns, work)


def delete_bridge(config: NetworkConfig) -> bool:
    """Remove the bridge (ports are unplugged, not deleted); False if it did not exist."""

    def work() -> bool:
        with iproute() as ipr:
            link = get_link(ipr, config.bridge)
            if link is None:
                return False
            _check_is_bridge(link, config)
            try:
                ipr.link("del", index=link["index"])
            except NetlinkError as e:
                if e.code != errno.ENODEV:
                    raise
            return True

    return run_in_netns(config.node_netns, work)


def ensure_bridge_with(ipr: Any, config: NetworkConfig) -> Bridge:
    """:func:`ensure_bridge` on an rtnetlink handle already in the node namespace."""
    link = get_link(ipr, config.bridge)
    if link is None:
        try:
            ipr.link("add", ifname=config.bridge, kind="bridge", address=_bridge_mac(config))
            log.info("bridge=%s msg=created", config.bridge)
        except NetlinkError as e:
            if e.code != errno.EEXIST:  # another process created it meanwhile
                raise NetworkError(f"cannot create bridge {config.bridge}: {e}") from e
        link = get_link(ipr, config.bridge)
        if link is None:
            raise NetworkError(f"bridge {config.bridge} vanished right after it was created")
    _check_is_bridge(link, config)
    index = link["index"]
    mtu = config.mtu or default_route_mtu(ipr) or _DEFAULT_MTU
    gateway = str(config.gateway)
    try:
        with Rtnl() as rtnl:  # in the same thread, so the same namespace as `ipr`
            rtnl.set_only_ipv4_addr(index, gateway, config.prefix)
        if link.get("IFLA_ADDRESS") != _bridge_mac(config):
            ipr.link("set", index=index, address=_bridge_mac(config))
        # Setting the MTU explicitly also stops the kernel from lowering it to the
        # smallest port's MTU behind our back.
        if link.get("IFLA_MTU") != mtu or not link["flags"] & _IFF_UP:
            ipr.link("set", index=index, mtu=mtu, state="up")
    except NetlinkError as e:
        raise NetworkError(f"cannot configure bridge {config.bridge} ({gateway}/{config.prefix}, mtu {mtu}): {e}") from e
    return Bridge(name=config.bridge, index=index, mtu=mtu, gateway=gateway, prefix=config.prefix)


def _bridge_mac(config: NetworkConfig) -> str:
    # A bridge without a MAC of its own takes the lowest of its ports' and changes it
    # as pods come and go, leaving pods with a stale ARP entry for their gateway.
    # Locally administered, derived from the gateway so it is stable across restarts.
    return "0a:58:" + ":".join(f"{b:02x}" for b in config.gateway.packed)


def _check_is_bridge(link: Any, config: NetworkConfig) -> None:
    if link_kind(link) != "bridge":
        raise NetworkError(
            f"interface {config.bridge} exists but is a {link_kind(link) or 'non-bridge'} device: "
            "remove it or choose another bridge name in the node's network settings"
        )
