"""`timonel runtime`: the container runtime daemon, and a crictl-like CLI for it.

    timonel runtime [--root DIR] [--socket PATH] [--pod-cidr CIDR]   run the daemon (root)
    timonel runtime ps [-a] | pods | images | inspect ID | logs ID | exec ID -- CMD
    timonel runtime pull IMAGE | import FILE | rm ID | rmi IMAGE
    timonel runtime run [--memory BYTES] [--cpus N] [--user UID] IMAGE -- CMD...

Every client verb takes --socket PATH. IDs may be abbreviated to a unique prefix.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from timonel.cli import runtime_stream
from timonel.cli.failures import EXIT_API, EXIT_CONFIG, EXIT_PERMISSION, EXIT_UNAVAILABLE, Failure
from timonel.node_agent.runtime.daemon import (
    DEFAULT_CGROUP_PARENT,
    DEFAULT_POD_CIDR,
    DEFAULT_ROOT,
    DEFAULT_SOCKET,
    DaemonError,
    RuntimeOptions,
)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "runtime", help="run the container runtime daemon, or talk to it (ps, exec, run ...)",
        description="Without a verb: run the runtime daemon (needs root). With a verb: a crictl-like "
                    "client of a running daemon.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  sudo timonel runtime --pod-cidr 10.88.0.0/24\n"
               "  timonel runtime import busybox.tar\n  timonel runtime run busybox -- echo hello\n"
               "  timonel runtime ps -a")
    p.add_argument("--socket", default=DEFAULT_SOCKET, help="the runtime's unix socket (default: %(default)s)")
    p.add_argument("--root", default=DEFAULT_ROOT, help="state directory (default: %(default)s)")
    p.add_argument("--pod-cidr", default=DEFAULT_POD_CIDR,
                   help="the node's pod network; pods get addresses from it (default: %(default)s)")
    p.add_argument("--cgroup-parent", default=DEFAULT_CGROUP_PARENT,
                   help="cgroup under which pod cgroups are made (default: %(default)s)")
    p.add_argument("--bridge", default="timonel0", help="the node bridge (default: %(default)s)")
    p.add_argument("--node-netns", default=None, metavar="PATH",
                   help="network namespace file holding the node side of pod networking (test clusters)")
    p.add_argument("--cluster-cidr", action="append", default=[], metavar="CIDR",
                   help="a pod network of the whole cluster, not masqueraded (repeatable)")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                   help="a registry spoken to over plain HTTP (repeatable; loopback always is)")
    p.set_defaults(func=run_daemon)
    verbs = p.add_subparsers(dest="verb", metavar="VERB")

    def verb(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        v = verbs.add_parser(name, help=help, description=help)
        # SUPPRESS: `runtime --socket X ps` and `runtime ps --socket X` both work.
        v.add_argument("--socket", default=argparse.SUPPRESS, help="the runtime's unix socket")
        v.set_defaults(func=func)
        return v

    v = verb("ps", cmd_ps, "list containers (running ones; -a: all)")
    v.add_argument("-a", "--all", action="store_true", help="all containers, also created and exited ones")
    v.add_argument("-q", "--quiet", action="store_true", help="only IDs")
    v.add_argument("--pod", default="", help="only containers of this pod sandbox")
    v = verb("pods", cmd_pods, "list pod sandboxes")
    v.add_argument("-q", "--quiet", action="store_true", help="only IDs")
    verb("images", cmd_images, "list images")
    v = verb("inspect", cmd_inspect, "show a container, pod sandbox or image as JSON")
    v.add_argument("id", help="container or pod ID (or a unique prefix), or an image")
    v = verb("logs", runtime_stream.cmd_logs, "print a container's log")
    v.add_argument("id", help="container ID or a unique prefix")
    v.add_argument("-f", "--follow", action="store_true", help="keep printing until the container exits")
    v.add_argument("--tail", type=int, default=-1, metavar="N", help="only the last N lines")
    v = verb("exec", runtime_stream.cmd_exec, "run a command in a running container")
    v.add_argument("-i", "--interactive", action="store_true", help="pass stdin to the command")
    v.add_argument("-t", "--tty", action="store_true", help="give the command a terminal")
    v.add_argument("id", help="container ID or a unique prefix")
    v.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the command and its arguments")
    v = verb("attach", runtime_stream.cmd_attach, "attach to a container's own stdin/stdout/stderr")
    v.add_argument("-i", "--interactive", action="store_true", help="pass stdin to the container")
    v.add_argument("-t", "--tty", action="store_true", help="the container has a tty: use ours raw")
    v.add_argument("id", help="container ID or a unique prefix")
    v = verb("pull", cmd_pull, "pull an image from its registry")
    v.add_argument("image")
    v.add_argument("--creds", default="", metavar="USER:PASSWORD", help="registry credentials")
    v = verb("import", cmd_import, "import a docker save archive or OCI layout (dir or tar)")
    v.add_argument("file", help="path on the runtime's node")
    v.add_argument("--name", default="", help="one more name for the image")
    v = verb("rm", cmd_rm, "remove containers or pod sandboxes (running ones are killed)")
    v.add_argument("ids", nargs="+", metavar="ID")
    v = verb("rmi", cmd_rmi, "remove images")
    v.add_argument("images", nargs="+", metavar="IMAGE")
    v = verb("run", runtime_stream.cmd_run,
             "run one container in a fresh pod sandbox, print its output, exit with its code, clean up")
    v.add_argument("--memory", type=runtime_stream.parse_bytes, default=0, metavar="BYTES",
                   help="memory limit (bytes, or with k/m/g suffix)")
    v.add_argument("--cpus", type=float, default=0.0, metavar="N", help="CPU limit in cores, e.g. 0.5")
    v.add_argument("--user", type=int, default=None, metavar="UID", help="run as this uid")
    v.add_argument("--pids-limit", type=int, default=0, metavar="N", help="at most N processes")
    v.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE", help="environment variable")
    v.add_argument("image")
    v.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the command (default: the image's)")


# -- the daemon --

def run_daemon(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise Failure("NEED_ROOT", "the runtime daemon needs root: it creates namespaces, cgroups, mounts "
                      "and network interfaces",
                      f"run it as root: sudo timonel runtime --root {args.root}", EXIT_PERMISSION)
    opts = RuntimeOptions(root=os.path.abspath(args.root), socket=os.path.abspath(args.socket),
                          pod_cidr=args.pod_cidr, cgroup_parent=args.cgroup_parent.strip("/"),
                          bridge=args.bridge, node_netns=args.node_netns,
                          cluster_cidrs=tuple(args.cluster_cidr),
                          insecure_registries=tuple(args.insecure_registry))
    # Containers fork from a fork server, a copy of the process that starts it: this one
    # holds every command's modules (tens of MB), which makes each fork and the child's
    # first steps slower. A fresh interpreter that loads only the runtime starts it instead.
    sys.stdout.flush()
    sys.stderr.flush()
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    os.execv(sys.executable, [sys.executable, "-m", "timonel.cli.runtime_cmd", _DAEMON,
                              json.dumps(dataclasses.asdict(opts)), level])
    return 0  # not reached


_DAEMON = "--serve-lean-daemon"


def _daemon_main(options_json: str, level: str) -> int:
    """The exec'd daemon process: only the runtime's modules are loaded when its fork server starts."""
    from timonel.node_agent.runtime.daemon import run

    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    data = json.loads(options_json)
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    opts = RuntimeOptions(**fields)

    def ready(_rt: object) -> None:
        print(f"timonel runtime serving on unix://{opts.socket} (root {opts.root}, pod CIDR {opts.pod_cidr})",
              flush=True)

    try:
        run(opts, ready)
    except DaemonError as e:
        Failure("RUNTIME_START", str(e), "fix the flags or the node, then start the runtime again",
                EXIT_CONFIG).print()
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    return 0


# -- client plumbing --

@contextmanager
def connect(args: argparse.Namespace) -> Iterator[Any]:
    """A RuntimeClient for the verb; gRPC failures become Failures with advice."""
    import grpc

    from timonel.node_agent.runtime.client import RuntimeClient

    path = args.socket
    if not os.path.exists(path):
        raise Failure("NO_RUNTIME", f"no runtime socket at {path}",
                      "start the runtime (sudo timonel runtime) or give --socket", EXIT_UNAVAILABLE)
    if not os.access(path, os.R_OK | os.W_OK):
        raise Failure("SOCKET_PERMISSION", f"no permission to use {path} (mode 0660, owned by root)",
                      "run the command as root (sudo) or as a member of the socket's group", EXIT_PERMISSION)
    client = RuntimeClient(path)
    try:
        yield client
    except grpc.RpcError as e:
        code = e.code()  # type: ignore[attr-defined]
        unavailable = code == grpc.StatusCode.UNAVAILABLE
        raise Failure(code.name if code else "RPC", e.details() or str(code),  # type: ignore[attr-defined]
                      "is the runtime running? (sudo timonel runtime)" if unavailable else "",
                      EXIT_UNAVAILABLE if unavailable else EXIT_API) from None
    finally:
        client.close()


def short(ident: str) -> str:
    return ident.split(":", 1)[-1][:13]


def ago(ns: int) -> str:
    secs = max(time.time() - ns / 1e9, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{int(secs // size)}{unit} ago"
    return f"{int(secs)}s ago"


def table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _to_json(msg: Any) -> Any:
    from google.protobuf import json_format

    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


# -- verbs --

def cmd_ps(args: argparse.Namespace) -> int:
    from timonel.node_agent.runtime.api import runtime_pb2 as pb

    f = pb.ContainerFilter(pod_sandbox_id=args.pod)
    if not args.all:
        f.state.state = pb.CONTAINER_RUNNING
    with connect(args) as c:
        items = c.list_containers(f)
    if args.quiet:
        for it in items:
            print(it.id)
        return 0
    rows = [["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID"]]
    for it in items:
        rows.append([short(it.id), it.image.image, ago(it.created_at),
                     pb.ContainerState.Name(it.state).removeprefix("CONTAINER_"), it.metadata.name,
                     str(it.metadata.attempt), short(it.pod_sandbox_id)])
    table(rows)
    return 0


def cmd_pods(args: argparse.Namespace) -> int:
    from timonel.node_agent.runtime.api import runtime_pb2 as pb

    with connect(args) as c:
        items = c.list_sandboxes()
    if args.quiet:
        for it in items:
            print(it.id)
        return 0
    rows = [["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT"]]
    for it in items:
        rows.append([short(it.id), ago(it.created_at), pb.PodSandboxState.Name(it.state).removeprefix("SANDBOX_"),
                     it.metadata.name, it.metadata.namespace, str(it.metadata.attempt)])
    table(rows)
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    with connect(args) as c:
        items = c.list_images()
    rows = [["IMAGE", "TAG", "IMAGE ID", "SIZE"]]
    for it in items:
        names = [t.rsplit(":", 1) for t in it.repo_tags] or [["<none>", "<none>"]]
        for repo, tag in names:
            rows.append([repo, tag, short(it.id), _size(it.size)])
    table(rows)
    return 0


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def cmd_inspect(args: argparse.Namespace) -> int:
    import grpc

    with connect(args) as c:
        for fetch in (lambda: c.container_status(args.id, verbose=True),
                      lambda: c.sandbox_status(args.id, verbose=True)):
            try:
                resp = fetch()
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                    continue
                raise
            out = _to_json(resp)
            out["info"] = {k: json.loads(v) for k, v in resp.info.items()}
            print(json.dumps(out, indent=2))
            return 0
        img = c.image_status(args.id, verbose=True)
        if img.HasField("image"):
            out = _to_json(img)
            out["info"] = {k: json.loads(v) for k, v in img.info.items()}
            print(json.dumps(out, indent=2))
            return 0
    raise Failure("NOT_FOUND", f"no container, pod sandbox or image {args.id!r}",
                  "list them with `timonel runtime ps -a`, `pods` or `images`", EXIT_API)


def cmd_pull(args: argparse.Namespace) -> int:
    from timonel.node_agent.runtime.api import runtime_pb2 as pb

    auth = None
    if args.creds:
        user, _, password = args.creds.partition(":")
        auth = pb.AuthConfig(username=user, password=password)
    with connect(args) as c:
        ref = c.pull_image(args.image, auth)
    print(f"Image is up to date for {ref}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    with connect(args) as c:
        images = c.import_image(os.path.abspath(args.file), args.name)
    for img in images:
        print(f"imported {', '.join(img.repo_tags) or '<no name>'} {img.id}")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    import grpc

    code = 0
    with connect(args) as c:
        for ident in args.ids:
            try:
                st = c.container_status(ident).status
                c.remove_container(st.id)
                print(st.id)
                continue
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                    raise
            try:
                sid = c.sandbox_status(ident).status.id
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                    raise
                print(f"error: no container or pod sandbox {ident!r}", file=sys.stderr)
                code = EXIT_API
                continue
            c.stop_sandbox(sid)
            c.remove_sandbox(sid)
            print(sid)
    return code


def cmd_rmi(args: argparse.Namespace) -> int:
    with connect(args) as c:
        for image in args.images:
            if not c.image_status(image).HasField("image"):
                print(f"error: no image {image!r}", file=sys.stderr)
                return EXIT_API
            c.remove_image(image)
            print(f"deleted {image}")
    return 0


if __name__ == "__main__" and sys.argv[1:2] == [_DAEMON]:
    sys.exit(_daemon_main(sys.argv[2], sys.argv[3]))
