"""Small pyroute2 helpers shared by the bridge, pod and route code."""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import socket
import sys
from collections.abc import Iterator
from typing import Any


def _bare_pyroute2_package() -> None:
    """Register the pyroute2 package without running its __init__ until someone needs it.

    That __init__ only imports every family pyroute2 has (NDB with sqlite3, IPDB,
    nl80211, ipvs, wireguard, plan9...): 12.5 MB resident in the runtime daemon,
    where rtnetlink alone takes 6.5. The submodules import what they use
    themselves, so loading just those is enough. A name asked of the package
    itself (`from pyroute2 import NDB`, in tests or other code sharing the
    process) runs the real __init__ then, once, in the same module object."""
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def load_the_rest(name: str) -> Any:
        # `from pyroute2 import config` (the submodules say that) asks the package first.
        if importlib.util.find_spec(f"pyroute2.{name}") is not None:
            return importlib.import_module(f"pyroute2.{name}")
        del package.__getattr__
        loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = load_the_rest  # type: ignore[method-assign]
    sys.modules["pyroute2"] = package


_bare_pyroute2_package()


from pyroute2.iproute.linux import IPRoute  # noqa: E402
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402

Msg = Any  # pyroute2's message classes carry no usable type information


@contextlib.contextmanager
def iproute() -> Iterator[Any]:
    """An rtnetlink handle bound to the calling thread's network namespace."""
    ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def get_link(ipr: Any, name: str) -> Msg | None:
    try:
        return ipr.link("get", ifname=name)[0]
    except NetlinkError as e:
        if e.code in (errno.ENODEV, errno.ENOENT):
            return None
        raise


def link_kind(link: Msg) -> str | None:
    kind = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
    return str(kind) if kind is not None else None


def default_route_mtu(ipr: Any) -> int | None:
    for r in ipr.route("dump", family=socket.AF_INET, table=254):
        if r["dst_len"] == 0 and r.get("RTA_OIF"):
            link = ipr.link("get", index=r.get("RTA_OIF"))[0]
            return int(link.get("IFLA_MTU"))
    return None


def ignore_missing(e: NetlinkError) -> bool:
    return e.code in (errno.ENODEV, errno.ENOENT, errno.ESRCH)
