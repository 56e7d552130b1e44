"""User-facing failures: a stable reason, what happened, what to do, an exit code.

Every command turns what it cannot do into a `Failure`; `main` prints it and
exits with its code, never with a traceback.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

# Stable exit codes, documented in the README.
EXIT_USAGE = 2
EXIT_CONFIG = 3  # bad flags, files or data directory
EXIT_PERMISSION = 4  # needs root or a permission
EXIT_UNAVAILABLE = 5  # a dependency (etcd, the API server, a port) is not there
EXIT_API = 6  # the API server refused the request


@dataclass
class Failure(Exception):
    reason: str  # e.g. "ETCD_START": stable, for scripts
    message: str
    advice: str = ""
    exit_code: int = EXIT_CONFIG

    def __str__(self) -> str:
        return self.message

    def print(self) -> None:
        print(f"error [{self.reason}]: {self.message}", file=sys.stderr)
        if self.advice:
            print(f"  advice: {self.advice}", file=sys.stderr)
