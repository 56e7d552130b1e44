"""The garbage collector: cascading deletion by ownerReferences (upstream's
garbagecollector, without its in-memory graph: the shared informers of every
kind, indexed by owner UID and by UID, are the graph).

- An object whose owners are all gone is deleted (Background, unless its own
  finalizers ask for Foreground or Orphan). Owners are confirmed gone by a
  live read with a UID check, never from a cache alone.
- An owner deleted with `propagationPolicy: Foreground` carries the
  `foregroundDeletion` finalizer: its dependents are deleted, and the
  finalizer is removed once no dependent with `blockOwnerDeletion: true`
  remains, so the owner goes last.
- An owner deleted with `Orphan` carries the `orphan` finalizer: the
  reference to it is removed from every dependent, then the finalizer.

Events are not collected (as upstream). A dependent that names an owner
kind this server does not serve, or a cluster-scoped dependent naming a
namespaced owner, is never collected.
"""

from __future__ import annotations

import logging
from typing import Any

from timonel.api import meta, resources
from timonel.api.client import Informer, WorkQueue, retry_on_conflict
from timonel.api.client.events import WARNING
from timonel.api.client.workqueue import default_controller_rate_limiter
from timonel.api.errors import ApiError
from timonel.api.resources import ResourceType
from timonel.controller.context import ControllerContext
from timonel.controller.loop import run_loop
from timonel.controller.ownership import add_index

log = logging.getLogger(__name__)

Obj = dict[str, Any]
FOREGROUND, ORPHAN = "foregroundDeletion", "orphan"
BY_OWNER, BY_UID = "gc-owner-uid", "gc-uid"

# (action, group, version, plural, namespace, name, uid)
Item = tuple[str, str, str, str, str, str, str]
ATTEMPT, DELETING_DEPENDENTS, ORPHANING = "attempt", "dependents", "orphan"


def collected_resources() -> list[ResourceType]:
    """Every kind the collector watches: all that can be listed, watched and
    deleted, except events."""
    return [r for r in resources.RESOURCES
            if {"list", "watch", "delete"} <= set(r.verbs) and r.kind != "Event"]


def owner_refs(obj: Obj) -> list[Obj]:
    return [r for r in (obj.get("metadata") or {}).get("ownerReferences") or []
            if isinstance(r, dict) and r.get("uid")]


def _owner_uids(obj: Obj) -> list[str]:
    return [str(r["uid"]) for r in owner_refs(obj)]


def _uid_index(obj: Obj) -> list[str]:
    uid = (obj.get("metadata") or {}).get("uid")
    return [str(uid)] if uid else []


def uid_of(obj: Obj | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("uid") or "")


def finalizers(obj: Obj) -> list[str]:
    return list((obj.get("metadata") or {}).get("finalizers") or [])


def deleting(obj: Obj) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def deleting_dependents(obj: Obj) -> bool:
    return deleting(obj) and FOREGROUND in finalizers(obj)


class GarbageCollector:
    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.queue: WorkQueue[Item] = WorkQueue(default_controller_rate_limiter(),
                                                name="garbagecollector")
        self.informers: dict[tuple[str, str], Informer] = {}
        for rt in collected_resources():
            inf = ctx.informers.informer(rt)
            add_index(inf, BY_OWNER, _owner_uids)
            add_index(inf, BY_UID, _uid_index)
            self.informers[(rt.group, rt.kind)] = inf

    # -- the graph, read from the caches -----------------------------------------------

    def item(self, action: str, obj: Obj, rt: ResourceType | None = None) -> Item:
        rt = rt or self._rtype(obj)
        assert rt is not None
        return (action, rt.group, rt.version, rt.plural, meta.namespace_of(obj),
                meta.name_of(obj), uid_of(obj))

    @staticmethod
    def _rtype(obj: Obj) -> ResourceType | None:
        return resources.by_api_version_kind(str(obj.get("apiVersion") or ""),
                                             str(obj.get("kind") or ""))

    def dependents(self, owner_uid: str, namespace: str | None = None) -> list[Obj]:
        """Cached objects with an ownerReference to `owner_uid` (in
        `namespace` when the owner is namespaced)."""
        out: list[Obj] = []
        for inf in self.informers.values():
            for obj in inf.by_index(BY_OWNER, owner_uid):
                if namespace is None or not inf.rtype.namespaced or \
                        meta.namespace_of(obj) == namespace:
                    out.append(obj)
        return out

    def cached_owner(self, ref: Obj, namespace: str) -> Obj | None:
        rt = resources.by_api_version_kind(str(ref.get("apiVersion") or ""),
                                           str(ref.get("kind") or ""))
        inf = self.informers.get((rt.group, rt.kind)) if rt is not None else None
        if inf is None or rt is None:
            return None
        for obj in inf.by_index(BY_UID, str(ref.get("uid"))):
            if not rt.namespaced or meta.namespace_of(obj) == namespace:
                return obj
        return None

    # -- events ----------------------------------------------------------------------------

    def start_handlers(self) -> None:
        for inf in self.informers.values():
            rt = inf.rtype
            inf.add_handler(lambda o, rt=rt: self._changed(rt, None, o),  # type: ignore[misc]
                            lambda old, o, rt=rt: self._changed(rt, old, o),  # type: ignore[misc]
                            lambda o, rt=rt: self._deleted(rt, o))  # type: ignore[misc]

    def _changed(self, rt: ResourceType, old: Obj | None, obj: Obj) -> None:
        if old is not None and meta.resource_version(old) == meta.resource_version(obj):
            return
        ns = meta.namespace_of(obj)
        # Owners that are gone, or not seen yet: check them.
        for ref in owner_refs(obj):
            owner = self.cached_owner(ref, ns)
            if owner is None or deleting_dependents(owner):
                self.queue.add(self.item(ATTEMPT, obj, rt))
                break
        if deleting(obj):
            was = old is not None and deleting(old)
            if FOREGROUND in finalizers(obj) and not (was and FOREGROUND in finalizers(old or {})):
                self.queue.add(self.item(DELETING_DEPENDENTS, obj, rt))
                for dep in self.dependents(uid_of(obj), ns):
                    self.queue.add(self.item(ATTEMPT, dep))
            elif FOREGROUND in finalizers(obj):
                self.queue.add(self.item(DELETING_DEPENDENTS, obj, rt))
            if ORPHAN in finalizers(obj):
                self.queue.add(self.item(ORPHANING, obj, rt))
        if old is not None:
            # An owner waiting for this dependent may be free once the
            # reference (or its blockOwnerDeletion) is gone.
            now = {str(r["uid"]): r for r in owner_refs(obj)}
            for ref in owner_refs(old):
                cur = now.get(str(ref["uid"]))
                if cur is None or (ref.get("blockOwnerDeletion") and
                                   not cur.get("blockOwnerDeletion")):
                    self._owner_may_finish(ref, ns)

    def _deleted(self, rt: ResourceType, obj: Obj) -> None:
        ns = meta.namespace_of(obj)
        for dep in self.dependents(uid_of(obj), ns if rt.namespaced else None):
            self.queue.add(self.item(ATTEMPT, dep))
        for ref in owner_refs(obj):
            self._owner_may_finish(ref, ns)

    def _owner_may_finish(self, ref: Obj, namespace: str) -> None:
        owner = self.cached_owner(ref, namespace)
        if owner is not None and deleting_dependents(owner):
            self.queue.add(self.item(DELETING_DEPENDENTS, owner))

    # -- work ---------------------------------------------------------------------------------

    def _cache_says_solid(self, rt: ResourceType, ns: str, name: str) -> bool:
        """Every owner of the cached object is cached and not being deleted
        in the foreground: nothing to do, no live reads. (A cache that still
        holds a deleted owner will deliver its delete event later.)"""
        obj = self.informers[(rt.group, rt.kind)].get(ns, name)
        if obj is None or deleting(obj):
            return False
        for ref in owner_refs(obj):
            owner = self.cached_owner(ref, ns)
            if owner is None or deleting_dependents(owner):
                return False
        return True

    async def process(self, item: Item) -> None:
        action, group, version, plural, ns, name, uid = item
        rt = resources.lookup(group, version, plural)
        if rt is None:
            return
        if action == ATTEMPT and (rt.group, rt.kind) in self.informers and \
                self._cache_says_solid(rt, ns, name):
            return
        try:
            latest = await self.client.get(rt, ns, name)
        except ApiError as e:
            if e.code == 404:
                return
            raise
        if uid_of(latest) != uid:
            return
        latest.setdefault("apiVersion", rt.api_version)
        latest.setdefault("kind", rt.kind)
        if action == ORPHANING:
            await self.orphan_dependents(rt, latest)
        elif deleting_dependents(latest):
            await self.process_deleting_dependents(rt, latest)
        elif action == ATTEMPT:
            await self.attempt_to_delete(rt, latest)

    async def _owner_state(self, ref: Obj, dependent: Obj, rt: ResourceType) -> str:
        """"solid", "dangling" (gone, or another object of that name) or
        "waiting" (being deleted in the foreground)."""
        owner_rt = resources.by_api_version_kind(str(ref.get("apiVersion") or ""),
                                                 str(ref.get("kind") or ""))
        if owner_rt is None:
            log.warning("ownerReference to a kind not served, keeping dependent=%s/%s owner=%s %s",
                        meta.namespace_of(dependent), meta.name_of(dependent),
                        ref.get("apiVersion"), ref.get("kind"))
            return "solid"
        if owner_rt.namespaced and not rt.namespaced:
            await self.ctx.recorder.event(
                dependent, WARNING, "OwnerRefInvalidNamespace",
                f"ownerRef {ref} does not resolve to a valid object: a cluster-scoped object "
                "cannot be owned by a namespaced kind")
            return "solid"
        try:
            owner = await self.client.get(owner_rt, meta.namespace_of(dependent)
                                          if owner_rt.namespaced else "", str(ref.get("name")))
        except ApiError as e:
            if e.code == 404:
                return "dangling"
            raise
        if uid_of(owner) != str(ref.get("uid")):
            return "dangling"
        if deleting_dependents(owner):
            return "waiting"
        return "solid"

    async def attempt_to_delete(self, rt: ResourceType, obj: Obj) -> None:
        """Delete `obj` if none of its owners remains (upstream's attemptToDeleteItem)."""
        if deleting(obj):
            return
        refs = owner_refs(obj)
        if not refs:
            return
        states = {str(r["uid"]): await self._owner_state(r, obj, rt) for r in refs}
        solid = [u for u, s in states.items() if s == "solid"]
        gone = [u for u, s in states.items() if s != "solid"]
        ns, name = meta.namespace_of(obj), meta.name_of(obj)
        if solid:
            if not gone:
                return
            # Keep the object, drop the references that cannot hold it.
            log.info("removing dangling ownerReferences object=%s/%s/%s owners=%s", rt.plural, ns,
                     name, gone)
            await self._patch_refs(rt, obj, [{"$patch": "delete", "uid": u} for u in gone])
            return
        waiting = [u for u, s in states.items() if s == "waiting"]
        own_dependents = self.dependents(uid_of(obj), ns if rt.namespaced else None)
        if waiting and own_dependents:
            if any(deleting_dependents(d) for d in own_dependents):
                # A cycle of foreground deletions: stop blocking our owners
                # so each can finish.
                await self._patch_refs(rt, obj, [{"uid": u, "blockOwnerDeletion": False}
                                                 for u in waiting])
            await self._delete(rt, obj, "Foreground")
            return
        fins = finalizers(obj)
        policy = ORPHAN.capitalize() if ORPHAN in fins else \
            "Foreground" if FOREGROUND in fins else "Background"
        await self._delete(rt, obj, policy)

    async def _patch_refs(self, rt: ResourceType, obj: Obj, entries: list[Obj]) -> None:
        try:
            await self.client.patch(rt, meta.namespace_of(obj), meta.name_of(obj),
                                    {"metadata": {"ownerReferences": entries,
                                                  "uid": uid_of(obj)}},
                                    patch_type="strategic")
        except ApiError as e:
            if e.code != 404:
                raise

    async def _delete(self, rt: ResourceType, obj: Obj, policy: str) -> None:
        log.info("garbage collecting object=%s/%s/%s policy=%s", rt.plural,
                 meta.namespace_of(obj), meta.name_of(obj), policy)
        try:
            await self.client.delete(rt, meta.namespace_of(obj), meta.name_of(obj),
                                     propagation_policy=policy,
                                     preconditions={"uid": uid_of(obj),
                                                    "resourceVersion": str(meta.resource_version(obj))})
        except ApiError as e:
            if e.code == 404:
                return
            raise  # 409: it changed; the retry reads it again

    async def process_deleting_dependents(self, rt: ResourceType, owner: Obj) -> None:
        """The owner goes once no dependent blocks it (upstream's
        processDeletingDependentsItem)."""
        ns = meta.namespace_of(owner) if rt.namespaced else None
        blocking = [d for d in self.dependents(uid_of(owner), ns)
                    if any(str(r["uid"]) == uid_of(owner) and r.get("blockOwnerDeletion")
                           for r in owner_refs(d))]
        if not blocking:
            await self.remove_finalizer(rt, owner, FOREGROUND)
            return
        for dep in blocking:
            if not deleting_dependents(dep):
                self.queue.add(self.item(ATTEMPT, dep))

    async def orphan_dependents(self, rt: ResourceType, owner: Obj) -> None:
        if not deleting(owner) or ORPHAN not in finalizers(owner):
            return
        ns = meta.namespace_of(owner) if rt.namespaced else None
        for dep in self.dependents(uid_of(owner), ns):
            dep_rt = self._rtype(dep)
            if dep_rt is None:
                continue
            log.info("orphaning dependent=%s/%s/%s owner=%s", dep_rt.plural,
                     meta.namespace_of(dep), meta.name_of(dep), meta.name_of(owner))
            await self._patch_refs(dep_rt, dep, [{"$patch": "delete", "uid": uid_of(owner)}])
        await self.remove_finalizer(rt, owner, ORPHAN)

    async def remove_finalizer(self, rt: ResourceType, obj: Obj, finalizer: str) -> None:
        ns, name, uid = meta.namespace_of(obj), meta.name_of(obj), uid_of(obj)

        async def attempt() -> None:
            try:
                cur = await self.client.get(rt, ns, name)
            except ApiError as e:
                if e.code == 404:
                    return
                raise
            if uid_of(cur) != uid or finalizer not in finalizers(cur):
                return
            left = [f for f in finalizers(cur) if f != finalizer]
            await self.client.patch(rt, ns, name, {"metadata": {
                "finalizers": left or None,
                "resourceVersion": cur["metadata"]["resourceVersion"]}})
            log.info("removed finalizer object=%s/%s/%s finalizer=%s", rt.plural, ns, name,
                     finalizer)

        await retry_on_conflict(attempt)

    async def run(self) -> None:
        self.start_handlers()
        await run_loop(self.queue, self.informers.values(), self.process,
                       self.ctx.options.workers)


async def run(ctx: ControllerContext) -> None:
    await GarbageCollector(ctx).run()
