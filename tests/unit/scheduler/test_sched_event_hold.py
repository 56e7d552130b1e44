"""The scheduler's events wait while pods it bound are still starting (at most STARTING_HOLD_SECONDS)."""

from __future__ import annotations

import time
from typing import Any

from timonel.api.client import Client
from timonel.api.kubeconfig import ClusterConfig
from timonel.scheduler import scheduler as sched_mod
from timonel.scheduler.scheduler import Scheduler


def _pod(phase: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": phase}}


async def test_a_pod_we_bound_holds_our_events_until_it_runs() -> None:
    async with Client(ClusterConfig(server="http://127.0.0.1:1")) as client:
        s = Scheduler(client)
        assert not s._busy()
        s._starting[("default", "web")] = time.monotonic()  # as _bind does
        assert s._busy()
        s._pod_updated(_pod("Pending"), _pod("Pending"))
        assert s._busy()
        s._pod_updated(_pod("Pending"), _pod("Running"))
        assert not s._busy()


async def test_the_hold_ends_after_its_time_or_with_the_pod() -> None:
    async with Client(ClusterConfig(server="http://127.0.0.1:1")) as client:
        s = Scheduler(client)
        s._starting[("default", "web")] = time.monotonic() - sched_mod.STARTING_HOLD_SECONDS - 0.1
        assert not s._busy()
        s._starting[("default", "web")] = time.monotonic()
        s._pod_deleted(_pod("Pending"))
        assert not s._busy()
