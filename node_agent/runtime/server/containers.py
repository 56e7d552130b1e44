"""Containers over CRI: create in a sandbox from an image, start, stop, remove, exec, stats.

CreateContainer records the container only once the ContainerManager has
made it: a container the manager knows but the records do not is a create
that never finished, and recovery removes it. Creates in one sandbox are
serialized by the sandbox's lock, which also keeps names unique there.
Calls block; the servicer runs them in threads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import time
from collections.abc import Callable

from ..api import runtime_pb2 as pb
from ..container import ContainerError, ExecProcess, ExecResult, NotFoundError
from ..container.state import EXITED, RUNNING
from ..images import ImageNotFoundError
from . import messages, specs
from .errors import AlreadyExists, DeadlineExceeded, FailedPrecondition, InvalidArgument, NotFound
from .records import CREATED, ContainerRecord, new_id
from .runtime import Runtime

log = logging.getLogger(__name__)

_FOREVER = 10 * 365 * 86400.0
_OUTPUT_LIMIT = 16 << 20
_DRAIN_AFTER_EXIT = 2.0
_SLICE = 0.5


def _record(rt: Runtime, ref: str) -> ContainerRecord:
    rec = rt.records.container(ref)
    if rec.phase != CREATED:
        raise NotFound(f"container {ref!r} not found (it is still being created)")
    return rec


def create_container(rt: Runtime, req: pb.CreateContainerRequest) -> str:
    cfg = req.config
    if not cfg.metadata.name:
        raise InvalidArgument("CreateContainer: config.metadata.name is empty; give the container's name")
    if not cfg.image.image:
        raise InvalidArgument(f"container {cfg.metadata.name}: config.image.image is empty; give an image")
    sb = rt.records.sandbox(req.pod_sandbox_id)
    sb_cfg = messages.sandbox_config(sb)
    with rt.sandbox_lock(sb.id):
        if not rt.sandbox_ready(sb):
            raise FailedPrecondition(f"pod sandbox {sb.id} is not ready (stopped, or its create failed); "
                                     "run a new sandbox for new containers")
        try:
            image = rt.images.store.resolve(cfg.image.image)
        except ImageNotFoundError:
            raise NotFound(f"image {cfg.image.image!r} is not on this node; pull or import it first") from None
        name = f"{cfg.metadata.name}_{cfg.metadata.attempt}"
        taken = next((c for c in rt.records.containers_of(sb.id) if c.name == name), None)
        if taken is not None:
            raise AlreadyExists(f"container name {cfg.metadata.name!r} attempt {cfg.metadata.attempt} "
                                f"is in use by container {taken.id} in this sandbox; remove it first "
                                "or raise metadata.attempt")
        rec = ContainerRecord(id=new_id(), sandbox_id=sb.id, name=name, config=messages.to_dict(cfg),
                              created_at=time.time_ns(), image_id=image.id,
                              image_ref=image.repo_digests[0] if image.repo_digests else image.id)
        messages.remember_container_config(rec, cfg)
        try:
            _create(rt, rec, cfg, sb_cfg, image.id)
        except BaseException:
            try:
                destroy(rt, rec.id)
            except Exception as e:
                log.error("container=%s msg=cleanup after a failed create failed error=%s", rec.id, e)
            raise
    log.info("container=%s name=%s sandbox=%s image=%s msg=created", rec.id, name, sb.id, image.id)
    return rec.id


def _create(rt: Runtime, rec: ContainerRecord, cfg: pb.ContainerConfig, sb_cfg: pb.PodSandboxConfig,
            image_id: str) -> None:
    layers = rt.images.store.rootfs_layers(image_id)
    image_cfg = rt.image_config(image_id)
    spec = specs.container_spec(rec.id, cfg, image_cfg, layers, sb_cfg.log_directory,
                                      sb_cfg.linux.security_context.privileged)
    oom_score_adj = cfg.linux.resources.oom_score_adj
    if not -1000 <= oom_score_adj <= 1000:
        raise InvalidArgument(f"container {cfg.metadata.name}: oom_score_adj {oom_score_adj} is not in "
                              "-1000..1000")
    spec = rt.sandboxes.container_spec(rec.sandbox_id, spec)
    try:
        st = rt.containers.create(spec)
    except ContainerError as e:
        if "executable file not found" in str(e) or "not found in the image's" in str(e):
            raise InvalidArgument(str(e)) from None
        raise
    if oom_score_adj and st.pid:
        set_oom_score_adj(st.pid, oom_score_adj)  # on PID 1 before it execs; its children inherit it
    rec.phase = CREATED
    rt.records.save_container(rec)


def set_oom_score_adj(pid: int, value: int) -> None:
    """Write `value`, or without CAP_SYS_RESOURCE (which going below the inherited minimum
    needs; e.g. this VM, a user namespace) the lowest value allowed: our own, as
    containerd's restrictOOMScoreAdj does, rather than failing the container."""
    path = f"/proc/{pid}/oom_score_adj"
    try:
        with open(path, "w") as f:
            f.write(str(value))
        return
    except PermissionError:
        with open("/proc/self/oom_score_adj") as f:
            own = int(f.read())
        if value >= own:
            raise
    log.warning("pid=%d oom_score_adj=%d msg=lower than ours needs CAP_SYS_RESOURCE; using ours=%d",
                pid, value, own)
    with open(path, "w") as f:
        f.write(str(own))


def start_container(rt: Runtime, ref: str) -> None:
    rec = _record(rt, ref)
    rt.containers.start(rec.id)
    log.info("container=%s msg=started", rec.id)


def stop_container(rt: Runtime, ref: str, timeout: int) -> None:
    rec = _record(rt, ref)
    if timeout < 0:
        raise InvalidArgument(f"StopContainer: timeout {timeout} is negative")
    if rt.containers.status(rec.id).state == EXITED:
        return  # CRI: stopping a stopped container is not an error
    rt.containers.stop(rec.id, float(timeout))


def remove_container(rt: Runtime, ref: str) -> None:
    rec = rt.records.find_container(ref)
    if rec is None:
        return  # CRI: removing a removed container is not an error
    destroy(rt, rec.id)
    log.info("container=%s msg=removed", rec.id)


def destroy(rt: Runtime, cid: str) -> None:
    """Kill and remove the container, then forget it; idempotent."""
    try:
        rt.containers.remove(cid)
    except NotFoundError:
        pass
    rt.records.drop_container(cid)


def kill_quietly(rt: Runtime, cid: str) -> None:
    try:
        if rt.containers.status(cid).state != EXITED:
            rt.containers.stop(cid, 0)
    except NotFoundError:
        pass
    except ContainerError as e:
        log.error("container=%s msg=cannot kill error=%s", cid, e)


# -- queries --

def container_status(rt: Runtime, ref: str, verbose: bool) -> pb.ContainerStatusResponse:
    rec = _record(rt, ref)
    st = rt.containers.status(rec.id)
    resp = pb.ContainerStatusResponse(status=messages.container_status(rec, st))
    if verbose:
        resp.info["info"] = json.dumps({
            "pid": st.pid or 0, "sandboxID": rec.sandbox_id, "stateDir": rt.containers.state_dir(rec.id),
            "config": rec.config})
    return resp


def list_containers(rt: Runtime, f: pb.ContainerFilter | None) -> list[pb.Container]:
    with rt.records.lock:
        recs = sorted((c for c in rt.records.containers.values() if c.phase == CREATED),
                      key=lambda c: c.created_at)
    if f is not None:
        # On the stored JSON, before parsing: the agent lists one pod's containers at a
        # time, and parsing every container's config per call was O(pods^2) in a burst.
        recs = [rec for rec in recs if rec.id.startswith(f.id) and rec.sandbox_id.startswith(f.pod_sandbox_id)
                and all((rec.config.get("labels") or {}).get(k) == v for k, v in f.label_selector.items())]
    statuses = rt.containers.statuses(rec.id for rec in recs)
    out = []
    for rec in recs:
        st = statuses.get(rec.id)
        if st is None:
            continue
        msg = messages.container(rec, st)
        if f is not None and f.HasField("state") and f.state.state != msg.state:
            continue
        out.append(msg)
    return out


def wait_container(rt: Runtime, ref: str, timeout: int) -> pb.ContainerStatus:
    rec = _record(rt, ref)
    if timeout < 0:
        raise InvalidArgument(f"WaitContainer: timeout {timeout} is negative")
    deadline = time.monotonic() + (timeout or _FOREVER)
    while True:  # in slices, so a stopping runtime is not held up by a long wait
        st = rt.containers.wait(rec.id, min(max(deadline - time.monotonic(), 0.0), _SLICE))
        if st.state == EXITED or time.monotonic() >= deadline:
            return messages.container_status(rec, st)
        rt.check_not_stopping()


async def wait_container_async(rt: Runtime, ref: str, timeout: int) -> pb.ContainerStatus:
    """wait_container without a thread: the event loop watches the container's exit descriptor."""
    rec = _record(rt, ref)
    if timeout < 0:
        raise InvalidArgument(f"WaitContainer: timeout {timeout} is negative")
    fd = rt.containers.exit_fd(rec.id)
    if fd is not None:
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not exited.done():
                exited.set_result(None)
        loop.add_reader(fd, readable)
        try:
            deadline = time.monotonic() + (timeout or _FOREVER)
            while not exited.done() and time.monotonic() < deadline:  # in slices, as wait_container
                await asyncio.wait([exited], timeout=min(deadline - time.monotonic(), _SLICE))
                if not exited.done():
                    rt.check_not_stopping()
        finally:
            loop.remove_reader(fd)
            os.close(fd)
    return messages.container_status(rec, rt.containers.status(rec.id))


def reopen_log(rt: Runtime, ref: str) -> None:
    rt.containers.reopen_log(_record(rt, ref).id)


def stats(rt: Runtime, ref: str) -> pb.ContainerStats:
    rec = _record(rt, ref)
    try:
        s = rt.containers.stats(rec.id)
    except FileNotFoundError:
        raise FailedPrecondition(f"container {rec.id} has no cgroup any more; no stats") from None
    return messages.stats(rec, s)


# -- exec --

def _running(rt: Runtime, ref: str) -> str:
    rec = _record(rt, ref)
    state = rt.containers.status(rec.id).state
    if state != RUNNING:
        raise FailedPrecondition(f"container {rec.id} is {state}; exec needs a running container")
    return rec.id


def exec_sync(rt: Runtime, ref: str, cmd: list[str], timeout: int) -> ExecResult:
    if not cmd:
        raise InvalidArgument("ExecSync: cmd is empty; give the command to run")
    if timeout < 0:
        raise InvalidArgument(f"ExecSync: timeout {timeout} is negative")
    proc = exec_process(rt, ref, cmd, tty=False, stdin=False, size=None)
    result = collect(proc, float(timeout) if timeout else _FOREVER, rt.stopping.is_set)
    if result.timed_out:
        raise DeadlineExceeded(f"command {cmd[0]!r} timed out after {timeout}s and was killed")
    return result


def collect(proc: ExecProcess, timeout: float, stopping: Callable[[], bool] = lambda: False,
            limit: int = _OUTPUT_LIMIT) -> ExecResult:
    """Output (each stream capped at `limit`, as CRI asks) and exit code of a non-tty process.

    Ends `_DRAIN_AFTER_EXIT` seconds after the process exits even if the output
    stays open (a background child may hold it forever); kills it at `timeout`,
    or when `stopping()` (the runtime is going down and must not wait for it).
    """
    fd_out, fd_err = proc.stdout, proc.stderr  # close() forgets them
    out: dict[int, bytearray] = {fd: bytearray() for fd in (fd_out, fd_err) if fd is not None}
    open_fds = list(out)
    deadline = time.monotonic() + timeout
    timed_out, code, exited_at = False, None, 0.0
    try:
        while open_fds:
            now = time.monotonic()
            if code is None:
                code = proc.wait(0)
                exited_at = now
            if code is not None and now - exited_at > _DRAIN_AFTER_EXIT:
                break
            if code is None and not timed_out and (now >= deadline or stopping()):
                timed_out = True
                proc.kill()
            ready, _, _ = select.select(open_fds, [], [], 0.05)
            for fd in ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    open_fds.remove(fd)
                elif len(out[fd]) < limit:
                    out[fd] += chunk[: limit - len(out[fd])]
        if code is None:
            code = proc.wait(max(deadline - time.monotonic(), 0.0) if not timed_out else 10.0)
        if code is None:
            timed_out = True
            proc.kill()
            code = proc.wait(10.0)
    finally:
        if code is not None:
            proc.close()  # else its helper still reports: leave its socket alone
    return ExecResult(code if code is not None else 255, bytes(out.get(fd_out or -1, b"")),
                      bytes(out.get(fd_err or -1, b"")), timed_out)


def exec_process(rt: Runtime, ref: str, cmd: list[str], tty: bool, stdin: bool,
                 size: tuple[int, int] | None) -> ExecProcess:
    if not cmd:
        raise InvalidArgument("Exec: cmd is empty; give the command to run")
    cid = _running(rt, ref)
    try:
        return rt.containers.exec(cid, cmd, tty=tty, stdin=stdin, tty_size=size)
    except ContainerError:
        raise
    except RuntimeError as e:
        raise _exec_error(cid, e) from None


def _exec_error(cid: str, e: RuntimeError) -> Exception:
    """The exec helper's report ("exec failed: ...") as a status: a bad command, or a gone container."""
    msg = f"exec in container {cid}: {e}"
    if "executable file not found" in str(e) or "not found in the image's" in str(e):
        return InvalidArgument(msg)
    return FailedPrecondition(msg)
