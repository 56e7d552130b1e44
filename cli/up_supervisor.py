"""The child processes of `timonel up`: one `timonel` subcommand each, logging to a file.

Each child runs in its own session, so a Ctrl-C in the terminal reaches only
`up`, which then stops the children in its own order (agent, pods, runtime,
server) instead of all at once.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str  # "server", "runtime", "agent": what the user reads in messages
    args: list[str]  # after `timonel -v`
    log_path: str
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "timonel.cli.main", "-v", *self.args]

    def start(self) -> None:
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        with open(self.log_path, "ab") as out:
            out.write(f"--- timonel up: starting {' '.join(self.argv())}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.argv(), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        log.info("child started name=%s pid=%d log=%s", self.name, self.proc.pid, self.log_path)

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def exit_code(self) -> int | None:
        """None while running (or never started)."""
        return None if self.proc is None else self.proc.poll()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("child did not stop in time, killing name=%s pid=%d grace=%.0fs",
                            self.name, self.proc.pid, grace)
                self.proc.kill()
                self.proc.wait()
        log.info("child stopped name=%s code=%s", self.name, self.proc.returncode)
        return self.proc.returncode

    def tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 16384))
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
