"""What a starting runtime does with the state a previous run left: adopt or clean up.

Running containers are adopted as they are (their shims outlived the old
runtime). Everything half-made is removed: sandboxes and containers whose
create never finished, manager state without a record and records without
manager state, namespace files and pod-network addresses and veths of
sandboxes that no longer exist.
"""

from __future__ import annotations

import logging
import os
import shutil

from ..container import NotFoundError
from ..container.state import UNKNOWN
from ..network import delete_netns, gc_pod_networks, list_netns
from . import containers, pods
from .records import CREATED, CREATING
from .runtime import Runtime

log = logging.getLogger(__name__)


def recover(rt: Runtime) -> dict[str, int]:
    """Clean up after the previous run; returns counts of what was adopted and removed."""
    counts = {"sandboxes": 0, "containers": 0, "removed_sandboxes": 0, "removed_containers": 0}
    for sb in list(rt.records.sandboxes.values()):
        if sb.phase == CREATING:
            log.info("sandbox=%s msg=removing a sandbox whose create did not finish", sb.id)
            _try(pods.destroy, rt, sb.id)
            counts["removed_sandboxes"] += 1
    known = {st.id for st in rt.sandboxes.list()}
    for sid in known - set(rt.records.sandboxes):
        log.info("sandbox=%s msg=removing sandbox state without a record", sid)
        _try(pods.destroy, rt, sid)
        counts["removed_sandboxes"] += 1
    for name in os.listdir(rt.sandboxes.dir):
        if name not in rt.records.sandboxes and name not in known:
            _try(pods.destroy, rt, name)  # a sandbox dir without sandbox.json

    statuses = {st.id: st for st in rt.containers.list()}
    for cid, st in statuses.items():
        rec = rt.records.containers.get(cid)
        orphan = rec is not None and rec.sandbox_id not in rt.records.sandboxes
        if rec is None or rec.phase != CREATED or st.state == UNKNOWN or orphan:
            log.info("container=%s state=%s msg=removing a half-created or orphaned container", cid, st.state)
            _try(_remove_container, rt, cid)
            counts["removed_containers"] += 1
    for cid, crec in list(rt.records.containers.items()):
        if cid not in statuses:
            log.info("container=%s msg=dropping a record without container state", cid)
            _try(containers.destroy, rt, cid)
            if crec.phase == CREATED:
                counts["removed_containers"] += 1
    for name in os.listdir(rt.containers.dir):  # dirs of creates that died before spec.json
        if name not in statuses:
            log.info("container=%s msg=removing the state dir of an unfinished create", name)
            shutil.rmtree(rt.containers.state_dir(name), ignore_errors=True)
            shutil.rmtree(rt.containers.layer_dir(name), ignore_errors=True)

    live_net = {r.id for r in rt.records.sandboxes.values() if r.ip is not None}
    if rt.network_ready:
        _try(gc_pod_networks, rt.network, live_net)
    owned = {r.id for r in rt.records.sandboxes.values() if r.netns}
    for name in list_netns(rt.netns_dir):
        if name not in owned:
            log.info("netns=%s msg=removing the namespace of a sandbox that no longer exists", name)
            _try(delete_netns, name, rt.netns_dir)
    counts["sandboxes"] = len(rt.records.sandboxes)
    counts["containers"] = sum(1 for c in rt.records.containers.values() if c.phase == CREATED)
    return counts


def _remove_container(rt: Runtime, cid: str) -> None:
    try:
        rt.containers.remove(cid)
    except NotFoundError:
        pass
    rt.records.drop_container(cid)


def _try(fn, *args) -> None:  # type: ignore[no-untyped-def]
    """Recovery goes on past a failure: one broken leftover must not keep the runtime down."""
    try:
        fn(*args)
    except Exception as e:
        log.error("recovery step=%s args=%s error=%s", getattr(fn, "__name__", fn), args[1:], e)
