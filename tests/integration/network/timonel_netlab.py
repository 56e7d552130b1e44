"""A network lab made of namespaces this test creates: "nodes", pods, wires.

Nothing here touches the real host's interfaces, routes or firewall: each
"node" is a network namespace holding its bridge, iptables rules and routes, and
traffic only goes to addresses inside these namespaces.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path
from types import TracebackType

import pytest
from pyroute2 import IPRoute

from timonel.node_agent.runtime.network import (
    NetworkConfig,
    create_netns,
    delete_netns,
    list_netns,
    release_netns_dir,
    run_in_netns,
)
from timonel.node_agent.runtime.network.iptables import dumps_with_rules
from timonel.node_agent.runtime.network.nsrun import join_netns

requires_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="network namespaces, bridges and iptables need root (CI runs as root)"
)


class Lab:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.netns_dir = str(base / "netns")

    def netns(self, name: str) -> str:
        return create_netns(name, self.netns_dir)

    def node(self, name: str, pod_cidr: str, **kwargs: object) -> NetworkConfig:
        """A namespace acting as a node, and the network config of that node."""
        return NetworkConfig(
            pod_cidr=pod_cidr, state_dir=str(self.base / f"state-{name}"),
            node_netns=self.netns(name), **kwargs,  # type: ignore[arg-type]
        )

    def wire(self, a: str, a_ip: str, b: str, b_ip: str, prefix: int = 24, suffix: str = "") -> None:
        """A veth between namespaces ``a`` and ``b`` with the given addresses, up."""
        pa, pb = os.path.join(self.netns_dir, a), os.path.join(self.netns_dir, b)
        ea, eb = f"to-{b}{suffix}"[:15], f"to-{a}{suffix}"[:15]

        def work() -> None:
            fd = os.open(pb, os.O_RDONLY)
            with IPRoute() as ipr:
                ipr.link("add", ifname=ea, kind="veth", peer={"ifname": eb, "net_ns_fd": fd})
                idx = ipr.link_lookup(ifname=ea)[0]
                ipr.addr("add", index=idx, address=a_ip, prefixlen=prefix)
                ipr.link("set", index=idx, state="up")
            os.close(fd)
            join_netns(pb)
            with IPRoute() as ipr:
                idx = ipr.link_lookup(ifname=eb)[0]
                ipr.addr("add", index=idx, address=b_ip, prefixlen=prefix)
                ipr.link("set", index=idx, state="up")

        run_in_netns(pa, work)

    def path(self, name: str) -> str:
        return os.path.join(self.netns_dir, name)

    def close(self) -> None:
        for name in list_netns(self.netns_dir):
            delete_netns(name, self.netns_dir)
        release_netns_dir(self.netns_dir)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def tcp_peer(client_ns: str, server_ns: str, server_ip: str, timeout: float = 20.0) -> str:
    """Connect from ``client_ns`` to a server in ``server_ns``; the client address the server saw.

    The kernel completes the handshake before ``accept``, so the client can send and
    close first and the server picks the connection from its backlog afterwards.
    """
    srv = run_in_netns(server_ns, _listen, server_ip)
    with srv:
        run_in_netns(client_ns, _connect, server_ip, srv.getsockname()[1], timeout)
        srv.settimeout(timeout)
        c, addr = srv.accept()
        with c:
            c.settimeout(timeout)
            assert c.recv(4) == b"ping"
    return str(addr[0])


def can_connect(client_ns: str, server_ns: str, server_ip: str, timeout: float) -> bool:
    try:
        tcp_peer(client_ns, server_ns, server_ip, timeout)
        return True
    except OSError:
        return False


def _listen(ip: str) -> socket.socket:
    s = socket.socket()
    s.bind((ip, 0))
    s.listen()
    return s


def _connect(ip: str, port: int, timeout: float) -> None:
    with socket.create_connection((ip, port), timeout=timeout) as c:
        c.sendall(b"ping")


def sh(netns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={netns}", *argv], capture_output=True, text=True, timeout=60)


def ping(netns: str, ip: str) -> bool:
    busybox = shutil.which("busybox")
    assert busybox, "busybox (Debian busybox-static, installed by deploy/install.sh) is needed for ping"
    return sh(netns, busybox, "ping", "-c", "1", "-W", "5", ip).returncode == 0


def links(netns: str) -> set[str]:
    def work() -> set[str]:
        with IPRoute() as ipr:
            return {link.get("IFLA_IFNAME") for link in ipr.link("dump")}

    return run_in_netns(netns, work)


def iptables_lines(netns: str) -> list[str]:
    """Rules, user chains and policies of every backend in use there (before/after checks)."""
    out = []
    for d in dumps_with_rules(netns):
        for table, rules in d.rules.items():
            out += [f"{d.backend} {table} {r}" for r in rules]
            out += [f"{d.backend} {table} :{c}" for c in sorted(d.chains[table]) if c not in _BUILTIN]
        out += [f"{d.backend} {t} :{c} {p}" for (t, c), p in sorted(d.policies.items()) if p != "ACCEPT"]
    return out


_BUILTIN = {"INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"}
