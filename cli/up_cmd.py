"""`timonel up`: a whole one-node cluster in one command.

The parts run as supervised children, exactly as a user would start them
one by one: `timonel server` (embedded etcd, scheduler and controllers),
`timonel runtime` and `timonel agent`. Start-up is a list of named steps
(cli/up_steps.py); a failing step says which it was and stops what already
runs. Then `up` becomes a lean supervisor (cli/up_supervisor.py): a child
that dies is reported with its log tail and everything stops. On Ctrl-C,
SIGTERM or SIGHUP: the agent stops, every pod's containers and sandbox are
removed through the runtime (nothing stays on the host), then the runtime and
the server stop. A later `up` on the same directory brings the pods back:
they are still in etcd, bound to this node.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
from types import FrameType

from timonel.cli.failures import EXIT_PERMISSION, EXIT_UNAVAILABLE, Failure
from timonel.cli.up_steps import Interrupted, StepError, UpOptions, UpState, shutdown, start_all
from timonel.cli.up_supervisor import STOP_SIGNALS, handoff
from timonel.node_agent.runtime.daemon import DEFAULT_SOCKET

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = "/var/lib/timonel"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "up", help="start a whole one-node cluster here (server, runtime, agent); Ctrl-C stops it",
        description="Start the API server (embedded etcd, scheduler, controllers), the container "
                    "runtime and a node agent for this machine; import the image archives in "
                    "DIR/images; write DIR/admin.kubeconfig. Ctrl-C or SIGTERM stops everything "
                    "and removes the pods' containers; `up` again brings them back.")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                   help="all state: etcd, TLS, kubeconfigs, runtime, pod volumes, logs "
                        "(default: %(default)s)")
    p.add_argument("--port", type=int, default=6443, help="API server HTTPS port on 127.0.0.1 "
                                                          "(default: %(default)s)")
    p.add_argument("--node-name", default="", help="this node's name (default: the hostname)")
    p.add_argument("--pod-cidr", default="",
                   help="this node's pod network (default: the subnet the node IPAM controller "
                        "assigns from the cluster CIDR); kept in the Node's spec.podCIDR")
    p.add_argument("--runtime-socket", default=DEFAULT_SOCKET,
                   help="the runtime's unix socket (default: %(default)s)")
    p.add_argument("--agent-port", type=int, default=10250,
                   help="HTTPS port of the agent's logs/exec endpoint on 127.0.0.1; 0 picks a free "
                        "one (default: %(default)s)")
    p.add_argument("--bridge", default="timonel0",
                   help="the node bridge pods attach to (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise Failure("UP_ROOT", "timonel up needs root: its container runtime creates namespaces, "
                      "cgroups, mounts and network interfaces, and its node agent mounts pod volumes",
                      f"run it as root: sudo timonel up --data-dir {args.data_dir}", EXIT_PERMISSION)
    opts = UpOptions(data_dir=os.path.abspath(args.data_dir), port=args.port,
                     node_name=(args.node_name or socket.gethostname()).lower(),
                     pod_cidr=args.pod_cidr, runtime_socket=os.path.abspath(args.runtime_socket),
                     bridge=args.bridge, agent_port=args.agent_port)
    state = UpState(opts)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        state.stop_requested = signum

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    try:
        start_all(state)
    except Interrupted:
        print("stopping (signal during start-up)", flush=True)
        shutdown(state)
        return 0
    except StepError as e:
        shutdown(state)
        raise Failure("UP_START", str(e), e.advice, EXIT_UNAVAILABLE) from None
    _print_ready(state)
    if state.stop_requested:
        print("stopping: agent, pods, runtime, server", flush=True)
        shutdown(state)
        return 0
    handoff(state.children(), opts.runtime_socket, opts.data_dir, opts.bridge)
    return 0  # not reached


def _print_ready(state: UpState) -> None:
    o = state.opts
    kubeconfig = os.path.join(o.data_dir, "admin.kubeconfig")
    print(f"timonel is up: API server {state.url}, node {o.node_name} Ready, pod CIDR {state.pod_cidr}",
          flush=True)
    if state.images:
        print(f"images imported from {os.path.join(o.data_dir, 'images')}: {', '.join(state.images)}",
              flush=True)
    print(f"admin kubeconfig: {kubeconfig}\n"
          f"  export KUBECONFIG={kubeconfig}\n"
          f"  kubectl get nodes\n"
          f"  kubectl apply -f manifests/examples/\n"
          f"load an image later: timonel image import FILE --runtime-socket {o.runtime_socket}\n"
          f"logs of the parts: {os.path.join(o.data_dir, 'logs')}/\n"
          f"Ctrl-C stops everything (pods' containers are removed; `timonel up --data-dir "
          f"{o.data_dir}` brings them back)", flush=True)
