"""The controller manager: every control loop in one process, sharing one
informer per resource (DESIGN.md §3 "Controllers").

With leader election the loops run only while this process holds the Lease
`kube-system/kube-controller-manager`; several managers can run and one
works. A manager that loses the Lease stops every loop and its informers,
then campaigns again with fresh ones: level-triggered loops converge from
whatever they find, so a new leader needs no hand-over.

A loop that fails is logged and restarted after a backoff; the others keep
running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import Iterable

from timonel.api.client import Backoff, Client, InformerFactory, run_with_leader_election
from timonel.api.client.events import EventRecorder
from timonel.controller.context import Controller, ControllerContext, ControllerOptions

log = logging.getLogger(__name__)

LEASE_NAME = "kube-controller-manager"
LEASE_NAMESPACE = "kube-system"

# Event source components as upstream names them; others are "<name>-controller".
COMPONENTS = {"nodelifecycle": "node-controller", "garbagecollector": "garbage-collector"}

# Leader election timings (upstream's defaults); `options.extra` may override
# them under these keys (tests use short ones).
LEADER_TIMING = {"lease_duration": 15.0, "renew_deadline": 10.0, "retry_period": 2.0}


def select_controllers(requested: Iterable[str] | None, known: Iterable[str],
                       defaults: Iterable[str] | None = None) -> list[str]:
    """Names to run, from upstream's `--controllers` syntax: `*` for the
    defaults, `name` to add one, `-name` to leave one out. Raises ValueError
    naming what is unknown."""
    known = list(known)
    defaults = list(known if defaults is None else defaults)
    if requested is None:
        return defaults
    items = [r.strip() for r in requested if r.strip()]
    unknown = [r.lstrip("-") for r in items if r != "*" and r.lstrip("-") not in known]
    if unknown:
        raise ValueError(f"unknown controller(s) {', '.join(unknown)} in --controllers: known "
                         f"are {', '.join(sorted(known))} (and '*' for all, '-name' to "
                         "leave one out)")
    chosen = list(defaults) if "*" in items else []
    for item in items:
        if item == "*":
            continue
        if item.startswith("-"):
            chosen = [c for c in chosen if c != item[1:]]
        elif item not in chosen:
            chosen.append(item)
    return chosen


async def _supervise(name: str, fn: Controller, ctx: ControllerContext) -> None:
    backoff = Backoff(initial=1.0, factor=2.0, cap=60.0)
    while True:
        try:
            await fn(ctx)
            log.warning("controller returned, restarting controller=%s", name)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("controller failed, restarting controller=%s", name)
        await asyncio.sleep(backoff.next())


async def run_controllers(client: Client, options: ControllerOptions, names: list[str],
                          identity: str = "") -> None:
    """Run the named controllers over one fresh InformerFactory until cancelled."""
    from timonel.controller.registry import CONTROLLERS

    factory = InformerFactory(client)
    factory.start()
    tasks: list[asyncio.Task[None]] = []
    host = identity or socket.gethostname()
    try:
        for name in names:
            recorder = EventRecorder(client, COMPONENTS.get(name, f"{name}-controller"), host)
            ctx = ControllerContext(client=client, informers=factory, recorder=recorder,
                                    options=options)
            tasks.append(asyncio.create_task(_supervise(name, CONTROLLERS[name], ctx),
                                             name=f"controller {name}"))
        log.info("controllers started names=%s", ",".join(names))
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await factory.stop()


async def run_controller_manager(client: Client, options: ControllerOptions | None = None, *,
                                 controllers: list[str] | None = None, leader_elect: bool = False,
                                 identity: str = "") -> None:
    """Run the controller manager until cancelled. `controllers` uses the
    `--controllers` syntax (None: all); with `leader_elect`, loops run only
    while this process (`identity`, default host name plus a UUID) holds the
    Lease kube-system/kube-controller-manager."""
    from timonel.controller.registry import CONTROLLERS, DEFAULT_CONTROLLERS

    options = options or ControllerOptions()
    names = select_controllers(controllers, CONTROLLERS, DEFAULT_CONTROLLERS)
    if not leader_elect:
        await run_controllers(client, options, names, identity)
        return
    identity = identity or f"{socket.gethostname()}_{uuid.uuid4()}"
    timing = {k: float(options.extra.get(f"leader_elect_{k}", v))  # type: ignore[arg-type]
              for k, v in LEADER_TIMING.items()}
    while True:
        log.info("campaigning for leadership lease=%s/%s identity=%s", LEASE_NAMESPACE,
                 LEASE_NAME, identity)
        await run_with_leader_election(
            client, LEASE_NAME, LEASE_NAMESPACE, identity,
            lambda: run_controllers(client, options, names, identity),
            lease_duration=timing["lease_duration"], renew_deadline=timing["renew_deadline"],
            retry_period=timing["retry_period"])
        log.warning("leadership lost, controllers stopped; campaigning again identity=%s",
                    identity)
