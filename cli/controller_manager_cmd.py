"""`timonel controller-manager`: the control loops, as a process of their own."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from timonel.api.client import Client
from timonel.api.kubeconfig import KubeconfigError
from timonel.cli.failures import EXIT_CONFIG, Failure
from timonel.controller.context import ControllerOptions

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "controller-manager", help="run the controllers (ReplicaSet, Deployment, GC, ...)",
        description="Run the control loops against an API server: workloads that heal, scale, "
                    "roll out and clean up.")
    p.add_argument("--kubeconfig", default=None,
                   help="kubeconfig of the API server (default: $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--context", default=None, help="kubeconfig context to use")
    p.add_argument("--controllers", default="*",
                   help="comma-separated controllers to run: '*' for all, 'name' to add one, "
                        "'-name' to leave one out (default: %(default)s)")
    p.add_argument("--leader-elect", action="store_true",
                   help="run only while holding the Lease kube-system/kube-controller-manager, "
                        "so several managers can run for availability")
    p.add_argument("--leader-elect-identity", default="",
                   help="this manager's name in the Lease (default: host name and a UUID)")
    p.add_argument("--concurrent-syncs", type=int, default=ControllerOptions.workers,
                   help="workers per controller (default: %(default)s)")
    p.add_argument("--node-monitor-grace-period", type=float,
                   default=ControllerOptions.node_monitor_grace_period,
                   help="seconds without a heartbeat before a node is NotReady "
                        "(default: %(default)s)")
    p.add_argument("--cluster-cidr", default=ControllerOptions.cluster_cidr,
                   help="pod addresses for all nodes (default: %(default)s)")
    p.add_argument("--node-cidr-mask-size", type=int, default=ControllerOptions.node_cidr_mask_size,
                   help="prefix length of each node's pod CIDR (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from timonel.controller.manager import select_controllers
    from timonel.controller.registry import CONTROLLERS, DEFAULT_CONTROLLERS

    requested = [c for c in args.controllers.split(",") if c.strip()]
    try:
        names = select_controllers(requested, CONTROLLERS, DEFAULT_CONTROLLERS)
    except ValueError as e:
        raise Failure("BAD_FLAG", str(e), "see `timonel controller-manager --help`",
                      EXIT_CONFIG) from None
    if args.concurrent_syncs < 1:
        raise Failure("BAD_FLAG", f"--concurrent-syncs must be at least 1, got "
                      f"{args.concurrent_syncs}", "", EXIT_CONFIG)
    options = ControllerOptions(workers=args.concurrent_syncs,
                                node_monitor_grace_period=args.node_monitor_grace_period,
                                cluster_cidr=args.cluster_cidr,
                                node_cidr_mask_size=args.node_cidr_mask_size)
    try:
        client = Client.from_kubeconfig(args.kubeconfig, args.context)
    except (KubeconfigError, OSError) as e:
        raise Failure("KUBECONFIG", f"cannot use the kubeconfig: {e}",
                      "pass --kubeconfig FILE (a `timonel server` writes admin.kubeconfig "
                      "in its data directory)", EXIT_CONFIG) from None
    return asyncio.run(_serve(client, options, names, args.leader_elect,
                              args.leader_elect_identity))


async def _serve(client: Client, options: ControllerOptions, names: list[str],
                 leader_elect: bool, identity: str) -> int:
    from timonel.controller.manager import run_controller_manager

    loop = asyncio.get_running_loop()
    manager = asyncio.create_task(run_controller_manager(
        client, options, controllers=names, leader_elect=leader_elect, identity=identity))
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, manager.cancel)
    print(f"timonel controller manager: {', '.join(names)} against {client.server}"
          + (" (leader election)" if leader_elect else ""), flush=True)
    try:
        await manager
    except asyncio.CancelledError:
        pass
    finally:
        await client.close()
    return 0
