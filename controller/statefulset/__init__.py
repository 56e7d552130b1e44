"""The StatefulSet controller.

    run(ctx)   # until cancelled
"""

from __future__ import annotations

import logging

from timonel.controller.context import ControllerContext
from timonel.controller.statefulset.controller import StatefulSetController

log = logging.getLogger(__name__)

__all__ = ["run"]


async def run(ctx: ControllerContext) -> None:
    ctl = StatefulSetController(ctx)
    ctl.register()
    ctx.informers.start()
    for inf in (ctl.sets, ctl.pods, ctl.revisions, ctl.claims):
        await inf.wait_synced()
    log.info("statefulset controller started")
    await ctl.run()
