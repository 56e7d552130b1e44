"""`timonel scheduler`: the scheduler on its own, against any API server."""

from __future__ import annotations

import argparse
import asyncio
import signal

from timonel.api.client import Client
from timonel.api.kubeconfig import KubeconfigError
from timonel.cli.failures import EXIT_CONFIG, Failure


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("scheduler", help="run the scheduler against an API server",
                       description="Place pending pods on nodes, binding them through the API "
                                   "server named in the kubeconfig.")
    p.add_argument("--kubeconfig", required=True, help="kubeconfig of the API server to use")
    p.add_argument("--config", default="",
                   help="KubeSchedulerConfiguration file (profiles, plugins, weights, "
                        "percentageOfNodesToScore)")
    p.add_argument("--leader-elect", action="store_true",
                   help="run only while holding the kube-system/kube-scheduler Lease, so "
                        "several schedulers can run for availability")
    p.add_argument("--scheduler-name", default="",
                   help="serve pods with this spec.schedulerName (the default profile under "
                        "another name; ignored with --config)")
    p.add_argument("--metrics-port", type=int, default=0,
                   help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (default: off)")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from timonel.scheduler import ConfigError, SchedulerConfiguration, load_config
    try:
        if args.config:
            return load_config(args.config)
        if args.scheduler_name:
            return SchedulerConfiguration(profiles=[{"schedulerName": args.scheduler_name}])
        return SchedulerConfiguration()
    except ConfigError as e:
        raise Failure("SCHEDULER_CONFIG", str(e), "fix the file named above; see "
                      "KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1)",
                      EXIT_CONFIG) from None


def run(args: argparse.Namespace) -> int:
    config = _config(args)
    try:
        client = Client.from_kubeconfig(args.kubeconfig)
    except (KubeconfigError, OSError) as e:
        raise Failure("KUBECONFIG", f"cannot use kubeconfig {args.kubeconfig}: {e}",
                      "pass the admin.kubeconfig that `timonel server` wrote", EXIT_CONFIG) from None
    return asyncio.run(_serve(client, config, args))


async def _serve(client: Client, config, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    from timonel.scheduler import run_scheduler
    from timonel.scheduler.metrics import SchedulerMetrics
    loop = asyncio.get_running_loop()
    metrics = SchedulerMetrics()
    if args.metrics_port:
        from prometheus_client import start_http_server
        try:
            start_http_server(args.metrics_port, "127.0.0.1", registry=metrics.registry)
        except OSError as e:
            raise Failure("METRICS_PORT", f"cannot serve metrics on 127.0.0.1:{args.metrics_port}: "
                          f"{e.strerror}", "choose a free --metrics-port", EXIT_CONFIG) from None
    task = asyncio.create_task(run_scheduler(client, config, leader_elect=args.leader_elect,
                                             metrics=metrics))
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    print(f"timonel scheduler running against {client.server}", flush=True)
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        await client.close()
    return 0
