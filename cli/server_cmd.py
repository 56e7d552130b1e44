"""`timonel server`: the API server (with an embedded etcd unless told otherwise)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal

from timonel.api.auth.join import join_token_file
from timonel.api.process_memory import releasing_free_heap
from timonel.api.server.run import RunningServer, ServerOptions, StartError, default_data_dir, start
from timonel.cli.failures import EXIT_UNAVAILABLE, Failure


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("server", help="run the API server (and an embedded etcd)",
                       description="Serve the Kubernetes API over HTTPS, storing objects in etcd.")
    p.add_argument("--data-dir", default=default_data_dir(),
                   help="state directory: etcd data, TLS, tokens, admin.kubeconfig "
                        "(default: %(default)s)")
    p.add_argument("--bind-address", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=6443, help="HTTPS port (default: %(default)s)")
    p.add_argument("--etcd-endpoints", default="",
                   help="comma-separated etcd client URLs; without it an embedded etcd is started")
    p.add_argument("--tls-san", action="append", default=[],
                   help="extra subject alternative name for the serving certificate (repeatable)")
    p.add_argument("--disable-scheduler", action="store_true",
                   help="do not run the scheduler in this process (run `timonel scheduler` "
                        "elsewhere, or none)")
    p.add_argument("--disable-controller-manager", action="store_true",
                   help="do not run the controllers in this process")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    opts = ServerOptions(
        data_dir=args.data_dir, bind_address=args.bind_address, port=args.port,
        etcd_endpoints=[e for e in args.etcd_endpoints.split(",") if e.strip()],
        tls_sans=args.tls_san,
    )
    return asyncio.run(_serve(opts, scheduler=not args.disable_scheduler,
                              controllers=not args.disable_controller_manager))


async def _control_plane(server: RunningServer, scheduler: bool, controllers: bool) -> None:
    """The scheduler and controller manager of this server, as API clients like
    any other (DESIGN.md rule 1), each behind its own leader election so that
    several servers on one etcd run one of each. They reach it through its
    loopback socket (api/server/loopback_socket.py), with the admin token."""
    from timonel.api.client import Client
    from timonel.api.kubeconfig import ClusterConfig
    from timonel.controller.manager import run_controller_manager
    from timonel.scheduler import run_scheduler

    config = ClusterConfig(server="http://localhost", token=server.token, unix_socket=server.socket_path)
    async with Client(config) as client:
        loops = []
        if scheduler:
            loops.append(run_scheduler(client, leader_elect=True))
        if controllers:
            loops.append(run_controller_manager(client, leader_elect=True))
        await asyncio.gather(*loops)


async def _serve(opts: ServerOptions, *, scheduler: bool = True, controllers: bool = True) -> int:
    try:
        server = await start(opts)
    except StartError as e:
        raise Failure("SERVER_START", str(e), "see the messages above; --data-dir and --port "
                      "choose where state lives and where it listens", EXIT_UNAVAILABLE) from None
    print(f"timonel API server listening on {server.url}", flush=True)
    print(f"admin kubeconfig: {server.kubeconfig_path}", flush=True)
    print(f"  kubectl --kubeconfig {server.kubeconfig_path} get namespaces", flush=True)
    token_path = join_token_file(os.path.dirname(server.kubeconfig_path))
    print(f"nodes join with: timonel agent --server {server.url} --token \"$(cat {token_path})\"",
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    plane = asyncio.create_task(_control_plane(server, scheduler, controllers)) \
        if scheduler or controllers else None
    async with releasing_free_heap():
        await stop.wait()
    print("stopping", flush=True)
    if plane is not None:
        plane.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await plane
    await server.stop()
    return 0
