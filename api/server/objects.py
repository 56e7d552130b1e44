"""Object semantics on top of etcd: what create, update, delete and list mean.

HTTP-free: the REST handlers parse requests and call these. Here live the
rules of `metadata` (uid, creationTimestamp, generation, resourceVersion
preconditions), status subresource separation, finalizers and graceful
deletion, and consistent paginated lists.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from timonel.api import meta
from timonel.api.defaults import apply_defaults, job_selector_defaults, qos_class
from timonel.api.errors import ApiError, already_exists, conflict, not_found
from timonel.api.jsonutil import deep_copy
from timonel.api.resources import ResourceType
from timonel.api.storage.etcd import CasFailed, CompactedError, Store, decode, encode
from timonel.api.storage.watch_cache import Filter, WatchCaches
from timonel.api.validation.quantities import normalize_quantities

log = logging.getLogger(__name__)

Obj = dict[str, Any]
# Called with (new object, old object or None) before anything is written:
# admission and validation. May change the object; raises ApiError to refuse.
Check = Callable[[Obj, Obj | None], Awaitable[None]]

MAX_CAS_RETRIES = 20
GENERATE_NAME_RETRIES = 7


def key_of(rtype: ResourceType, namespace: str, name: str) -> str:
    if rtype.namespaced:
        return f"/registry/{rtype.storage_name}/{namespace}/{name}"
    return f"/registry/{rtype.storage_name}/{name}"


def prefix_of(rtype: ResourceType, namespace: str = "") -> str:
    if rtype.namespaced and namespace:
        return f"/registry/{rtype.storage_name}/{namespace}/"
    return f"/registry/{rtype.storage_name}/"


@dataclass
class ListResult:
    items: list[Obj]
    resource_version: str
    continue_token: str = ""
    remaining: int | None = None


def encode_continue(rev: int, start_key: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rev, "start": start_key})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        pad = "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(token + pad))
        rev, start = int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ApiError(400, "continue key is not valid: the continue parameter must be the "
                       "value returned by a previous list", "BadRequest") from None
    if rev <= 0:
        raise ApiError(400, "continue key is not valid: incorrect encoded start resourceVersion")
    return rev, start


def _spec_part(obj: Obj) -> Obj:
    """Everything that counts for metadata.generation: all but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


# Upstream serializes these status counters even at zero (no omitempty), and
# the schema requires them: a new object's empty status must carry them.
_ZERO_STATUS: dict[tuple[str, str], Obj] = {
    ("apps", "ReplicaSet"): {"replicas": 0},
    ("apps", "StatefulSet"): {"replicas": 0, "availableReplicas": 0},
    ("apps", "DaemonSet"): {"currentNumberScheduled": 0, "numberMisscheduled": 0,
                            "desiredNumberScheduled": 0, "numberReady": 0},
}


def initial_status(rtype: ResourceType, obj: Obj) -> Obj | None:
    """The status an object starts with: what clients sent is dropped (upstream
    PrepareForCreate), except for Nodes whose agent reports status at creation."""
    if rtype.kind == "Pod":
        return {"phase": "Pending", "qosClass": qos_class(obj)}
    if rtype.kind == "Namespace":
        return {"phase": "Active"}
    if rtype.kind == "Node" or not rtype.has_status:
        return obj.get("status")
    return dict(_ZERO_STATUS.get((rtype.group, rtype.kind), {}))


class Objects:
    def __init__(self, store: Store, caches: WatchCaches) -> None:
        self.store = store
        self.caches = caches

    # -- reads -----------------------------------------------------------------

    async def get(self, rtype: ResourceType, namespace: str, name: str) -> Obj:
        kv = await self.store.get(key_of(rtype, namespace, name))
        if kv is None:
            raise not_found(rtype.plural, name, rtype.group)
        return kv.decode()

    async def list(
        self, rtype: ResourceType, namespace: str, match: Filter, *,
        limit: int = 0, continue_token: str = "", resource_version: str = "",
        resource_version_match: str = "",
    ) -> ListResult:
        prefix = prefix_of(rtype, namespace)
        if continue_token:
            rev, start = decode_continue(continue_token)
            return await self._list_etcd(prefix, match, limit, rev, start)
        if resource_version_match not in ("", "NotOlderThan", "Exact"):
            raise ApiError(400, f'resourceVersionMatch "{resource_version_match}" is not supported: '
                           'use NotOlderThan or Exact')
        if resource_version_match and not resource_version:
            raise ApiError(422, "resourceVersionMatch is forbidden unless resourceVersion is provided",
                           "Invalid")
        if resource_version and resource_version_match == "Exact":
            return await self._list_etcd(prefix, match, limit, _rv(resource_version), "")
        if (resource_version and not limit) or resource_version == "0":
            # "Any" / "not older than": the watch cache answers, without pagination
            # (upstream ignores limit for resourceVersion=0 too).
            cache = await self.caches.get(prefix_of(rtype))
            if resource_version != "0":
                await cache.wait_fresh(_rv(resource_version))
            ns_match = _with_namespace(match, rtype, namespace)
            items, rev = cache.snapshot(ns_match)
            items.sort(key=_sort_key)
            return ListResult(items, str(rev))
        if resource_version:
            return await self._list_etcd(prefix, match, limit, _rv(resource_version), "",
                                         not_older=True)
        return await self._list_etcd(prefix, match, limit, 0, "")

    async def _list_etcd(self, prefix: str, match: Filter, limit: int, rev: int, start: str,
                         not_older: bool = False) -> ListResult:
        items: list[Obj] = []
        read_rev = 0 if not_older else rev
        # Never one huge range: gRPC answers are capped (4 MiB by default).
        page = max(limit, 100) if limit else 500
        while True:
            try:
                kvs, got_rev, more = await self.store.list(prefix, revision=read_rev, limit=page,
                                                           start=start or None)
            except CompactedError:
                raise ApiError(410, "The provided continue parameter is too old to display a "
                               "consistent list result. You can start a new list without the "
                               "continue parameter.", "Expired") from None
            read_rev = read_rev or got_rev
            if not_older and got_rev < rev:
                raise ApiError(504, f"Too large resource version: {rev}, current: {got_rev}",
                               "Timeout")
            for i, kv in enumerate(kvs):
                obj = decode(kv.value, kv.mod_revision)
                if not match(obj):
                    continue
                items.append(obj)
                if limit and len(items) >= limit:
                    rest = i + 1 < len(kvs) or more
                    token = encode_continue(read_rev, kv.key + "\0") if rest else ""
                    return ListResult(items, str(read_rev), token)
            if not more or not kvs:
                return ListResult(items, str(read_rev))
            start = kvs[-1].key + "\0"

    # -- create ------------------------------------------------------------------

    async def create(self, rtype: ResourceType, namespace: str, obj: Obj, *,
                     check: Check | None = None, dry_run: bool = False) -> Obj:
        md = obj.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise ApiError(400, "metadata must be an object")
        if not md.get("name"):
            base = md.get("generateName")
            if not base:
                raise ApiError(422, f"{rtype.kind}.{rtype.group or 'core'} is invalid: "
                               "metadata.name: Required value: name or generateName is required",
                               "Invalid", kind=rtype.kind,
                               causes=[{"reason": "FieldValueRequired", "field": "metadata.name",
                                        "message": "Required value: name or generateName is required"}])
            md["name"] = meta.generate_name(str(base))
            generated = str(base)
        else:
            generated = ""
        if rtype.namespaced:
            md["namespace"] = namespace
        else:
            md.pop("namespace", None)
        for field in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds",
                      "selfLink"):
            md.pop(field, None)
        md["uid"] = meta.new_uid()
        md["creationTimestamp"] = meta.now()
        if "spec" in obj or rtype.has_status:
            md["generation"] = 1
        normalize_quantities(obj, rtype.group, rtype.version, rtype.kind)
        apply_defaults(obj, rtype.group, rtype.kind)
        if rtype.group == "batch" and rtype.kind == "Job":
            job_selector_defaults(obj, md["uid"])
        status = initial_status(rtype, obj)
        if status is None:
            obj.pop("status", None)
        else:
            obj["status"] = status
        if check is not None:
            await check(obj, None)
        if dry_run:
            return obj
        # As upstream since 1.32 (KEP-4420): a generated name that is taken is
        # generated again, up to GENERATE_NAME_RETRIES more times, instead of a 409.
        for attempt in range(GENERATE_NAME_RETRIES + 1):
            name = obj["metadata"]["name"]
            try:
                rev = await self.store.create(key_of(rtype, namespace, name), encode(obj))
                break
            except CasFailed:
                if not generated or attempt == GENERATE_NAME_RETRIES:
                    raise already_exists(rtype.plural, name, rtype.group) from None
                obj["metadata"]["name"] = meta.generate_name(generated)
        # Not `md`: admission (managedFields) may have replaced obj["metadata"].
        obj["metadata"]["resourceVersion"] = str(rev)
        return obj

    # -- update ------------------------------------------------------------------

    async def update(
        self, rtype: ResourceType, namespace: str, name: str,
        mutate: Callable[[Obj], Obj], *, subresource: str = "", check: Check | None = None,
        dry_run: bool = False, create_if_missing: Callable[[], Obj] | None = None,
    ) -> tuple[Obj, bool]:
        """Read, apply `mutate` to a copy, write back with compare-and-swap.

        `mutate` returns the desired object. A resourceVersion in it is a
        precondition (409 if stale); without one the update retries on
        conflicts. Returns (object, created).

        The first read is the watch cache's copy when it has one (upstream's
        GuaranteedUpdate does the same): the compare-and-swap fails if it was stale,
        and anything refused on it (a conflict, a check) is tried again on what etcd
        has, so only etcd's copy decides. A status write or binding then costs one
        etcd call instead of two.
        """
        key = key_of(rtype, namespace, name)
        cached = self.caches.peek(prefix_of(rtype), key)
        for _ in range(MAX_CAS_RETRIES):
            if cached is not None:
                old, revision = cached, int(cached["metadata"]["resourceVersion"])
            else:
                kv = await self.store.get(key)
                if kv is None:
                    if create_if_missing is None:
                        raise not_found(rtype.plural, name, rtype.group)
                    new = create_if_missing()
                    return await self.create(rtype, namespace, new, check=check, dry_run=dry_run), True
                old, revision = kv.decode(), kv.mod_revision
            from_cache, cached = cached is not None, None
            try:
                new = mutate(deep_copy(old))
                new = self._prepare_update(rtype, old, new, subresource)
                wanted_rv = (new.get("metadata") or {}).get("resourceVersion")
                if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                    raise conflict(rtype.plural, name, rtype.group)
                if check is not None:
                    await check(new, old)
            except Exception:
                if from_cache:
                    continue  # it may be stale: what etcd has now decides
                raise
            if dry_run:
                return new, False
            if _finished_deleting(new):
                try:
                    await self.store.delete(key, revision)
                except CasFailed:
                    if wanted_rv and not from_cache:
                        raise conflict(rtype.plural, name, rtype.group) from None
                    continue
                return new, False
            try:
                rev = await self.store.update(key, encode(new), revision)
            except CasFailed:
                if wanted_rv and not from_cache:  # else: was the cache's copy stale, or the precondition?
                    raise conflict(rtype.plural, name, rtype.group) from None
                continue
            new["metadata"]["resourceVersion"] = str(rev)
            return new, False
        raise ApiError(409, f"too many concurrent writers to {rtype.plural} {name!r}; retry",
                       "Conflict")

    def _prepare_update(self, rtype: ResourceType, old: Obj, new: Obj, subresource: str) -> Obj:
        if not isinstance(new, dict) or not isinstance(new.get("metadata", {}), dict):
            raise ApiError(400, "the object must be a JSON object with object metadata")
        new["apiVersion"] = old.get("apiVersion", rtype.api_version)
        new["kind"] = old.get("kind", rtype.kind)
        normalize_quantities(new, rtype.group, rtype.version, rtype.kind)
        md = new.setdefault("metadata", {})
        omd = old["metadata"]
        if md.get("name", omd["name"]) != omd["name"]:
            raise ApiError(400, f'the name of the object ({md.get("name")}) does not match the '
                           f'name on the URL ({omd["name"]})')
        if rtype.namespaced and md.get("namespace", omd.get("namespace")) != omd.get("namespace"):
            raise ApiError(400, "the namespace of the provided object does not match the namespace "
                           "sent on the request")
        if subresource == "status":
            # Only status changes through /status.
            kept = deep_copy(old)
            kept["status"] = new["status"] if "status" in new else kept.get("status")
            kept["metadata"]["resourceVersion"] = md.get("resourceVersion")
            new, md = kept, kept["metadata"]
        elif rtype.has_status and rtype.kind != "Node" and subresource != "binding":
            # ...and never through the main resource (upstream status strategy).
            if "status" in old:  # a copy: `old` may be the watch cache's
                new["status"] = deep_copy(old["status"])
            else:
                new.pop("status", None)
        # System fields are the server's.
        for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "generation", "selfLink"):
            if f in omd:
                md[f] = omd[f]
            else:
                md.pop(f, None)
        if rtype.kind == "Namespace":
            # spec.finalizers only change through /finalize.
            if subresource != "finalize":
                new.setdefault("spec", {})["finalizers"] = list((old.get("spec") or {}).get("finalizers", []))
            elif subresource == "finalize":
                new["status"] = deep_copy(old.get("status"))
        if subresource == "" or subresource == "scale":
            apply_defaults(new, rtype.group, rtype.kind)
        if "generation" in omd and _spec_part(new) != _spec_part(old):
            md["generation"] = int(omd["generation"]) + 1
        if omd.get("deletionTimestamp") and not subresource:
            # Finalizers may only be removed once deletion started.
            added = set(md.get("finalizers") or []) - set(omd.get("finalizers") or [])
            if added:
                raise ApiError(422, f'{rtype.kind} "{omd["name"]}" is invalid: metadata.finalizers: '
                               "Forbidden: no new finalizers can be added if the object is being "
                               "deleted", "Invalid", name=omd["name"], kind=rtype.kind,
                               causes=[{"reason": "FieldValueForbidden", "field": "metadata.finalizers",
                                        "message": "no new finalizers can be added if the object is "
                                        "being deleted"}])
        return new

    # -- delete ------------------------------------------------------------------

    async def delete(
        self, rtype: ResourceType, namespace: str, name: str, options: Obj, *,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """Delete per DeleteOptions. Returns (object, deleted now).

        Objects with finalizers, pods bound to a node and namespaces are only
        marked (deletionTimestamp); whoever owns the finalizer finishes the job.
        """
        key = key_of(rtype, namespace, name)
        pre = options.get("preconditions") or {}
        policy = options.get("propagationPolicy")
        if options.get("orphanDependents") is True and not policy:
            policy = "Orphan"
        elif options.get("orphanDependents") is False and not policy:
            policy = "Background"
        if policy not in (None, "Background", "Foreground", "Orphan"):
            raise ApiError(422, f'propagationPolicy "{policy}" is not supported: use Background, '
                           "Foreground or Orphan", "Invalid")
        grace = options.get("gracePeriodSeconds")
        for _ in range(MAX_CAS_RETRIES):
            kv = await self.store.get(key)
            if kv is None:
                raise not_found(rtype.plural, name, rtype.group)
            obj = kv.decode()
            md = obj["metadata"]
            if pre.get("uid") and pre["uid"] != md.get("uid"):
                raise conflict(rtype.plural, name, rtype.group,
                               f"Precondition failed: UID in precondition: {pre['uid']}, "
                               f"UID in object meta: {md.get('uid')}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != md["resourceVersion"]:
                raise conflict(rtype.plural, name, rtype.group,
                               f"Precondition failed: ResourceVersion in precondition: "
                               f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                               f"{md['resourceVersion']}")
            new = deep_copy(obj)
            nmd = new["metadata"]
            finalizers = list(nmd.get("finalizers") or [])
            if policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            if policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            if policy == "Background":
                finalizers = [f for f in finalizers if f not in ("orphan", "foregroundDeletion")]
            graceful_seconds = self._grace_period(rtype, obj, grace)
            now = datetime.now(UTC)
            if rtype.kind == "Namespace":
                # The namespace controller empties it, then finalizes.
                new.setdefault("status", {})["phase"] = "Terminating"
            mark = bool(finalizers) or graceful_seconds > 0 or (
                rtype.kind == "Namespace" and (new.get("spec") or {}).get("finalizers"))
            if not mark:
                if dry_run:
                    return obj, True
                try:
                    await self.store.delete(key, kv.mod_revision)
                except CasFailed:
                    continue
                return obj, True
            nmd["finalizers"] = finalizers
            if not finalizers:
                nmd.pop("finalizers")
            if not md.get("deletionTimestamp"):
                nmd["deletionTimestamp"] = _fmt(now + timedelta(seconds=graceful_seconds))
                nmd["deletionGracePeriodSeconds"] = graceful_seconds
            elif graceful_seconds < int(md.get("deletionGracePeriodSeconds") or 0):
                # A second delete may shorten, never lengthen, the grace period.
                nmd["deletionTimestamp"] = _fmt(now + timedelta(seconds=graceful_seconds))
                nmd["deletionGracePeriodSeconds"] = graceful_seconds
            elif new == obj:
                return obj, False
            if dry_run:
                return new, False
            try:
                rev = await self.store.update(key, encode(new), kv.mod_revision)
            except CasFailed:
                continue
            nmd["resourceVersion"] = str(rev)
            return new, False
        raise ApiError(409, f"too many concurrent writers to {rtype.plural} {name!r}; retry",
                       "Conflict")

    def _grace_period(self, rtype: ResourceType, obj: Obj, requested: Any) -> int:
        if not rtype.graceful_delete:
            return 0
        spec = obj.get("spec") or {}
        # A pod never scheduled (or already finished) has nothing to stop.
        phase = (obj.get("status") or {}).get("phase")
        if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
            return 0
        if requested is None:
            requested = spec.get("terminationGracePeriodSeconds", 30)
        try:
            seconds = int(requested)
        except (TypeError, ValueError):
            raise ApiError(400, "gracePeriodSeconds must be an integer") from None
        return max(seconds, 0)


def _finished_deleting(obj: Obj) -> bool:
    """An object marked for deletion goes away once its last finalizer is removed."""
    md = obj.get("metadata") or {}
    if not md.get("deletionTimestamp") or md.get("finalizers"):
        return False
    if obj.get("kind") == "Namespace" and (obj.get("spec") or {}).get("finalizers"):
        return False
    # Pods being terminated gracefully wait for their node agent.
    return not (obj.get("kind") == "Pod" and (md.get("deletionGracePeriodSeconds") or 0) > 0)


def _fmt(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _rv(value: str) -> int:
    try:
        rv = int(value)
    except ValueError:
        raise ApiError(400, f'invalid resource version "{value}": resourceVersion must be an '
                       "integer", "BadRequest") from None
    if rv < 0:
        raise ApiError(400, f'invalid resource version "{value}"')
    return rv


def _sort_key(obj: Obj) -> tuple[str, str]:
    return meta.namespace_of(obj), meta.name_of(obj)


def _with_namespace(match: Filter, rtype: ResourceType, namespace: str) -> Filter:
    if not (rtype.namespaced and namespace):
        return match
    return lambda o: meta.namespace_of(o) == namespace and match(o)
