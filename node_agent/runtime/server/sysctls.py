"""A pod's sysctls: only namespaced ones, written from inside the pod's namespaces.

Like Kubernetes, only sysctls that belong to a namespace the pod owns are
allowed: `net.*` (network namespace; not with the node's network),
`kernel.shm*`, `kernel.msg*`, `kernel.sem` and `fs.mqueue.*` (IPC namespace).
/proc/sys resolves these files against the namespaces of the *writing
thread*, so a short-lived thread joins the pod's namespaces, writes, and exits
(never a pooled thread: it would stay in the pod's namespaces).
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

from ..linux import SyscallsLike
from ..linux.constants import NAMESPACE_FLAGS
from .errors import InvalidArgument

_NAME = re.compile(r"^[a-z0-9_]+([./][a-z0-9_-]+)+$")
_IPC_PREFIXES = ("kernel.shm", "kernel.msg", "fs.mqueue.")


def namespace_of(name: str) -> str | None:
    """'net', 'ipc', or None when the sysctl is not namespaced."""
    if name.startswith("net."):
        return "net"
    if name.startswith(_IPC_PREFIXES) or name == "kernel.sem":
        return "ipc"
    return None


def normalize(name: str) -> str:
    # Kubernetes accepts both "net.ipv4.ip_forward" and "net/ipv4/ip_forward".
    return name.replace("/", ".") if "/" in name else name


def validate(sysctls: dict[str, str], host_network: bool, where: str) -> dict[str, str]:
    out = {}
    for raw, value in sysctls.items():
        name = normalize(raw)
        if not _NAME.match(name) or ".." in name:
            raise InvalidArgument(f"{where}: sysctl name {raw!r} is not valid")
        kind = namespace_of(name)
        if kind is None:
            raise InvalidArgument(f"{where}: sysctl {raw} is not namespaced: setting it would change the "
                                  "whole node; only net.*, kernel.shm*, kernel.msg*, kernel.sem and "
                                  "fs.mqueue.* are allowed")
        if kind == "net" and host_network:
            raise InvalidArgument(f"{where}: sysctl {raw} would change the node's network namespace; "
                                  "net.* sysctls need a pod network")
        if "\n" in value or "\0" in value:
            raise InvalidArgument(f"{where}: sysctl {raw}: the value must be one line")
        out[name] = value
    return out


def apply(sys: SyscallsLike, sysctls: dict[str, str], namespaces: dict[str, str], where: str) -> None:
    """Write validated sysctls inside the namespaces given as files (kind -> path)."""
    if not sysctls:
        return
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            for kind in ("ipc", "net"):
                fd = os.open(namespaces[kind], os.O_RDONLY | os.O_CLOEXEC)
                try:
                    sys.setns(fd, NAMESPACE_FLAGS[kind])
                finally:
                    os.close(fd)
            for name, value in sorted(sysctls.items()):
                path = "/proc/sys/" + name.replace(".", "/")
                try:
                    with open(path, "w") as f:
                        f.write(value)
                except FileNotFoundError:
                    raise InvalidArgument(f"{where}: sysctl {name} does not exist on this kernel") from None
                except OSError as e:
                    raise InvalidArgument(f"{where}: sysctl {name}={value!r}: {e.strerror}") from None
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=work, name="sysctl-writer", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
