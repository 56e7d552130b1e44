"""`timonel agent`: the node agent (kubelet) for this machine."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import signal
import socket

from timonel.api.auth.join import JoinTokenError, looks_like_join_token
from timonel.api.client import Client
from timonel.api.kubeconfig import ClusterConfig, KubeconfigError, load_kubeconfig
from timonel.cli.failures import EXIT_CONFIG, EXIT_PERMISSION, EXIT_UNAVAILABLE, Failure
from timonel.node_agent.runtime.server.options import DEFAULT_SOCKET

DEFAULT_DATA_DIR = "/var/lib/timonel/agent"
# DEFAULT_SOCKET comes from the runtime's options, not its daemon module: that would load the
# whole runtime (cgroups, containers, fork server) into the agent.

# Requests (status writes, events, leases) share this many connections; watches have
# their own. The server answers one request at a time, so more connections add no
# speed: with aiohttp's default of 100, a burst of pod starts opened one TLS connection
# per concurrent status write (~15-25 handshakes for 100 pods), each a handshake's CPU on
# both ends. The kubelet multiplexes everything over one HTTP/2 connection.
API_CONNECTIONS = 4


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("agent", help="run the node agent: register this node and run its pods",
                       description="Register this machine as a Node and run the pods bound to it "
                                   "through the container runtime (`timonel runtime`).")
    p.add_argument("--kubeconfig", default="", help="kubeconfig of the API server to use")
    p.add_argument("--server", default="", help="API server URL (instead of --kubeconfig)")
    p.add_argument("--token", default="",
                   help="the server's join token (DATA_DIR/node-token of timonel server: the agent "
                        "obtains its own node credentials with it, kept in DIR/node.kubeconfig), "
                        "or a bearer token for --server")
    p.add_argument("--certificate-authority", default="", metavar="FILE",
                   help="CA certificate of an https --server (PEM)")
    p.add_argument("--node-name", default="", help="the Node's name (default: the hostname)")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                   help="pod volumes and logs; image archives in DIR/images are imported at start "
                        "(default: %(default)s)")
    p.add_argument("--runtime-socket", default=DEFAULT_SOCKET,
                   help="the runtime's unix socket (default: %(default)s)")
    p.add_argument("--node-ip", default="",
                   help="the node's InternalIP, where the API server reaches the agent for logs and "
                        "exec (default: the address of the default route)")
    p.add_argument("--port", type=int, default=10250,
                   help="HTTPS port of the agent's logs/exec endpoint; 0 picks a free one "
                        "(default: %(default)s)")
    p.add_argument("--eviction-hard", default=None, metavar="SIGNAL<VALUE,...",
                   help="hard eviction thresholds, as the kubelet's: a pod is evicted when a signal "
                        "(memory.available, nodefs.available, nodefs.inodesFree, imagefs.available, "
                        "imagefs.inodesFree, pid.available) is below its quantity or percentage "
                        "(default: upstream's, memory.available<100Mi,nodefs.available<10%%,...)")
    p.add_argument("--eviction-pressure-transition-period", default="5m0s", metavar="DURATION",
                   help="how long a MemoryPressure/DiskPressure/PIDPressure condition stays after "
                        "its signal recovers (default: %(default)s)")
    p.set_defaults(func=run)


def _cluster_config(args: argparse.Namespace, node_name: str) -> ClusterConfig:
    if args.kubeconfig:
        try:
            return load_kubeconfig(args.kubeconfig)
        except (KubeconfigError, OSError) as e:
            raise Failure("KUBECONFIG", f"cannot use kubeconfig {args.kubeconfig}: {e}",
                          "pass a kubeconfig of the API server (timonel server writes admin.kubeconfig)",
                          EXIT_CONFIG) from None
    if not args.server:
        raise Failure("AGENT_SERVER", "no API server given",
                      "pass --kubeconfig FILE, or --server URL with --token TOKEN", EXIT_CONFIG)
    if looks_like_join_token(args.token):
        return _join(args, node_name)
    ca = b""
    if args.certificate_authority:
        try:
            with open(args.certificate_authority, "rb") as f:
                ca = f.read()
        except OSError as e:
            raise Failure("AGENT_CA", f"cannot read --certificate-authority: {e}",
                          "pass the API server's ca.crt (DATA_DIR/tls/ca.crt of timonel server)",
                          EXIT_CONFIG) from None
    elif args.server.startswith("https://"):
        raise Failure("AGENT_CA", f"--server {args.server} is https but no CA was given",
                      "pass --certificate-authority FILE (the server's tls/ca.crt)", EXIT_CONFIG)
    return ClusterConfig(server=args.server, ca_pem=ca or None, token=args.token or None)


def _join(args: argparse.Namespace, node_name: str) -> ClusterConfig:
    from timonel.node_agent.agent.join import JoinError, join

    try:
        return join(args.server, args.token, node_name, os.path.abspath(args.data_dir))
    except JoinTokenError as e:
        raise Failure("AGENT_JOIN_TOKEN", f"--token is not a usable join token: {e}",
                      "copy the whole content of the server's DATA_DIR/node-token", EXIT_CONFIG) from None
    except JoinError as e:
        raise Failure("AGENT_JOIN", str(e), "check --server and that --token is the current content "
                      "of the server's DATA_DIR/node-token", EXIT_UNAVAILABLE) from None


def run(args: argparse.Namespace) -> int:
    from timonel.node_agent.agent.agent import AgentConfig

    eviction_hard = eviction_hard_flag(args.eviction_hard)
    transition = duration_flag("--eviction-pressure-transition-period", args.eviction_pressure_transition_period)
    if os.geteuid() != 0:
        raise Failure("AGENT_ROOT", "timonel agent needs root: it writes pod volumes that the "
                      "runtime bind-mounts and mounts tmpfs volumes", "run it with sudo",
                      EXIT_PERMISSION)
    name = (args.node_name or socket.gethostname()).lower()
    config = _cluster_config(args, name)
    if not os.path.exists(args.runtime_socket):
        raise Failure("AGENT_RUNTIME", f"no runtime socket at {args.runtime_socket}",
                      "start `timonel runtime --socket PATH` first, or pass --runtime-socket",
                      EXIT_UNAVAILABLE)
    if not 0 <= args.port <= 65535:
        raise Failure("AGENT_PORT", f"--port {args.port} is not a TCP port",
                      "pass a port between 1 and 65535, or 0 for any free one", EXIT_CONFIG)
    if args.node_ip:
        try:
            ipaddress.ip_address(args.node_ip)
        except ValueError:
            raise Failure("AGENT_NODE_IP", f"--node-ip {args.node_ip!r} is not an IP address",
                          "pass an address of this machine, like 192.168.1.10", EXIT_CONFIG) from None
    agent = AgentConfig(name, os.path.abspath(args.data_dir), args.runtime_socket, node_ip=args.node_ip,
                        port=args.port, client_ca_pem=config.ca_pem, eviction_hard=eviction_hard,
                        pressure_transition_seconds=transition)
    return asyncio.run(_serve(Client(config, pool_size=API_CONNECTIONS), agent))



def eviction_hard_flag(value: str | None) -> str:
    """The --eviction-hard value, checked now so a typo is an error at start, not a silent no-op."""
    from timonel.node_agent.agent.eviction import (
        DEFAULT_EVICTION_HARD,
        ThresholdError,
        parse_thresholds,
    )

    if value is None:
        return DEFAULT_EVICTION_HARD
    try:
        parse_thresholds(value)
    except ThresholdError as e:
        raise Failure("AGENT_EVICTION", f"--eviction-hard: {e}",
                      "pass SIGNAL<QUANTITY or SIGNAL<PERCENT pairs separated by commas, e.g. "
                      "memory.available<100Mi,nodefs.available<10%", EXIT_CONFIG) from None
    return value



def duration_flag(flag: str, value: str) -> float:
    from timonel.node_agent.agent.eviction import ThresholdError, parse_duration

    try:
        return parse_duration(value)
    except ThresholdError as e:
        raise Failure("AGENT_DURATION", f"{flag}: {e}", "pass a duration like 5m0s, 30s or 0",
                      EXIT_CONFIG) from None


async def _serve(client: Client, config) -> int:  # type: ignore[no-untyped-def]
    from timonel.api.process_memory import freeze_start_up_objects, releasing_free_heap
    from timonel.node_agent.agent.agent import Agent

    freeze_start_up_objects()
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(Agent(client, config).run())
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    print(f"timonel agent for node {config.node_name} running against {client.server}", flush=True)
    try:
        async with releasing_free_heap():
            await task
    except asyncio.CancelledError:
        pass
    except ConnectionError as e:
        raise Failure("AGENT_API", str(e), "check that the API server is running", EXIT_UNAVAILABLE) from None
    finally:
        await client.close()
    return 0
