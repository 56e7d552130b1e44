"""The lean rtnetlink requests, checked against pyroute2's own codec (no root needed).

What `Rtnl` sends is decoded with pyroute2's message classes, and replies
that pyroute2 encodes are parsed by `Rtnl`: both sides of the wire format
are held to an independent implementation of it.
"""

from __future__ import annotations

import errno
import socket
import struct

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from timonel.node_agent.runtime.network._netlink import NetlinkError
from timonel.node_agent.runtime.network.rtnl import Rtnl, parse_link


class FakeSocket:
    """Records what is sent; answers each request with the replies a test queued, seq filled in."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.answers: list[list[tuple[int, int, bytes]]] = []  # per request: (type, flags, payload)
        self.pending: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        seq = struct.unpack_from("=I", data, 8)[0]
        for mtype, flags, payload in self.answers.pop(0):
            self.pending.append(struct.pack("=IHHII", 16 + len(payload), mtype, flags, seq, 0) + payload)
        return len(data)

    def recv(self, size: int) -> bytes:
        return self.pending.pop(0)

    def close(self) -> None:
        pass


def ack(code: int = 0) -> tuple[int, int, bytes]:
    return (2, 0, struct.pack("=i", -code) + b"\0" * 16)


def decode(cls: type, data: bytes) -> dict:
    msg = cls(data)
    msg.decode()
    return msg


def test_add_veth_is_what_pyroute2_reads_as_a_veth_with_its_peer_in_a_namespace() -> None:
    fake = FakeSocket()
    fake.answers.append([ack()])
    Rtnl(fake).add_veth("vethabc", "eth0", 7, 1400)  # type: ignore[arg-type]
    msg = decode(ifinfmsg, fake.sent[0])
    assert msg["header"]["type"] == 16 and msg["header"]["flags"] & 0x605 == 0x605  # request, ack, create, excl
    assert msg.get("IFLA_IFNAME") == "vethabc" and msg.get("IFLA_MTU") == 1400
    assert msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "veth"
    peer = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "VETH_INFO_PEER")
    assert peer.get("IFLA_IFNAME") == "eth0" and peer.get("IFLA_NET_NS_FD") == 7 and peer.get("IFLA_MTU") == 1400


def test_set_link_brings_it_up_with_mtu_and_master() -> None:
    fake = FakeSocket()
    fake.answers.append([ack()])
    Rtnl(fake).set_link(12, mtu=1450, master=3)  # type: ignore[arg-type]
    msg = decode(ifinfmsg, fake.sent[0])
    assert (msg["index"], msg["flags"] & 1, msg["change"] & 1) == (12, 1, 1)
    assert msg.get("IFLA_MTU") == 1450 and msg.get("IFLA_MASTER") == 3


def test_address_and_route_requests() -> None:
    fake = FakeSocket()
    fake.answers += [[ack()], [ack()]]
    r = Rtnl(fake)  # type: ignore[arg-type]
    r.change_ipv4_addr(4, "10.88.0.7", 24)
    r.replace_default_route("10.88.0.1", 4)
    addr = decode(ifaddrmsg, fake.sent[0])
    assert (addr["index"], addr["prefixlen"], addr["family"]) == (4, 24, socket.AF_INET)
    assert addr.get("IFA_LOCAL") == "10.88.0.7" and addr.get("IFA_BROADCAST") == "10.88.0.255"
    route = decode(rtmsg, fake.sent[1])
    assert (route["dst_len"], route["table"], route["type"]) == (0, 254, 1)
    assert route.get("RTA_GATEWAY") == "10.88.0.1" and route.get("RTA_OIF") == 4
    assert route["header"]["flags"] & 0x500 == 0x500  # create, replace


def test_kernel_errors_raise_with_their_errno() -> None:
    fake = FakeSocket()
    fake.answers.append([ack(errno.EEXIST)])
    with pytest.raises(NetlinkError) as e:
        Rtnl(fake).delete_link(3)  # type: ignore[arg-type]
    assert e.value.code == errno.EEXIST


def test_a_missing_link_is_none_and_a_present_one_is_parsed_from_pyroute2s_encoding() -> None:
    m = ifinfmsg()
    m["index"], m["flags"] = 5, 1
    m["attrs"] = [("IFLA_IFNAME", "veth0"), ("IFLA_MTU", 1400), ("IFLA_LINK", 9), ("IFLA_MASTER", 2),
                  ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth")]})]
    m.encode()
    fake = FakeSocket()
    fake.answers += [[ack(errno.ENODEV)], [(16, 0, bytes(m.data[16:]))]]
    r = Rtnl(fake)  # type: ignore[arg-type]
    assert r.link("nope") is None
    link = r.link("veth0")
    assert link is not None and (link.index, link.name, link.kind, link.peer_index, link.mtu, link.up,
                                 link.master) == (5, "veth0", "veth", 9, 1400, True, 2)
    assert parse_link(bytes(m.data[16:])) == link


def test_a_dump_is_read_to_its_end_and_filtered_to_the_interface() -> None:
    def addr(index: int, ip: str, prefix: int) -> bytes:
        a = ifaddrmsg()
        a["family"], a["prefixlen"], a["index"] = socket.AF_INET, prefix, index
        a["attrs"] = [("IFA_ADDRESS", ip), ("IFA_LOCAL", ip)]
        a.encode()
        return bytes(a.data[16:])

    fake = FakeSocket()
    fake.answers.append([(20, 2, addr(1, "127.0.0.1", 8)), (20, 2, addr(4, "10.88.0.7", 24)),
                         (3, 2, b"\0\0\0\0")])
    assert Rtnl(fake).ipv4_addrs(4) == [("10.88.0.7", 24)]  # type: ignore[arg-type]
