"""Pod CIDR allocation for nodes (upstream's node IPAM range allocator).

A node without `spec.podCIDR` gets the next free subnet of the cluster CIDR
(written to `spec.podCIDR` and `spec.podCIDRs`); a deleted node's subnet
goes back to the pool. One worker, so two nodes can never race for one
subnet; allocation starts only after the node cache is filled, so every
subnet already handed out is known first.
"""

from __future__ import annotations

import logging

from timonel.api import meta
from timonel.api.client import Informer, WorkQueue, run_workers
from timonel.api.errors import ApiError
from timonel.controller.context import ControllerContext
from timonel.controller.node_lifecycle.cidr import CIDRExhaustedError, CIDRSet, parse_cluster_cidr
from timonel.controller.node_lifecycle.nodeutil import NODES, Obj

log = logging.getLogger(__name__)


def node_cidrs(node: Obj) -> list[str]:
    spec = node.get("spec") or {}
    cidrs = [c for c in spec.get("podCIDRs") or [] if c]
    if not cidrs and spec.get("podCIDR"):
        cidrs = [spec["podCIDR"]]
    return cidrs


class CIDRAllocator:
    def __init__(self, ctx: ControllerContext, nodes: Informer) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.nodes = nodes
        self.cidrs = CIDRSet(parse_cluster_cidr(ctx.options.cluster_cidr,
                                                ctx.options.node_cidr_mask_size),
                             ctx.options.node_cidr_mask_size)
        self.queue: WorkQueue[str] = WorkQueue(name="node-ipam")

    def register(self) -> None:
        self.nodes.add_handler(self._node_changed, lambda old, new: self._node_changed(new),
                               self._node_deleted)

    def _node_changed(self, node: Obj) -> None:
        if not node_cidrs(node):
            self.queue.add(meta.name_of(node))

    def _node_deleted(self, node: Obj) -> None:
        for cidr in node_cidrs(node):
            # Another node may claim the same subnet (set by hand): keep it then.
            if not any(cidr in node_cidrs(n) for n in self.nodes.list()):
                self.cidrs.release(cidr)
                log.info("released pod CIDR node=%s cidr=%s", meta.name_of(node), cidr)

    async def run(self) -> None:
        await self.nodes.wait_synced()
        for node in self.nodes.list():
            for cidr in node_cidrs(node):
                self.cidrs.occupy(cidr)
        await run_workers(self.queue, self.sync, 1)

    async def sync(self, name: str) -> None:
        node = self.nodes.get("", name)
        if node is None:
            return
        existing = node_cidrs(node)
        if existing:
            for cidr in existing:
                self.cidrs.occupy(cidr)
            return
        try:
            cidr = self.cidrs.allocate()
        except CIDRExhaustedError as e:
            log.error("no pod CIDR for node node=%s err=%s", name, e)
            await self.ctx.recorder.event(node, "Normal", "CIDRNotAvailable",
                                          f"Node {name} status is now: CIDRNotAvailable")
            return
        patch = {"metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                 "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}
        try:
            await self.client.patch(NODES, "", name, patch, patch_type="merge")
        except ApiError as e:
            self.cidrs.release(cidr)
            if e.code == 404:
                return
            if e.code == 409:
                fresh = await self.client.get(NODES, "", name)
                if node_cidrs(fresh):
                    for c in node_cidrs(fresh):
                        self.cidrs.occupy(c)
                    return
            raise
        log.info("allocated pod CIDR node=%s cidr=%s", name, cidr)
