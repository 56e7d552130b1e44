"""Serving the runtime API on a unix socket until told to stop.

Imports grpc (which starts threads as soon as a server exists): the daemon
imports this module only after its fork server is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc

from timonel.api.process_memory import freeze_start_up_objects, releasing_free_heap

from ..api import frames as frames_api
from ..api import runtime_pb2_grpc as pb_grpc
from ..cgroups import Cgroups
from ..container.forkserver import ForkServer
from ..linux import SyscallsLike
from ..network import list_netns, release_netns_dir
from ..statefs import mount_state, release_state
from . import frames
from .options import RuntimeOptions
from .priority_pool import PriorityPool
from .recovery import recover
from .runtime import Runtime
from .servicer import ImageServicer, RuntimeServicer

log = logging.getLogger(__name__)

SOCKET_MODE = 0o660


class ServeError(RuntimeError):
    """The daemon cannot serve; the message says why and what to do."""


def check_socket_free(path: str) -> None:
    """Refuse a socket another runtime is serving on; remove a stale one."""
    if not os.path.lexists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2)
        probe.connect(path)
    except OSError as e:
        if e.errno not in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK):
            raise ServeError(f"cannot check socket {path}: {e.strerror}") from None
        log.info("socket=%s msg=removing a stale socket", path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    finally:
        probe.close()
    raise ServeError(f"another runtime is serving on {path}; stop it or give another --socket")


class _GenericHandlersOnly:
    """The server as the generated add_*_to_server functions see it: their methods are
    served through the generic handler alone, not also registered one by one. grpc.aio's
    server keeps a pending request per registered method (26 here) and, for every call,
    waits on all of them at once (asyncio.wait adds and removes a callback on each): that
    was ~15% of the daemon's CPU per RPC, for a lookup the generic handler does anyway."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: tuple[grpc.GenericRpcHandler, ...]) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        pass


async def serve(opts: RuntimeOptions, sys: SyscallsLike, cgroups: Cgroups, forkserver: ForkServer,
                on_ready: Callable[[Runtime], None] | None = None, stop: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM (or `stop` is set); containers keep running afterwards."""
    loop = asyncio.get_running_loop()
    ops = PriorityPool(max_workers=opts.workers, thread_name_prefix="rt-op")
    waits = ThreadPoolExecutor(max_workers=256, thread_name_prefix="rt-wait")
    loop.set_default_executor(waits)  # image imports and removals: off the pod work's few threads
    stop = stop or asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    os.makedirs(opts.root, mode=0o711, exist_ok=True)
    mount_state(sys, opts.root)
    rt = Runtime(opts, sys, cgroups, forkserver)
    server = None
    framed: asyncio.Server | None = None
    frames_socket = frames_api.frames_path(opts.socket)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(opts.socket)), mode=0o755, exist_ok=True)
        check_socket_free(opts.socket)  # before touching the node: another runtime may own it
        check_socket_free(frames_socket)
        await loop.run_in_executor(ops, rt.setup_network)
        counts = await loop.run_in_executor(ops, recover, rt)
        log.info("msg=recovered %s", " ".join(f"{k}={v}" for k, v in counts.items()))
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", frames_api.MAX_MESSAGE),
                                          ("grpc.max_send_message_length", frames_api.MAX_MESSAGE)])
        servicers = {"RuntimeService": RuntimeServicer(rt, ops, waits), "ImageService": ImageServicer(rt, ops, waits)}
        pb_grpc.add_RuntimeServiceServicer_to_server(servicers["RuntimeService"], _GenericHandlersOnly(server))
        pb_grpc.add_ImageServiceServicer_to_server(servicers["ImageService"], _GenericHandlersOnly(server))
        # Created with the umask's mode; narrow it before anyone can connect.
        old_umask = os.umask(0o117)
        try:
            if server.add_insecure_port(f"unix:{opts.socket}") == 0:
                raise ServeError(f"cannot listen on {opts.socket}; check the directory's permissions")
            await server.start()
        finally:
            os.umask(old_umask)
        os.chmod(opts.socket, SOCKET_MODE)
        # The unary calls also as frames (api/frames.py), once gRPC serves: a client that has
        # an answer on this socket (wait_ready) finds the streams there too.
        framed = await frames.start(frames_socket, frames.handlers(servicers), SOCKET_MODE)
        log.info("socket=%s pod_cidr=%s root=%s msg=serving", opts.socket, opts.pod_cidr, opts.root)
        if on_ready is not None:
            on_ready(rt)
        freeze_start_up_objects()
        async with releasing_free_heap():
            await stop.wait()
        log.info("msg=stopping; containers keep running")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        rt.stopping.set()  # worker threads must end, or the interpreter waits for them at exit
        if framed is not None:
            framed.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(frames_socket)
        if server is not None:
            await server.stop(grace=2)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(opts.socket)
        await rt.images.close()
        rt.close()
        release_netns_dir(rt.netns_dir)  # only when no pod namespace is left in it
        with rt.records.lock:
            in_use = bool(rt.records.sandboxes or rt.records.containers)
        release_state(sys, opts.root, in_use or bool(list_netns(rt.netns_dir)))
        waits.shutdown(wait=False, cancel_futures=True)
        ops.shutdown(wait=False, cancel_futures=True)
