"""hostPath volumes: upstream's type checks (and creation for the *OrCreate types).

Admission decides whether a pod may use a host path at all; the agent only
checks what is there against `type` and lets the runtime bind-mount it.
"""

from __future__ import annotations

import logging
import os
import stat

from .envvars import ConfigError

log = logging.getLogger(__name__)

TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice",
         "BlockDevice")


def _mode(path: str) -> int | None:
    try:
        return os.stat(path).st_mode
    except OSError:
        return None


def check_host_path(path: str, kind: str) -> None:
    """Raise ConfigError with upstream's message when `path` is not of type `kind`."""
    mode = _mode(path)
    if kind == "":
        # As containerd: a missing path of no declared type becomes a directory.
        if mode is None:
            os.makedirs(path, mode=0o755, exist_ok=True)
        return
    if kind == "DirectoryOrCreate" and mode is None:
        try:
            os.makedirs(path, mode=0o755, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"hostPath type check failed: cannot create directory {path}: {e.strerror}") from None
        log.info("hostPath directory created path=%s", path)
        return
    if kind == "FileOrCreate" and mode is None:
        try:
            # The parent is not created, as upstream.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
        except OSError as e:
            raise ConfigError(f"hostPath type check failed: cannot create file {path}: {e.strerror}") from None
        log.info("hostPath file created path=%s", path)
        return
    checks = {
        "DirectoryOrCreate": (stat.S_ISDIR, "a directory"), "Directory": (stat.S_ISDIR, "a directory"),
        "FileOrCreate": (stat.S_ISREG, "a file"), "File": (stat.S_ISREG, "a file"),
        "Socket": (stat.S_ISSOCK, "a socket file"), "CharDevice": (stat.S_ISCHR, "a character device"),
        "BlockDevice": (stat.S_ISBLK, "a block device"),
    }
    if kind not in checks:
        raise ConfigError(f"{kind} is an invalid volume type")
    test, what = checks[kind]
    if mode is None or not test(mode):
        raise ConfigError(f"hostPath type check failed: {path} is not {what}")
