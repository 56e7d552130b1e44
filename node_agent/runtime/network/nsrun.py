"""Run code inside a network namespace without forking.

A network namespace belongs to a thread, not to a process: a short-lived thread
can ``setns`` into a namespace, open netlink sockets (which stay bound to that
namespace for their whole life), run iptables (a child inherits the namespace of
the thread that forks it) or read ``/proc/sys/net``, then exit.  This is cheaper
than forking and safe in a daemon that already runs threads (gRPC), where a
fork followed by Python code can deadlock.  It also gives pyroute2 a thread with
no running asyncio loop, which its synchronous API requires.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ..linux import Syscalls
from ..linux.constants import CLONE_NEWNET

T = TypeVar("T")

_worker = threading.local()
_kernel = Syscalls()


def run_in_netns(netns: str | None, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)`` in a fresh thread joined to the netns file ``netns``.

    ``None`` means the namespace of the calling thread (a new thread inherits it).
    Exceptions from ``fn`` propagate to the caller.
    """
    return _run(lambda: join_netns(netns) if netns else None, fn, args, kwargs)


def run_in_fresh_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn`` in a new thread, for work that changes the thread's own namespaces."""
    return _run(lambda: None, fn, args, kwargs)


def run_in_new_netns(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn`` in a fresh thread that has just unshared a brand-new network namespace."""
    return _run(lambda: _kernel.unshare(CLONE_NEWNET), fn, args, kwargs)


def join_netns(netns: str) -> None:
    """Move the current worker thread into the namespace at ``netns``.

    Only allowed inside :func:`run_in_netns` workers: on any other thread it would
    silently move, say, the gRPC handler thread into a pod's namespace for good.
    """
    if not getattr(_worker, "active", False):
        raise RuntimeError("join_netns called outside a run_in_netns worker thread")
    try:
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileNotFoundError(2, "network namespace file does not exist", netns) from None
    try:
        _kernel.setns(fd, CLONE_NEWNET)
    finally:
        os.close(fd)


def _run(enter: Callable[[], object], fn: Callable[..., T], args: Any, kwargs: Any) -> T:
    box: dict[str, Any] = {}

    def target() -> None:
        _worker.active = True
        try:
            enter()
            box["result"] = fn(*args, **kwargs)
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=target, name="netns-worker", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]
