"""The namespace controller: a deleted namespace is emptied, then let go.

`kubectl delete namespace X` only marks it (deletionTimestamp, phase
Terminating, the `kubernetes` finalizer in spec.finalizers). This controller
deletes every namespaced object inside, kind by kind, waits until nothing is
left (pods end gracefully, objects with finalizers wait for their owners),
reporting upstream's conditions on the namespace meanwhile, and then
removes its finalizer through `PUT /api/v1/namespaces/X/finalize`.

Events are the one kind still accepted in a terminating namespace (as
upstream: they tell what happened to what is being deleted), so some can be
written between the last pass and the finalize, e.g. a node agent's held
Killing events. Upstream leaves those to their one-hour TTL in etcd; here
they are swept once more when the namespace is gone, after which none can
be created in it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from timonel.api import meta, resources
from timonel.api.client import WorkQueue
from timonel.api.client.workqueue import default_controller_rate_limiter
from timonel.api.errors import ApiError
from timonel.api.resources import ResourceType
from timonel.controller.context import ControllerContext
from timonel.controller.loop import run_loop
from timonel.controller.pods import parse_time

log = logging.getLogger(__name__)

Obj = dict[str, Any]
NAMESPACES = ("v1", "Namespace")
EVENTS = ("v1", "Event")
FINALIZER = "kubernetes"
# How soon to look again while content is still going away.
RECHECK_MIN, RECHECK_MAX = 1.0, 10.0


def namespaced_resources() -> list[ResourceType]:
    return [r for r in resources.RESOURCES if r.namespaced and {"list", "delete"} <= set(r.verbs)]


def group_resource(rt: ResourceType) -> str:
    """Upstream's GroupResource.String(): `pods`, `replicasets.apps`."""
    return f"{rt.plural}.{rt.group}" if rt.group else rt.plural


def condition(ctype: str, status: str, reason: str, message: str) -> Obj:
    return {"type": ctype, "status": status, "lastTransitionTime": meta.now(), "reason": reason,
            "message": message}


def deletion_conditions(remaining: dict[str, int], finalizers: dict[str, int],
                        failures: list[str]) -> list[Obj]:
    """Upstream's namespace deletion conditions for what is left."""
    conds = [condition("NamespaceDeletionDiscoveryFailure", "False", "ResourcesDiscovered",
                       "All resources successfully discovered"),
             condition("NamespaceDeletionGroupVersionParsingFailure", "False",
                       "ParsedGroupVersions", "All legacy kube types successfully parsed")]
    if failures:
        conds.append(condition("NamespaceDeletionContentFailure", "True",
                               "ContentDeletionFailed", "; ".join(failures)))
    else:
        conds.append(condition("NamespaceDeletionContentFailure", "False", "ContentDeleted",
                               "All content successfully deleted, may be waiting on "
                               "finalization"))
    if remaining:
        conds.append(condition(
            "NamespaceContentRemaining", "True", "SomeResourcesRemain",
            "Some resources are remaining: " + ", ".join(
                f"{gr} has {n} resource instances" for gr, n in sorted(remaining.items()))))
    else:
        conds.append(condition("NamespaceContentRemaining", "False", "ContentRemoved",
                               "All content successfully removed"))
    if finalizers:
        conds.append(condition(
            "NamespaceFinalizersRemaining", "True", "SomeFinalizersRemain",
            "Some content in the namespace has finalizers remaining: " + ", ".join(
                f"{f} in {n} resource instances" for f, n in sorted(finalizers.items()))))
    else:
        conds.append(condition("NamespaceFinalizersRemaining", "False", "ContentHasNoFinalizers",
                               "All content-preserving finalizers finished"))
    return conds


def merge_conditions(old: list[Obj], new: list[Obj]) -> list[Obj]:
    """New conditions, keeping the transition time of those whose status held."""
    before = {c.get("type"): c for c in old}
    out = []
    for c in new:
        prev = before.get(c["type"])
        if prev is not None and prev.get("status") == c["status"]:
            c = {**c, "lastTransitionTime": prev.get("lastTransitionTime")}
        out.append(c)
    return out


class NamespaceController:
    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.queue: WorkQueue[str] = WorkQueue(default_controller_rate_limiter(),
                                               name="namespace")
        self.informer = ctx.informers.informer(NAMESPACES)

    def _changed(self, ns: Obj) -> None:
        if (ns.get("metadata") or {}).get("deletionTimestamp"):
            self.queue.add(meta.name_of(ns))

    async def delete_content(self, namespace: str) -> tuple[dict[str, int], dict[str, int],
                                                            list[str], float]:
        """Delete everything in `namespace`; return what remains by kind, the
        finalizers holding it, failures, and how long to wait."""
        remaining: dict[str, int] = {}
        holding: dict[str, int] = {}
        failures: list[str] = []
        wait = 0.0
        now = datetime.now(UTC)
        for rt in namespaced_resources():
            try:
                if "deletecollection" in rt.verbs:
                    await self.client.delete_collection(rt, namespace,
                                                        propagation_policy="Background")
                left = (await self.client.list_all(rt, namespace))["items"]
                if "deletecollection" not in rt.verbs:
                    for obj in left:
                        if not (obj.get("metadata") or {}).get("deletionTimestamp"):
                            await self.client.delete(rt, namespace, meta.name_of(obj),
                                                     propagation_policy="Background")
            except ApiError as e:
                if e.code in (404, 405):
                    continue
                failures.append(f"failed to delete {group_resource(rt)}: {e.message}")
                continue
            if not left:
                continue
            remaining[group_resource(rt)] = len(left)
            for obj in left:
                for f in (obj.get("metadata") or {}).get("finalizers") or []:
                    holding[f] = holding.get(f, 0) + 1
                if rt.kind == "Pod":
                    # A pod goes when its node agent has stopped it.
                    until = parse_time((obj.get("metadata") or {}).get("deletionTimestamp"))
                    if until is not None:
                        wait = max(wait, (until - now).total_seconds())
        return remaining, holding, failures, wait

    async def sync(self, name: str) -> None:
        try:
            ns = await self.client.get(NAMESPACES, "", name)
        except ApiError as e:
            if e.code == 404:
                return
            raise
        md = ns.get("metadata") or {}
        spec_finalizers = list((ns.get("spec") or {}).get("finalizers") or [])
        if not md.get("deletionTimestamp") or FINALIZER not in spec_finalizers:
            return
        remaining, holding, failures, wait = await self.delete_content(name)
        await self._report(ns, deletion_conditions(remaining, holding, failures))
        if failures:
            raise RuntimeError(f"namespace {name}: " + "; ".join(failures))
        if remaining:
            log.info("namespace content remaining namespace=%s remaining=%s", name, remaining)
            self.queue.add_after(name, min(max(wait, RECHECK_MIN), RECHECK_MAX))
            return
        try:
            ns = await self.client.get(NAMESPACES, "", name)
        except ApiError as e:
            if e.code == 404:
                return
            raise
        body = {**ns, "spec": {**(ns.get("spec") or {}),
                               "finalizers": [f for f in spec_finalizers if f != FINALIZER]}}
        await self.client.put_subresource(NAMESPACES, "", name, "finalize", body)
        log.info("namespace finalized namespace=%s", name)
        await self._sweep_late_events(name, str(md.get("uid") or ""))

    async def _sweep_late_events(self, name: str, uid: str) -> None:
        """Delete events written since the last pass, unless a new namespace of that name
        (another uid) is there: its events are its own."""
        try:
            ns = await self.client.get(NAMESPACES, "", name)
        except ApiError as e:
            if e.code != 404:
                raise
            ns = None
        if ns is not None and (ns.get("metadata") or {}).get("uid") != uid:
            return
        try:
            await self.client.delete_collection(EVENTS, name)
        except ApiError as e:
            if e.code != 404:
                raise

    async def _report(self, ns: Obj, conds: list[Obj]) -> None:
        status = dict(ns.get("status") or {})
        merged = merge_conditions(status.get("conditions") or [], conds)
        if [(c["type"], c["status"], c["message"]) for c in status.get("conditions") or []] == \
                [(c["type"], c["status"], c["message"]) for c in merged]:
            return
        status["conditions"] = merged
        try:
            await self.client.update_status(NAMESPACES, {**ns, "status": status})
        except ApiError as e:
            # Best effort: the next pass reports again.
            log.debug("namespace status not written namespace=%s err=%s", meta.name_of(ns), e)

    async def run(self) -> None:
        self.informer.add_handler(self._changed, lambda old, new: self._changed(new))
        await run_loop(self.queue, (self.informer,), self.sync, self.ctx.options.workers)


async def run(ctx: ControllerContext) -> None:
    await NamespaceController(ctx).run()
