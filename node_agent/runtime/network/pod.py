"""A pod's network: a veth pair from the node bridge into the pod's namespace.

The host end is named from the pod ID (``veth`` + 11 hex digits of its sha256),
so teardown needs no state besides IPAM.  The pair is created with its peer
directly inside the pod namespace under its final name, so it exists on both
sides or on neither; every later step is "make it so", which makes setup safe
to repeat after a crash half-way and teardown safe to repeat at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass

from . import ipam
from ._netlink import NetlinkError, ignore_missing, iproute
from .bridge import ensure_bridge_with
from .config import NetworkConfig, NetworkError
from .netns import is_netns, set_loopback_up
from .nsrun import join_netns, run_in_netns
from .rtnl import Link, Rtnl

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PodNetwork:
    ip: str
    gateway: str
    prefix: int
    interface: str
    host_veth: str
    mtu: int


def host_veth_name(pod_id: str) -> str:
    """The host end's name: stable per pod and within the 15-character IFNAMSIZ limit."""
    return "veth" + hashlib.sha256(pod_id.encode()).hexdigest()[:11]


def setup_pod_network(
    netns_path: str, pod_id: str, config: NetworkConfig, interface: str = "eth0"
) -> PodNetwork:
    """Plug the pod namespace at ``netns_path`` into the node bridge; idempotent.

    Gives it an address from the node's pod CIDR, a default route via the bridge,
    ``lo`` up.  If this call allocated the address and then fails, it undoes its
    work; a failed repeat call leaves the earlier state for teardown to remove.
    """
    if not is_netns(netns_path):
        raise NetworkError(
            f"{netns_path} is not a network namespace file: create the pod sandbox's namespace "
            "(create_netns) before setting up its network"
        )
    if not interface or len(interface) > 15 or "/" in interface or " " in interface:
        raise NetworkError(f"pod interface name {interface!r} is not valid: use 1-15 characters, no '/' or spaces")
    alloc, fresh = ipam.acquire(config.state_dir, config.pod_cidr, pod_id)
    try:
        net = run_in_netns(config.node_netns, _setup, netns_path, pod_id, config, interface, alloc.ip)
    except BaseException as e:
        if fresh:
            with contextlib.suppress(Exception):
                run_in_netns(config.node_netns, _teardown, pod_id, netns_path, interface)
            ipam.release(config.state_dir, pod_id)
        if isinstance(e, NetlinkError | OSError):
            raise NetworkError(
                f"cannot set up the network of pod {pod_id} (namespace {netns_path}, "
                f"bridge {config.bridge}): {e}"
            ) from e
        raise
    log.info("pod_id=%s ip=%s veth=%s msg=pod network ready", pod_id, net.ip, net.host_veth)
    return net


def teardown_pod_network(
    pod_id: str, config: NetworkConfig, netns_path: str | None = None, interface: str = "eth0"
) -> None:
    """Remove the pod's veth pair and free its address; nothing there is not an error.

    ``netns_path`` is optional: deleting the host end takes the pod end with it; if
    the namespace is given and still exists, a pod end without its host end goes too.
    """
    try:
        run_in_netns(config.node_netns, _teardown, pod_id, netns_path, interface)
    except (NetlinkError, OSError) as e:
        raise NetworkError(f"cannot remove the network of pod {pod_id}: {e}") from e
    ipam.release(config.state_dir, pod_id)


def _setup(netns_path: str, pod_id: str, config: NetworkConfig, interface: str, ip: str) -> PodNetwork:
    host_name = host_veth_name(pod_id)
    gateway = str(config.gateway)
    with Rtnl() as node:
        bridge_index, mtu = _bridge(node, config)
        join_netns(netns_path)
        with Rtnl() as pod:
            host, peer = _ensure_veth_pair(node, pod, host_name, interface, netns_path, mtu)
            pod.no_ipv6_link_local(peer.index)
            node.no_ipv6_link_local(host.index)
            pod.set_link(peer.index, mtu=mtu)
            pod.set_only_ipv4_addr(peer.index, ip, config.prefix)
            set_loopback_up()
            pod.replace_default_route(gateway, peer.index)
            node.set_link(host.index, mtu=mtu, master=bridge_index)
            if config.hairpin:
                # Lets a pod reach itself through a Service address (DNAT back to itself).
                node.set_hairpin(host.index)
    return PodNetwork(
        ip=ip, gateway=gateway, prefix=config.prefix, interface=interface,
        host_veth=host_name, mtu=mtu,
    )


def _bridge(node: Rtnl, config: NetworkConfig) -> tuple[int, int]:
    """The bridge's index and MTU; the full check (pyroute2) only when it is not an up bridge.

    Node set-up made it and gave it its address and MTU; re-asserting all that for
    every pod cost more than the rest of the pod's network together.
    """
    br = node.link(config.bridge)
    if br is not None and br.kind == "bridge" and br.up and (config.mtu is None or br.mtu == config.mtu):
        return br.index, br.mtu
    with iproute() as ipr:
        full = ensure_bridge_with(ipr, config)
    return full.index, full.mtu


def _ensure_veth_pair(node: Rtnl, pod: Rtnl, host_name: str, interface: str, netns_path: str,
                      mtu: int) -> tuple[Link, Link]:
    host = node.link(host_name)
    peer = pod.link(interface)
    if host is not None and peer is not None and _paired(host, peer):
        return host, peer
    # Leftovers of an older attempt whose other end is gone or elsewhere.
    if host is not None:
        _delete(node, host)
    if peer is not None:
        _delete(pod, peer)
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        node.add_veth(host_name, interface, fd, mtu)
    finally:
        os.close(fd)
    host = node.link(host_name)
    peer = pod.link(interface)
    if host is None or peer is None:
        raise NetworkError(f"veth pair {host_name}/{interface} vanished right after it was created")
    return host, peer


def _paired(host: Link, peer: Link) -> bool:
    return host.kind == "veth" and peer.kind == "veth" and host.peer_index == peer.index \
        and peer.peer_index == host.index


def _teardown(pod_id: str, netns_path: str | None, interface: str) -> None:
    with Rtnl() as node:
        host = node.link(host_veth_name(pod_id))
        if host is not None and host.kind == "veth":
            _delete(node, host)
    if netns_path and is_netns(netns_path):
        try:
            join_netns(netns_path)
        except FileNotFoundError:  # deleted meanwhile: its interfaces go with it
            return
        with Rtnl() as pod:
            peer = pod.link(interface)
            if peer is not None and peer.kind == "veth":
                _delete(pod, peer)


def _delete(rtnl: Rtnl, link: Link) -> None:
    try:
        rtnl.delete_link(link.index)
    except NetlinkError as e:
        if not ignore_missing(e):
            raise
