"""`timonel image import FILE`: load an image archive into this node's runtime.

The node then has the image without any registry: pods naming it (with
`imagePullPolicy: IfNotPresent` or `Never`) start from it.
"""

from __future__ import annotations

import argparse
import os

from timonel.cli.failures import EXIT_API, EXIT_CONFIG, EXIT_UNAVAILABLE, Failure
from timonel.node_agent.runtime.daemon import DEFAULT_SOCKET


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("image", help="manage the local node's images (import)",
                       description="Images of the local node's container runtime.")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    v = verbs.add_parser("import", help="import a `docker save` archive or an OCI archive/layout",
                         description="Import a `docker save` archive, an OCI image archive or an OCI "
                                     "layout directory into the local runtime.")
    v.add_argument("file", help="the archive (a path on this machine)")
    v.add_argument("--runtime-socket", default=DEFAULT_SOCKET,
                   help="the runtime's unix socket (default: %(default)s; `timonel up` prints its own)")
    v.add_argument("--name", default="", help="one more name (repo:tag) for the image")
    v.set_defaults(func=cmd_import)
    p.set_defaults(func=_no_verb(p))


def _no_verb(p: argparse.ArgumentParser):  # type: ignore[no-untyped-def]
    def run(_args: argparse.Namespace) -> int:
        p.print_help()
        return 2
    return run


def cmd_import(args: argparse.Namespace) -> int:
    import grpc

    from timonel.node_agent.runtime.client import RuntimeClient

    path = os.path.abspath(args.file)
    if not os.path.exists(path):
        raise Failure("IMAGE_FILE", f"no such file: {args.file}",
                      "give the path of a `docker save` archive or an OCI archive", EXIT_CONFIG)
    if not os.path.exists(args.runtime_socket):
        raise Failure("NO_RUNTIME", f"no runtime socket at {args.runtime_socket}",
                      "start the cluster (sudo timonel up) or pass the --runtime-socket it printed",
                      EXIT_UNAVAILABLE)
    try:
        with RuntimeClient(args.runtime_socket, timeout=600) as rt:
            images = rt.import_image(path, args.name)
    except grpc.RpcError as e:
        code = e.code()  # type: ignore[attr-defined]
        if code == grpc.StatusCode.UNAVAILABLE:
            raise Failure("NO_RUNTIME", f"the runtime at {args.runtime_socket} does not answer: "
                          f"{e.details()}", "check that timonel up (or timonel runtime) is running",  # type: ignore[attr-defined]
                          EXIT_UNAVAILABLE) from None
        if code == grpc.StatusCode.PERMISSION_DENIED or "ermission" in str(e.details()):  # type: ignore[attr-defined]
            raise Failure("IMAGE_IMPORT", f"cannot import {args.file}: {e.details()}",  # type: ignore[attr-defined]
                          "run it as root (the runtime's socket is root's)", EXIT_API) from None
        raise Failure("IMAGE_IMPORT", f"cannot import {args.file}: {e.details()}",  # type: ignore[attr-defined]
                      "give a `docker save` archive, an OCI image archive or an OCI layout "
                      "directory", EXIT_API) from None
    for image in images:
        names = ", ".join(image.repo_tags) or "(no name)"
        print(f"imported {image.id[:19]} {names}")
    return 0
