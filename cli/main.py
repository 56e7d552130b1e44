"""The `timonel` command."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from timonel.api.process_memory import shrink_tls_read_buffers
from timonel.cli.failures import EXIT_USAGE, Failure

# Command name -> the module under timonel.cli that adds its parser, in the order help lists them.
# Only the command being run is imported: each module pulls in its component (the server's alone is
# ~50 MB of aiohttp, grpc, jsonschema...), and every long-running process (and whatever the runtime
# forks: its fork server, shims, their inits) would otherwise hold all of them.
COMMANDS = {
    "server": "server_cmd",
    "controller-manager": "controller_manager_cmd",
    "scheduler": "scheduler_cmd",
    "runtime": "runtime_cmd",
    "agent": "agent_cmd",
    "up": "up_cmd",
    "image": "image_cmd",
}


def _command(argv: list[str]) -> str | None:
    """The command argv names, if it names one before any top-level help flag (which lists them all)."""
    for arg in argv:
        if arg in ("-h", "--help", "--"):
            return None
        if not arg.startswith("-"):  # the top-level options (-v, -h) take no value
            return arg if arg in COMMANDS else None
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv`'s command alone, or for all of them when argv names none (help, errors)."""
    parser = argparse.ArgumentParser(
        prog="timonel", description="A small Kubernetes-style orchestrator on its own runtime.")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    command = None if argv is None else _command(argv)
    for name, module in COMMANDS.items():
        if command is None or name == command:
            importlib.import_module(f"timonel.cli.{module}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    level = getattr(logging, os.environ.get("TIMONEL_LOG_LEVEL", ""), level)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    shrink_tls_read_buffers()  # before any connection: the server alone holds ~140 of them idle
    try:
        return int(args.func(args) or 0)
    except Failure as f:
        f.print()
        return f.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
