"""What every controller gets: the client, the shared informers, an event
recorder and the manager's options.

A controller is a plain `async def run(ctx: ControllerContext) -> None` that
runs until cancelled: it registers handlers on shared informers (one
informer per resource for the whole manager), feeds keys into its own
`WorkQueue`, and reconciles each key level-triggered, reading from the
informer caches and writing through `ctx.client`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from timonel.api.client import Client, InformerFactory
from timonel.api.client.events import EventRecorder


@dataclass
class ControllerOptions:
    # Workers per controller (parallel reconciles of different keys).
    workers: int = 5
    # Node lifecycle: a node whose Lease is older than this is NotReady/Unknown.
    node_monitor_grace_period: float = 40.0
    node_monitor_period: float = 5.0
    # A node that never posted a Ready condition gets this long (upstream 60 s).
    node_startup_grace_period: float = 60.0
    # Default tolerationSeconds for the unreachable/not-ready NoExecute taints
    # is set on pods by admission (300 s); pods without one are evicted at once.
    cluster_cidr: str = "10.244.0.0/16"
    node_cidr_mask_size: int = 24
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class ControllerContext:
    client: Client
    informers: InformerFactory
    recorder: EventRecorder
    options: ControllerOptions = field(default_factory=ControllerOptions)


Controller = Callable[[ControllerContext], Awaitable[None]]
