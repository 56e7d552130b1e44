"""Every controller the manager can run, by the name `--controllers` uses
(upstream's names: `replicaset`, `deployment`, `garbagecollector`, ...).

Adding a controller is one import and one row. Each value is an
`async def run(ctx: ControllerContext) -> None` (see context.py).
"""

from __future__ import annotations

from timonel.controller import (
    daemonset,
    deployment,
    garbage_collector,
    job,
    namespace,
    node_lifecycle,
    replicaset,
    serviceaccount,
    statefulset,
)
from timonel.controller.context import Controller

CONTROLLERS: dict[str, Controller] = {
    "replicaset": replicaset.run,
    "deployment": deployment.run,
    "garbagecollector": garbage_collector.run,
    "namespace": namespace.run,
    "serviceaccount": serviceaccount.run,
    "nodelifecycle": node_lifecycle.run,
    "job": job.run,
    "daemonset": daemonset.run,
    "statefulset": statefulset.run,
}

# Controllers that run unless `--controllers` names them: all of them, as
# upstream's "*" (upstream's few default-off controllers are not built here).
DEFAULT_CONTROLLERS: tuple[str, ...] = tuple(CONTROLLERS)
