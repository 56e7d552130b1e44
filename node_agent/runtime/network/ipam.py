"""Pod IP allocation from the node's pod CIDR, one JSON file per address.

``<state_dir>/ipam/<ip>`` holds ``{"ip", "pod_id", "cidr"}``.  A file is published
with ``link(2)`` from a fully written temporary file, which fails if the name
exists: two processes can never own one address even without the lock, and a
reader never sees a half-written record.  The directory lock (``flock``) makes
"find a free address, take it" and "one address per pod" atomic across threads
and processes.  Allocation continues after the last address handed out (kept in
``.last``) like CNI's host-local plugin, so a just-freed address is not reused at
once while stale ARP or conntrack entries for it may still exist.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from timonel.api.fileutil import locked

from .config import NetworkError, parse_pod_cidr

log = logging.getLogger(__name__)

_LOCK = ".lock"
_LAST = ".last"
_TMP_PREFIX = ".tmp-"
_SEEN_MAX = 1 << 16
_seen: dict[str, tuple[int, Allocation]] = {}  # record path -> (its inode, its content)


@dataclass(frozen=True)
class Allocation:
    ip: str
    pod_id: str
    cidr: str


def ipam_dir(state_dir: str) -> str:
    return os.path.join(state_dir, "ipam")


def allocate(state_dir: str, cidr: str, pod_id: str) -> Allocation:
    """The pod's address: its existing allocation, else the next free one in ``cidr``."""
    return acquire(state_dir, cidr, pod_id)[0]


def acquire(state_dir: str, cidr: str, pod_id: str) -> tuple[Allocation, bool]:
    """As allocate, and whether the address is new (False: the pod had it already)."""
    if not pod_id:
        raise NetworkError("cannot allocate an IP for an empty pod ID")
    net = parse_pod_cidr(cidr, "pod CIDR")
    d = ipam_dir(state_dir)
    with _locked(d):
        taken: set[str] = set()
        for a in _read_all(d):
            if a.pod_id == pod_id and ipaddress.IPv4Address(a.ip) in net:
                return a, False
            if a.pod_id == pod_id:
                log.info("pod_id=%s ip=%s msg=releasing address outside the pod CIDR %s", pod_id, a.ip, net)
                _remove(d, a.ip)
            else:
                taken.add(a.ip)
        for ip in _candidates(net, _read_last(d)):
            if ip in taken:
                continue
            alloc = Allocation(ip=ip, pod_id=pod_id, cidr=str(net))
            if _publish(d, alloc):
                _write_last(d, ip)
                log.debug("pod_id=%s ip=%s msg=allocated", pod_id, ip)
                return alloc, True
        raise NetworkError(
            f"no free IP address left in pod CIDR {net} ({len(taken)} in use under {d}): "
            "remove pods from this node or give it a larger pod CIDR"
        )


def release(state_dir: str, pod_id: str) -> list[Allocation]:
    """Free every address held by ``pod_id``; returns what was freed (empty if none)."""
    d = ipam_dir(state_dir)
    if not os.path.isdir(d):
        return []
    with _locked(d):
        freed = [a for a in _read_all(d) if a.pod_id == pod_id]
        for a in freed:
            _remove(d, a.ip)
    return freed


def lookup(state_dir: str, pod_id: str) -> Allocation | None:
    return next((a for a in _read_all(ipam_dir(state_dir)) if a.pod_id == pod_id), None)


def list_allocations(state_dir: str) -> list[Allocation]:
    d = ipam_dir(state_dir)
    return sorted(_read_all(d), key=lambda a: ipaddress.IPv4Address(a.ip))


def gc(state_dir: str, live_pod_ids: Iterable[str]) -> list[Allocation]:
    """Free the addresses whose pod is not in ``live_pod_ids`` (and debris of crashes)."""
    live = set(live_pod_ids)
    d = ipam_dir(state_dir)
    if not os.path.isdir(d):
        return []
    with _locked(d):
        freed = [a for a in _read_all(d) if a.pod_id not in live]
        for a in freed:
            _remove(d, a.ip)
        for e in os.scandir(d):
            if e.name.startswith(_TMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(e.path)
    for a in freed:
        log.info("pod_id=%s ip=%s msg=released address of a pod that no longer exists", a.pod_id, a.ip)
    return freed


def _candidates(net: ipaddress.IPv4Network, last: str | None) -> Iterator[str]:
    first = int(net.network_address) + 2  # skip the network address and the gateway
    end = int(net.broadcast_address)  # exclusive: skip broadcast
    start = first
    if last is not None:
        with contextlib.suppress(ValueError):
            n = int(ipaddress.IPv4Address(last)) + 1
            if first <= n < end:
                start = n
    for i in range(start, end):
        yield str(ipaddress.IPv4Address(i))
    for i in range(first, start):
        yield str(ipaddress.IPv4Address(i))


def _publish(d: str, alloc: Allocation) -> bool:
    tmp = os.path.join(d, f"{_TMP_PREFIX}{os.getpid()}-{threading.get_native_id()}-{alloc.ip}")
    with open(tmp, "w") as f:
        json.dump({"ip": alloc.ip, "pod_id": alloc.pod_id, "cidr": alloc.cidr}, f)
    try:
        os.link(tmp, os.path.join(d, alloc.ip))
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def _read_all(d: str) -> list[Allocation]:
    out = []
    try:
        entries = list(os.scandir(d))
    except FileNotFoundError:
        return []
    for e in entries:
        if e.name.startswith("."):
            continue
        # A record is never rewritten, only published under a fresh inode (link of a new
        # temp file) and unlinked: (path, inode) names its content, so a record read once
        # need not be opened (nor its name parsed) again. Reading all of them per
        # allocation, inside the lock, made a burst of pod starts O(n^2) in file reads.
        inode = e.inode()
        known = _seen.get(e.path)
        if known is not None and known[0] == inode:
            out.append(known[1])
            continue
        try:
            ipaddress.IPv4Address(e.name)
        except ValueError:
            continue
        try:
            with open(e.path) as f:
                rec = json.load(f)
            alloc = Allocation(ip=e.name, pod_id=str(rec["pod_id"]), cidr=str(rec.get("cidr", "")))
            out.append(alloc)
            if len(_seen) > _SEEN_MAX:
                _seen.clear()
            _seen[e.path] = (inode, alloc)
        except FileNotFoundError:
            continue
        except (OSError, ValueError, KeyError, TypeError) as err:
            # Keep the address taken (a live pod may use it); GC frees it since no
            # live pod has the empty ID.
            log.warning("file=%s error=%s msg=unreadable IPAM record, treating the address as ownerless", e.path, err)
            out.append(Allocation(ip=e.name, pod_id="", cidr=""))
    return out


def _remove(d: str, ip: str) -> None:
    path = os.path.join(d, ip)
    _seen.pop(path, None)  # its inode may be reused by the next record of this address
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _read_last(d: str) -> str | None:
    try:
        with open(os.path.join(d, _LAST)) as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None


def _write_last(d: str, ip: str) -> None:
    # In place, not through a renamed temp file (a rename is ~0.1 ms on ext4, per pod):
    # only where the next search starts depends on it, and a torn write that does not
    # parse as an address in the CIDR starts it at the beginning (_candidates).
    fd = os.open(os.path.join(d, _LAST), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        data = ip.encode()
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked(d: str) -> Iterator[None]:
    os.makedirs(d, mode=0o700, exist_ok=True)
    with locked(os.path.join(d, _LOCK)):
        yield
