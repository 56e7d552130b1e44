"""The DaemonSet controller.

    run(ctx)   # until cancelled
"""

from __future__ import annotations

import logging

from timonel.controller.context import ControllerContext
from timonel.controller.daemonset.controller import DaemonSetController

log = logging.getLogger(__name__)

__all__ = ["run"]


async def run(ctx: ControllerContext) -> None:
    ctl = DaemonSetController(ctx)
    ctl.register()
    ctx.informers.start()
    for inf in (ctl.dss, ctl.pods, ctl.nodes, ctl.revisions):
        await inf.wait_synced()
    log.info("daemonset controller started")
    await ctl.run()
