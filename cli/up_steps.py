"""The start steps of `timonel up` and its orderly shutdown.

Steps run in order; each has a name that a failure quotes, and what it
started is in `UpState`, so `shutdown` stops exactly that (kind's style, as
api/server/run.py does for the server).

The node's pod CIDR: the runtime needs it before it starts, and the Node's
`spec.podCIDR` must say the same. So `up` registers the Node (the agent later
takes it over and fills in its status, as after a kubelet restart), and uses
the CIDR it carries: the one from an earlier run, the one `--pod-cidr` gave, or
the one the node IPAM controller assigns from the cluster CIDR.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import logging
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from timonel.api import kubeconfig, pki
from timonel.api.auth.join import NODE_USER_PREFIX, NODES_GROUP
from timonel.cli import up_supervisor
from timonel.cli.up_supervisor import Child
from timonel.controller.context import ControllerOptions

log = logging.getLogger(__name__)

T = TypeVar("T")
Obj = dict[str, Any]

START_TIMEOUT = 180.0


class StepError(RuntimeError):
    def __init__(self, message: str, advice: str) -> None:
        super().__init__(message)
        self.advice = advice


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived during start-up."""


@dataclass
class UpOptions:
    data_dir: str
    port: int
    node_name: str
    pod_cidr: str
    runtime_socket: str
    bridge: str
    agent_port: int = 10250


@dataclass
class UpState:
    opts: UpOptions
    stop_requested: int = 0
    server: Child | None = None
    runtime: Child | None = None
    agent: Child | None = None
    url: str = ""
    token: str = ""
    ca_pem: bytes = b""
    pod_cidr: str = ""
    images: list[str] = field(default_factory=list)

    def children(self) -> list[Child]:
        return [c for c in (self.server, self.runtime, self.agent) if c is not None]

    def log_path(self, name: str) -> str:
        return os.path.join(self.opts.data_dir, "logs", f"{name}.log")


def _wait(state: UpState, what: str, fn: Callable[[], T | None], timeout: float = START_TIMEOUT,
          watch: Child | None = None) -> T:
    """Poll `fn` until it returns something; a signal or `watch` exiting ends the wait."""
    deadline = time.monotonic() + timeout
    while True:
        if state.stop_requested:
            raise Interrupted()
        if watch is not None and watch.exit_code() is not None:
            raise StepError(f"the {watch.name} exited with code {watch.exit_code()} while waiting "
                            f"for {what}; the last lines of {watch.log_path}:\n{watch.tail()}",
                            f"fix the cause shown in {watch.log_path} and run timonel up again")
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise StepError(f"timed out after {timeout:.0f}s waiting for {what}",
                            f"see the logs in {os.path.join(state.opts.data_dir, 'logs')}/")
        time.sleep(0.3)


def api(state: UpState, method: str, path: str, body: Obj | None = None,
        content_type: str = "application/json") -> tuple[int, Obj]:
    """One request as the admin; (status code, JSON body). Connection errors: (0, {})."""
    ctx = ssl.create_default_context(cadata=state.ca_pem.decode())
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(state.url + path, data=data, method=method, headers={
        "Authorization": f"Bearer {state.token}", "Content-Type": content_type,
        "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, _json(r.read())
    except urllib.error.HTTPError as e:
        return e.code, _json(e.read())
    except OSError as e:
        log.debug("api request failed path=%s err=%s", path, e)
        return 0, {}


def _json(data: bytes) -> Obj:
    try:
        out = json.loads(data or b"{}")
    except ValueError:
        return {}  # /readyz answers "ok"
    return out if isinstance(out, dict) else {}


# -- the steps --

def _prepare(state: UpState) -> None:
    for sub in ("", "logs", "images", "agent"):
        os.makedirs(os.path.join(state.opts.data_dir, sub), mode=0o700, exist_ok=True)
    # Held for as long as `up` runs (kept over the hand-over exec): a second `up` on this
    # directory would otherwise take over the first one's etcd and runtime state.
    path = os.path.join(state.opts.data_dir, "up.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StepError(f"another timonel up (pid {holder}) is using {state.opts.data_dir}",
                        "stop it first (Ctrl-C, or kill -TERM that pid), or pass another --data-dir") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    os.set_inheritable(fd, True)


def _start_server(state: UpState) -> None:
    o = state.opts
    state.server = Child("server", ["server", "--data-dir", o.data_dir, "--bind-address", "127.0.0.1",
                                    "--port", str(o.port)], state.log_path("server"))
    state.server.start()
    state.url = f"https://127.0.0.1:{o.port}"
    admin = os.path.join(o.data_dir, "admin.kubeconfig")

    def ready() -> bool:
        # The kubeconfig of an earlier run may name another port: use it once it names ours.
        try:
            cfg = kubeconfig.load_kubeconfig(admin)
        except (OSError, kubeconfig.KubeconfigError):
            return False
        if cfg.server != state.url or not cfg.ca_pem or not cfg.token:
            return False
        state.token, state.ca_pem = cfg.token, cfg.ca_pem
        return api(state, "GET", "/readyz")[0] == 200
    _wait(state, "the API server to answer /readyz", ready, watch=state.server)


def _node_credentials(state: UpState) -> None:
    """The agent's own client certificate, never the admin token."""
    o = state.opts
    cert, key = pki.issue_client_cert(os.path.join(o.data_dir, "tls"), NODE_USER_PREFIX + o.node_name,
                                      [NODES_GROUP])
    kubeconfig.write_kubeconfig(os.path.join(o.data_dir, "agent", "kubeconfig"), state.url, state.ca_pem,
                                client_cert_pem=cert, client_key_pem=key, user=f"node-{o.node_name}")


def _node_cidrs(node: Obj) -> list[str]:
    spec = node.get("spec") or {}
    return [c for c in spec.get("podCIDRs") or [] if c] or ([spec["podCIDR"]] if spec.get("podCIDR") else [])


def _pod_cidr(state: UpState) -> None:
    o = state.opts
    path = f"/api/v1/nodes/{o.node_name}"
    code, node = api(state, "GET", path)
    if code == 404:
        spec: Obj = {"podCIDR": o.pod_cidr, "podCIDRs": [o.pod_cidr]} if o.pod_cidr else {}
        new = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": o.node_name}, "spec": spec}
        code, node = api(state, "POST", "/api/v1/nodes", new)
        if code not in (201, 409):
            raise StepError(f"the API server refused Node {o.node_name}: {node.get('message', code)}",
                            "check --node-name (a DNS subdomain) and --pod-cidr (a CIDR)")
    elif code != 200:
        raise StepError(f"cannot read Node {o.node_name}: {node.get('message', code)}",
                        f"see {state.log_path('server')}")
    have = _node_cidrs(node)
    if o.pod_cidr and have and o.pod_cidr not in have:
        raise StepError(f"node {o.node_name} already has pod CIDR {have[0]}, not --pod-cidr {o.pod_cidr}"
                        " (a Node's podCIDR never changes)",
                        f"drop --pod-cidr, or delete the node (kubectl delete node {o.node_name}) "
                        "or use a new --data-dir")
    if o.pod_cidr and not have:
        code, node = api(state, "PATCH", path, {"spec": {"podCIDR": o.pod_cidr, "podCIDRs": [o.pod_cidr]}},
                         "application/merge-patch+json")
        if code != 200:
            raise StepError(f"cannot set node {o.node_name}'s pod CIDR to {o.pod_cidr}: "
                            f"{node.get('message', code)}", "check --pod-cidr (a CIDR)")

    def assigned() -> str | None:
        c, n = api(state, "GET", path)
        cidrs = _node_cidrs(n) if c == 200 else []
        return cidrs[0] if cidrs else None
    state.pod_cidr = _wait(state, f"the node IPAM controller to give node {o.node_name} a pod CIDR",
                           assigned, watch=state.server)


def _start_runtime(state: UpState) -> None:
    from timonel.node_agent.runtime.client import RuntimeClient

    o = state.opts
    state.runtime = Child("runtime", [
        "runtime", "--root", os.path.join(o.data_dir, "runtime"), "--socket", o.runtime_socket,
        "--pod-cidr", state.pod_cidr, "--cluster-cidr", ControllerOptions.cluster_cidr,
        "--bridge", o.bridge], state.log_path("runtime"))
    state.runtime.start()

    def ready() -> bool:
        import grpc

        from timonel.node_agent.runtime.api import runtime_pb2 as pb

        if not os.path.exists(o.runtime_socket):
            return False
        with RuntimeClient(o.runtime_socket, timeout=10) as rt:
            try:
                rt.runtime.Version(pb.VersionRequest(), timeout=2)
                return True
            except grpc.RpcError:
                return False
    _wait(state, "the runtime to answer on its socket", ready, watch=state.runtime)


def _import_images(state: UpState) -> None:
    import grpc

    from timonel.node_agent.runtime.client import RuntimeClient

    images_dir = os.path.join(state.opts.data_dir, "images")
    with RuntimeClient(state.opts.runtime_socket, timeout=300) as rt:
        for name in sorted(os.listdir(images_dir)):
            path = os.path.join(images_dir, name)
            try:
                for image in rt.import_image(path):
                    state.images.extend(image.repo_tags or [image.id[:19]])
            except grpc.RpcError as e:
                raise StepError(f"cannot import image archive {path}: {e.details()}",  # type: ignore[attr-defined]
                                "put only `docker save` or OCI archives in DIR/images, "
                                "or remove that file") from None


def _start_agent(state: UpState) -> None:
    o = state.opts
    state.agent = Child("agent", [
        "agent", "--kubeconfig", os.path.join(o.data_dir, "agent", "kubeconfig"),
        "--node-name", o.node_name, "--data-dir", os.path.join(o.data_dir, "agent"),
        "--runtime-socket", o.runtime_socket,
        # Loopback only: the API server reaches the agent there for logs and exec, and
        # nothing outside this machine needs to.
        "--node-ip", "127.0.0.1", "--port", str(o.agent_port)], state.log_path("agent"))
    # An earlier run's Ready condition may still be in etcd: only a heartbeat of this agent counts.
    started = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    state.agent.start()

    def ready() -> bool:
        code, node = api(state, "GET", f"/api/v1/nodes/{o.node_name}")
        return code == 200 and any(c.get("type") == "Ready" and c.get("status") == "True"
                                   and _time(c.get("lastHeartbeatTime")) >= started
                                   for c in (node.get("status") or {}).get("conditions") or [])
    _wait(state, f"node {o.node_name} to be Ready", ready, watch=state.agent)


def _time(text: Any) -> datetime.datetime:
    try:
        return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return datetime.datetime.min.replace(tzinfo=datetime.UTC)


STEPS: list[tuple[str, Callable[[UpState], None]]] = [
    ("prepare the data directory", _prepare),
    ("start the API server", _start_server),
    ("issue the node agent's client certificate", _node_credentials),
    ("agree on the node's pod CIDR", _pod_cidr),
    ("start the container runtime", _start_runtime),
    ("import the image archives", _import_images),
    ("start the node agent", _start_agent),
]


def start_all(state: UpState) -> None:
    """Run every step; StepError names the step that failed (nothing is stopped here)."""
    for name, step in STEPS:
        log.info("step name=%r", name)
        try:
            step(state)
        except (StepError, Interrupted):
            raise
        except (OSError, ValueError) as e:
            raise StepError(f"could not {name}: {e}",
                            f"check {state.opts.data_dir} (permissions, free space) and the logs in "
                            f"{os.path.join(state.opts.data_dir, 'logs')}/") from None
        print(f"  ok: {name}", flush=True)


# -- shutdown --

def shutdown(state: UpState) -> None:
    """Stop what the steps started (see up_supervisor.shutdown for the order)."""
    children = {c.name: c for c in state.children()}
    up_supervisor.shutdown(children, state.opts.runtime_socket, state.opts.data_dir,
                           state.opts.bridge if state.runtime is not None else "")
