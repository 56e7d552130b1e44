"""A container's state dir: the files that let a new runtime process find it again.

Each file has one writer, so no locking is needed:
- `spec.json`, `meta.json` (created/started times, cgroup): the runtime;
- `shim.json` (shim pid, container pid, their start times): the shim;
- `exit.json` (exit code, reason, finish time): the shim, once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CREATED, RUNNING, EXITED, UNKNOWN = "created", "running", "exited", "unknown"


def plain_data(obj: Any) -> Any:
    """A dataclass (nested in lists and dicts too) as dicts and lists, for JSON.

    `dataclasses.asdict` deep-copies every leaf on the way (~1 ms for a container's
    spec and launch plan, on every create); here new containers are made and the
    leaves, which are str/int/bool/None, are shared."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [plain_data(x) for x in obj]
    if isinstance(obj, dict):
        return {k: plain_data(v) for k, v in obj.items()}
    return obj


def write_json(path: str, data: dict[str, Any]) -> None:
    """Atomically: readers see the old file or the new one, never half of one."""
    # Per thread: the runtime's threads may write different files of one dir at once,
    # and a file written outside any lock must not share its temp file with another writer.
    tmp = f"{path}.tmp.{os.getpid()}.{threading.get_native_id()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(data).encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)


def read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            data = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def proc_start_time(pid: int) -> int | None:
    """The process' start time in clock ticks since boot: with the pid, a unique identity."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may contain spaces and parentheses: fields start after the last ')'.
    fields = stat[stat.rindex(b")") + 2:].split()
    if fields[0] == b"Z":  # a zombie has finished; it is not running any more
        return None
    return int(fields[19])


def alive(pid: int | None, start: int | None) -> bool:
    return bool(pid) and start is not None and proc_start_time(pid or 0) == start


@dataclass
class ContainerStatus:
    id: str
    state: str  # created | running | exited | unknown
    pid: int | None
    exit_code: int | None
    reason: str
    message: str
    created_at: int  # unix ns; 0 when unknown
    started_at: int
    finished_at: int
    log_path: str
    sandbox_id: str | None
    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass
class Known:
    """What a container's state files said, kept by the runtime between status calls.

    Each file has one writer and is written once (spec.json; shim.json and exit.json by the
    shim), or only by the runtime itself (meta.json: it updates this copy when it writes):
    so only the files not yet seen are read again. A status of a running container costs a
    check for exit.json and one for the shim, instead of four files parsed.
    """

    state_dir: str
    spec: dict[str, Any]
    meta: dict[str, Any]
    shim: dict[str, Any]  # {} until the shim has written it
    exit: dict[str, Any] | None  # None until the shim has written it


def load_known(state_dir: str) -> Known | None:
    spec = read_json(os.path.join(state_dir, "spec.json"))
    if spec is None:
        return None
    return Known(state_dir, spec, read_json(os.path.join(state_dir, "meta.json")) or {},
                 read_json(os.path.join(state_dir, "shim.json")) or {}, _exit(state_dir))


def known_meta(k: Known) -> dict[str, Any]:
    """meta.json as last read; read again while missing (a status asked during the create)."""
    if not k.meta:
        k.meta = read_json(os.path.join(k.state_dir, "meta.json")) or {}
    return k.meta


def _exit(state_dir: str) -> dict[str, Any] | None:
    path = os.path.join(state_dir, "exit.json")
    return read_json(path) if os.path.exists(path) else None


def shim_alive(shim: dict[str, Any]) -> bool:
    return alive(shim.get("shim_pid"), shim.get("shim_start"))


def status_of(k: Known, shim_is_alive: Callable[[dict[str, Any]], bool] = shim_alive,
              running_without_exit: bool = False) -> ContainerStatus:
    """The container's status now; reads meta.json, exit.json and shim.json only while they are missing.

    `running_without_exit`: the caller has seen that the shim has not recorded an exit and
    is alive (the pipe it closes once it has, still open): no check for either here.
    """
    known_meta(k)
    if running_without_exit and k.exit is None and k.shim.get("pid"):
        running = True
    else:
        if k.exit is None:
            k.exit = _exit(k.state_dir)
        if not k.shim.get("pid"):
            k.shim = read_json(os.path.join(k.state_dir, "shim.json")) or {}
        running = k.exit is None and bool(k.shim) and shim_is_alive(k.shim)
        if k.exit is None and not running:
            k.exit = _exit(k.state_dir)  # it may have written it between the two checks above, then ended
    exit_ = k.exit
    if exit_ is not None:
        state = EXITED
    elif running:
        state = RUNNING if k.meta.get("started_at") else CREATED
    elif not k.shim:
        state = UNKNOWN  # the shim never started (a create that died half-way)
    else:
        # The shim is gone without recording an exit: killed from outside.
        exit_ = {"exit_code": 255, "reason": "Unknown", "message": "the container's shim died",
                 "finished_at": 0}
        state = EXITED
    spec, meta = k.spec, k.meta
    return ContainerStatus(
        id=spec["id"],
        state=state,
        pid=k.shim.get("pid") if state in (RUNNING, CREATED) else None,
        exit_code=exit_["exit_code"] if exit_ else None,
        reason=exit_.get("reason", "") if exit_ else "",
        message=exit_.get("message", "") if exit_ else "",
        created_at=meta.get("created_at", 0),
        started_at=meta.get("started_at") or 0,
        finished_at=exit_.get("finished_at", 0) if exit_ else 0,
        log_path=spec.get("log_path") or os.path.join(k.state_dir, "container.log"),
        sandbox_id=spec.get("sandbox_id"),
        labels=spec.get("labels", {}),
        annotations=spec.get("annotations", {}),
    )
