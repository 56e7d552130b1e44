"""Container lifecycle hooks: postStart after the start, preStop before the stop.

As the kubelet: postStart runs right after the runtime started the process
and holds the container's management until it ends; if it fails the
container is killed (event FailedPostStartHook) and restarted per the
restart policy. preStop runs inside the grace period before SIGTERM; what it
used is taken from the grace left for the stop (at least 2 s), and a failure
only raises FailedPreStopHook. Like upstream, `tcpSocket` is accepted by the
API but is not a runnable hook, and the events name no output (a hook's
output may hold secrets); the output goes to the agent's log and, for
postStart, into the container's waiting message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from timonel.node_agent.runtime.client import RuntimeClient

from . import handlers
from .handlers import HandlerError, Target

log = logging.getLogger(__name__)

Obj = dict[str, Any]
# The least time a container is given to stop after its preStop hook (upstream).
MIN_GRACE_SECONDS = 2


def _pod_ref(pod: Obj) -> str:
    md = pod["metadata"]
    return f"{md['name']}_{md.get('namespace')}({md['uid']})"


async def run_hook(runtime: RuntimeClient, pod: Obj, c: Obj, cid: str, handler: Obj,
                   target: Callable[[], Awaitable[Target]], timeout: float | None) -> str | None:
    """Run one hook handler against the container: None when it succeeded, else why not.

    `timeout` None: no limit (postStart, as upstream)."""
    name = str(c["name"])
    kind = handlers.handler_kind(handler)
    if kind == "exec":
        command = [str(x) for x in (handler["exec"].get("command") or [])]
        shown = "[" + " ".join(command) + "]"
        try:
            limit = 0 if timeout is None else max(1, int(timeout))
            resp = await asyncio.to_thread(runtime.exec_sync, cid, command, limit)
        except grpc.RpcError as e:
            return (f"Exec lifecycle hook ({shown}) for Container \"{name}\" in Pod \"{_pod_ref(pod)}\" "
                    f"failed - error: {e.details()}, message: \"\"")  # type: ignore[attr-defined]
        if resp.exit_code != 0:
            output = (resp.stdout + resp.stderr).decode("utf-8", "replace")
            return (f"Exec lifecycle hook ({shown}) for Container \"{name}\" in Pod \"{_pod_ref(pod)}\" "
                    f"failed - error: command '{' '.join(command)}' exited with {resp.exit_code}: , "
                    f"message: {output!r}")
        return None
    if kind == "httpGet":
        action = handler["httpGet"]
        try:
            code, out = await handlers.http_get(await target(), action, c, timeout or 3600.0,
                                                handlers.HOOK_AGENT)
        except (HandlerError, OSError) as e:
            code, out = None, handlers.Outcome(False, str(e))
        if code is not None:  # any answer will do for a hook (upstream)
            return None
        return (f"HTTP lifecycle hook ({action.get('path') or '/'}) for Container \"{name}\" in Pod "
                f"\"{_pod_ref(pod)}\" failed - error: {out.message}")
    if kind == "sleep":
        seconds = float(handler["sleep"].get("seconds") or 0)
        await asyncio.sleep(seconds if timeout is None else min(seconds, timeout))
        return None
    return f"Cannot run handler: invalid handler: {kind or 'no action'} is not a runnable lifecycle hook"


async def post_start(runtime: RuntimeClient, pod: Obj, c: Obj, cid: str,
                     target: Callable[[], Awaitable[Target]]) -> str | None:
    """The container's postStart hook, if any: None when it succeeded or there is none."""
    handler = (c.get("lifecycle") or {}).get("postStart")
    if not handler:
        return None
    err = await run_hook(runtime, pod, c, cid, handler, target, None)
    if err is not None:
        log.warning("postStart hook failed pod=%s container=%s err=%s", _pod_ref(pod), c["name"], err)
    return err


async def pre_stop(runtime: RuntimeClient, pod: Obj, c: Obj, cid: str,
                   target: Callable[[], Awaitable[Target]], grace: int) -> tuple[int, str | None]:
    """Run the preStop hook within `grace` s: (the grace left for the stop, the failure if any)."""
    handler = (c.get("lifecycle") or {}).get("preStop")
    if not handler or grace <= 0:  # no time to run it (upstream skips it too)
        return grace, None
    started = time.monotonic()
    try:
        err = await asyncio.wait_for(run_hook(runtime, pod, c, cid, handler, target, float(grace)), grace)
    except TimeoutError:
        err = None
        log.info("preStop hook did not finish within the grace period pod=%s container=%s grace=%ss",
                 _pod_ref(pod), c["name"], grace)
    if err is not None:
        log.warning("preStop hook failed pod=%s container=%s err=%s", _pod_ref(pod), c["name"], err)
    left = grace - int(time.monotonic() - started)
    return max(left, MIN_GRACE_SECONDS), err
