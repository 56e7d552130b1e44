"""The few rtnetlink requests a pod's network needs, packed and parsed with `struct`.

Every pod start and stop creates or deletes a veth pair, sets two links, adds
an address and a route. Through pyroute2 (0.9: each synchronous call runs an
asyncio loop, encodes through its generic NLA classes and decodes every
attribute of every reply) that cost ~18 ms of the runtime daemon's CPU per pod,
under the one GIL that also serves every gRPC call: the largest single part of
a pod's start-up. Here the same requests take well under a millisecond.
pyroute2 stays for everything node-wide (bridge, peer routes, garbage
collection), where its generality is worth it and the cost is paid once.

Errors are pyroute2's `NetlinkError` (code = errno), so callers handle both the same way.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from ._netlink import NetlinkError

# linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/veth.h
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_F_REQUEST, _F_MULTI, _F_ACK, _F_DUMP = 0x1, 0x2, 0x4, 0x300
_F_REPLACE, _F_EXCL, _F_CREATE = 0x100, 0x200, 0x400
_RTM_NEWLINK, _RTM_DELLINK, _RTM_GETLINK, _RTM_SETLINK = 16, 17, 18, 19
_RTM_NEWADDR, _RTM_DELADDR, _RTM_GETADDR = 20, 21, 22
_RTM_NEWROUTE = 24
_IFLA_IFNAME, _IFLA_MTU, _IFLA_LINK, _IFLA_MASTER = 3, 4, 5, 10
_IFLA_PROTINFO, _IFLA_LINKINFO, _IFLA_EXT_MASK, _IFLA_NET_NS_FD = 12, 18, 29, 28
_IFLA_AF_SPEC, _IFLA_INET6_ADDR_GEN_MODE, _IN6_ADDR_GEN_MODE_NONE = 26, 8, 1
_IFLA_NUM_TX_QUEUES, _IFLA_NUM_RX_QUEUES = 31, 32
_IFLA_INFO_KIND, _IFLA_INFO_DATA = 1, 2
_VETH_INFO_PEER = 1
_IFLA_BRPORT_MODE = 4  # hairpin
_IFA_ADDRESS, _IFA_LOCAL, _IFA_BROADCAST = 1, 2, 4
_RTA_OIF, _RTA_GATEWAY = 4, 5
_NLA_F_NESTED = 0x8000
_RT_TABLE_MAIN, _RTPROT_BOOT, _RT_SCOPE_UNIVERSE, _RTN_UNICAST = 254, 3, 0, 1
_AF_BRIDGE = 7
_IFF_UP = 0x1
_RTEXT_FILTER_SKIP_STATS = 1 << 3  # replies without the (large) statistics

_HDR = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBi")
_RTMSG = struct.Struct("=BBBBBBBBI")
_ATTR = struct.Struct("=HH")


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str | None
    peer_index: int | None  # IFLA_LINK: a veth's other end (its index in the other end's namespace)
    mtu: int
    up: bool
    master: int | None


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    raw = _ATTR.pack(_ATTR.size + len(payload), kind) + payload
    return raw + b"\0" * (_align(len(raw)) - len(raw))


def _name(name: str) -> bytes:
    return attr(_IFLA_IFNAME, name.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def attrs(data: bytes, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each attribute in ``data[offset:]``; the nested flag is dropped."""
    while offset + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            return
        yield kind & ~_NLA_F_NESTED, data[offset + _ATTR.size: offset + length]
        offset += _align(length)


class Rtnl:
    """One rtnetlink socket, bound to the namespace of the thread that opened it."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        if sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
            sock.bind((0, 0))
        self.sock = sock
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, kind: int, flags: int, body: bytes) -> list[bytes]:
        """Send one request, return the payloads of its replies; a kernel error raises NetlinkError."""
        self.seq += 1
        seq = self.seq
        self.sock.send(_HDR.pack(_HDR.size + len(body), kind, _F_REQUEST | flags, seq, 0) + body)
        replies: list[bytes] = []
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + _HDR.size <= len(data):
                length, mtype, mflags, mseq, _ = _HDR.unpack_from(data, offset)
                payload = data[offset + _HDR.size: offset + length]
                offset += _align(length)
                if mseq != seq:
                    continue  # a late reply to an earlier request
                if mtype == _NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    return replies  # the ACK
                if mtype == _NLMSG_DONE:
                    return replies
                replies.append(payload)
                if not mflags & _F_MULTI and not flags & _F_ACK:
                    return replies

    # links

    def link(self, name: str) -> Link | None:
        try:
            replies = self.request(_RTM_GETLINK, 0, _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
                                   + _name(name) + _u32(_IFLA_EXT_MASK, _RTEXT_FILTER_SKIP_STATS))
        except NetlinkError as e:
            if e.code in (errno.ENODEV, errno.ENOENT):
                return None
            raise
        return parse_link(replies[0]) if replies else None

    def add_veth(self, name: str, peer: str, peer_netns_fd: int, mtu: int) -> None:
        """A veth pair: ``name`` here, ``peer`` in the namespace of ``peer_netns_fd``, both with ``mtu``.

        One queue each way, asked for (`ip link add ... numtxqueues 1 numrxqueues 1`): otherwise
        the kernel makes one per CPU and then cuts each end down to one, and every cut waits for
        an expedited RCU grace period while holding the rtnl lock, which every other pod's
        network set-up (and namespace creation) then queues behind."""
        queues = _u32(_IFLA_NUM_TX_QUEUES, 1) + _u32(_IFLA_NUM_RX_QUEUES, 1)
        peer_info = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _name(peer) + _u32(_IFLA_MTU, mtu) \
            + _u32(_IFLA_NET_NS_FD, peer_netns_fd) + queues
        info = attr(_IFLA_INFO_KIND, b"veth\0") + attr(_IFLA_INFO_DATA | _NLA_F_NESTED,
                                                      attr(_VETH_INFO_PEER, peer_info))
        self.request(_RTM_NEWLINK, _F_ACK | _F_CREATE | _F_EXCL,
                     _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _name(name) + _u32(_IFLA_MTU, mtu) + queues
                     + attr(_IFLA_LINKINFO | _NLA_F_NESTED, info))

    def set_link(self, index: int, *, up: bool = True, mtu: int | None = None, master: int | None = None) -> None:
        extra = (_u32(_IFLA_MTU, mtu) if mtu is not None else b"") + \
            (_u32(_IFLA_MASTER, master) if master is not None else b"")
        self.request(_RTM_NEWLINK, _F_ACK,
                     _IFINFO.pack(socket.AF_UNSPEC, 0, index, _IFF_UP if up else 0, _IFF_UP) + extra)

    def no_ipv6_link_local(self, index: int) -> None:
        """Like `ip link set dev X addrgenmode none`, while the link is down: when it comes up it
        gets no IPv6 link-local address, so no duplicate address detection, router solicitation
        or multicast listener reports. Pods are IPv4 only (as Docker's containers without an
        IPv6 network); that kernel work per pod cost more CPU than the rest of its network."""
        inet6 = attr(socket.AF_INET6 | _NLA_F_NESTED,
                     attr(_IFLA_INET6_ADDR_GEN_MODE, bytes([_IN6_ADDR_GEN_MODE_NONE])))
        self.request(_RTM_SETLINK, _F_ACK, _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0)
                     + attr(_IFLA_AF_SPEC | _NLA_F_NESTED, inet6))

    def set_hairpin(self, index: int, on: bool = True) -> None:
        """Like `bridge link set dev X hairpin on`: the bridge may send a frame back out of its port."""
        protinfo = attr(_IFLA_PROTINFO | _NLA_F_NESTED, attr(_IFLA_BRPORT_MODE, bytes([int(on)])))
        self.request(_RTM_SETLINK, _F_ACK, _IFINFO.pack(_AF_BRIDGE, 0, index, 0, 0) + protinfo)

    def delete_link(self, index: int) -> None:
        self.request(_RTM_DELLINK, _F_ACK, _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0))

    # addresses and routes

    def ipv4_addrs(self, index: int) -> list[tuple[str, int]]:
        out = []
        for reply in self.request(_RTM_GETADDR, _F_DUMP, _IFADDR.pack(socket.AF_INET, 0, 0, 0, 0)):
            family, prefix, _, _, ifindex = _IFADDR.unpack_from(reply)
            if family != socket.AF_INET or ifindex != index:
                continue
            found = dict(attrs(reply, _IFADDR.size))
            raw = found.get(_IFA_LOCAL) or found.get(_IFA_ADDRESS)
            if raw:
                out.append((socket.inet_ntoa(raw), prefix))
        return out

    def change_ipv4_addr(self, index: int, address: str, prefix: int, add: bool = True) -> None:
        raw = socket.inet_aton(address)
        body = _IFADDR.pack(socket.AF_INET, prefix, 0, _RT_SCOPE_UNIVERSE, index) + attr(_IFA_LOCAL, raw) \
            + attr(_IFA_ADDRESS, raw)
        if add:
            brd = ipaddress.IPv4Network(f"{address}/{prefix}", strict=False).broadcast_address
            body += attr(_IFA_BROADCAST, brd.packed)
            self.request(_RTM_NEWADDR, _F_ACK | _F_CREATE | _F_EXCL, body)
        else:
            self.request(_RTM_DELADDR, _F_ACK, body)

    def set_only_ipv4_addr(self, index: int, address: str, prefix: int) -> None:
        """Make ``address/prefix`` the interface's only IPv4 address (concurrent changes tolerated)."""
        have = self.ipv4_addrs(index)
        for a, p in have:
            if (a, p) != (address, prefix):
                try:
                    self.change_ipv4_addr(index, a, p, add=False)
                except NetlinkError as e:
                    if e.code != errno.EADDRNOTAVAIL:  # removed concurrently
                        raise
        if (address, prefix) not in have:
            try:
                self.change_ipv4_addr(index, address, prefix)
            except NetlinkError as e:
                if e.code != errno.EEXIST:  # added concurrently
                    raise

    def replace_default_route(self, gateway: str, oif: int) -> None:
        body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, _RT_TABLE_MAIN, _RTPROT_BOOT, _RT_SCOPE_UNIVERSE,
                           _RTN_UNICAST, 0) + attr(_RTA_GATEWAY, socket.inet_aton(gateway)) + _u32(_RTA_OIF, oif)
        self.request(_RTM_NEWROUTE, _F_ACK | _F_CREATE | _F_REPLACE, body)


def parse_link(reply: bytes) -> Link:
    _, _, index, flags, _ = _IFINFO.unpack_from(reply)
    name, kind, peer, mtu, master = "", None, None, 0, None
    for t, payload in attrs(reply, _IFINFO.size):
        if t == _IFLA_IFNAME:
            name = payload.rstrip(b"\0").decode()
        elif t == _IFLA_MTU:
            mtu = struct.unpack("=I", payload[:4])[0]
        elif t == _IFLA_LINK:
            peer = struct.unpack("=i", payload[:4])[0]
        elif t == _IFLA_MASTER:
            master = struct.unpack("=I", payload[:4])[0]
        elif t == _IFLA_LINKINFO:
            for it, ip in attrs(payload):
                if it == _IFLA_INFO_KIND:
                    kind = ip.rstrip(b"\0").decode()
    return Link(index=index, name=name, kind=kind, peer_index=peer, mtu=mtu, up=bool(flags & _IFF_UP),
                master=master)
