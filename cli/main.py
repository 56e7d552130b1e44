"""The `timonel` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from timonel.cli import (
    agent_cmd,
    controller_manager_cmd,
    image_cmd,
    runtime_cmd,
    scheduler_cmd,
    server_cmd,
    up_cmd,
)
from timonel.cli.failures import EXIT_USAGE, Failure


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="timonel", description="A small Kubernetes-style orchestrator on its own runtime.")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    server_cmd.add_parser(sub)
    controller_manager_cmd.add_parser(sub)
    scheduler_cmd.add_parser(sub)
    runtime_cmd.add_parser(sub)
    agent_cmd.add_parser(sub)
    up_cmd.add_parser(sub)
    image_cmd.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    level = getattr(logging, os.environ.get("TIMONEL_LOG_LEVEL", ""), level)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except Failure as f:
        f.print()
        return f.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
