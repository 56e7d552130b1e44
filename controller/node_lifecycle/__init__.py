"""The node lifecycle controller: node health, taints, taint eviction,
orphaned pods and pod CIDRs (upstream splits these over the nodelifecycle,
taint-eviction, podgc and nodeipam controllers; here they share one entry).

    run(ctx)   # until cancelled
"""

from __future__ import annotations

import asyncio
import logging

from timonel.controller.context import ControllerContext
from timonel.controller.node_lifecycle.eviction import TaintEvictor
from timonel.controller.node_lifecycle.health import HealthMonitor
from timonel.controller.node_lifecycle.ipam import CIDRAllocator
from timonel.controller.node_lifecycle.nodeutil import (
    LEASE_NAMESPACE,
    LEASES,
    NODES,
    PODS,
    ensure_pod_node_index,
)
from timonel.controller.node_lifecycle.podgc import OrphanPodGC

log = logging.getLogger(__name__)

__all__ = ["run"]


async def run(ctx: ControllerContext) -> None:
    nodes = ctx.informers.informer(NODES)
    pods = ctx.informers.informer(PODS)
    leases = ctx.informers.informer(LEASES, namespace=LEASE_NAMESPACE)
    ensure_pod_node_index(pods)
    monitor = HealthMonitor(ctx, nodes, leases, pods)
    evictor = TaintEvictor(ctx, nodes, pods)
    gc = OrphanPodGC(ctx, nodes, pods)
    ipam = None
    if ctx.options.extra.get("allocate_node_cidrs", True):
        try:
            ipam = CIDRAllocator(ctx, nodes)
        except ValueError as e:
            log.error("pod CIDR allocation is off: %s", e)
    monitor.register()
    evictor.register()
    if ipam is not None:
        ipam.register()
    ctx.informers.start()
    for inf in (nodes, pods, leases):
        await inf.wait_synced()
    log.info("node lifecycle controller started grace=%.1fs period=%.1fs",
             ctx.options.node_monitor_grace_period, ctx.options.node_monitor_period)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(monitor.run())
        tg.create_task(evictor.run())
        tg.create_task(gc.run())
        if ipam is not None:
            tg.create_task(ipam.run())
