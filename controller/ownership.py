"""Who owns what: informer indexes by controller, and adoption/release
(upstream's ControllerRefManager).

An owner (ReplicaSet, Deployment, Job...) claims the objects its selector
matches: those it already controls and still match are kept, those that no
longer match are released (its ownerReference removed), and orphans that
match are adopted (its controller reference added) — but only after a live
read confirms the owner is not being deleted, so a dying owner never grabs
what a new one should have. Objects controlled by someone else are never
touched.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from timonel.api import meta
from timonel.api.client import Client, Informer
from timonel.api.client.rest import RType
from timonel.api.errors import ApiError
from timonel.api.selectors import LabelSelector, matches
from timonel.controller.pods import controller_of, controller_ref

log = logging.getLogger(__name__)

Obj = dict[str, Any]

BY_CONTROLLER = "controller-uid"
ORPHANS = "orphans-by-namespace"


def controller_uid_index(obj: Obj) -> list[str]:
    ref = controller_of(obj)
    return [str(ref.get("uid"))] if ref and ref.get("uid") else []


def orphan_index(obj: Obj) -> list[str]:
    return [] if controller_of(obj) else [meta.namespace_of(obj)]


def add_index(informer: Informer, name: str, fn: Callable[[Obj], list[str]]) -> None:
    """Add an index to a shared informer unless another controller did."""
    try:
        informer.add_index(name, fn)
    except ValueError:
        pass


def ensure_ownership_indexes(informer: Informer) -> None:
    add_index(informer, BY_CONTROLLER, controller_uid_index)
    add_index(informer, ORPHANS, orphan_index)


def controlled_by(informer: Informer, owner: Obj) -> list[Obj]:
    """Cached objects whose controller reference points at `owner`."""
    uid = str((owner.get("metadata") or {}).get("uid") or "")
    ns = meta.namespace_of(owner)
    return [o for o in informer.by_index(BY_CONTROLLER, uid) if meta.namespace_of(o) == ns]


def candidates(informer: Informer, owner: Obj) -> list[Obj]:
    """What `owner` might claim: what it controls plus the orphans of its
    namespace (the informer needs `ensure_ownership_indexes`)."""
    return controlled_by(informer, owner) + informer.by_index(ORPHANS, meta.namespace_of(owner))


def resolve_controller(ref: Obj | None, kind: str, lookup: Callable[[str], Obj | None]) -> Obj | None:
    """The cached owner a controller reference points at, if it is of `kind`
    and still the same object (same UID); upstream's resolveControllerRef."""
    if not ref or ref.get("kind") != kind:
        return None
    owner = lookup(str(ref.get("name") or ""))
    if owner is None or (owner.get("metadata") or {}).get("uid") != ref.get("uid"):
        return None
    return owner


async def adopt(client: Client, rtype: RType, obj: Obj, owner: Obj) -> Obj:
    """Add `owner`'s controller reference. A strategic merge patch merges
    ownerReferences by UID, so a concurrent adopter's reference is kept and
    the API server refuses the second controller; the object's UID makes a
    recreated namesake fail instead of being adopted."""
    return await client.patch(rtype, meta.namespace_of(obj), meta.name_of(obj), {
        "metadata": {"ownerReferences": [controller_ref(owner)],
                     "uid": (obj.get("metadata") or {}).get("uid")}}, patch_type="strategic")


async def release(client: Client, rtype: RType, obj: Obj, owner: Obj) -> Obj | None:
    uid = (owner.get("metadata") or {}).get("uid")
    try:
        return await client.patch(rtype, meta.namespace_of(obj), meta.name_of(obj), {
            "metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}],
                         "uid": (obj.get("metadata") or {}).get("uid")}},
            patch_type="strategic")
    except ApiError as e:
        # Gone, or no longer ours (then the next sync looks again).
        if e.code in (404, 409, 422):
            return None
        raise


def owner_recheck(client: Client, rtype: RType, owner: Obj) -> Callable[[], Awaitable[None]]:
    """A check, run at most once per sync before the first adoption, that
    the live owner is the cached one and not being deleted (upstream's
    RecheckDeletionTimestamp)."""
    done = False

    async def check() -> None:
        nonlocal done
        if done:
            return
        fresh = await client.get(rtype, meta.namespace_of(owner), meta.name_of(owner))
        fmd = fresh.get("metadata") or {}
        if fmd.get("uid") != (owner.get("metadata") or {}).get("uid"):
            raise RuntimeError(f"original {owner.get('kind')} {meta.namespace_of(owner)}/"
                               f"{meta.name_of(owner)} is gone: got uid {fmd.get('uid')}")
        if fmd.get("deletionTimestamp"):
            raise RuntimeError(f"{owner.get('kind')} {meta.namespace_of(owner)}/"
                               f"{meta.name_of(owner)} has just been deleted at "
                               f"{fmd['deletionTimestamp']}")
        done = True

    return check


async def claim(client: Client, rtype: RType, owner: Obj, selector: LabelSelector,
                objects: list[Obj], *, can_adopt: Callable[[], Awaitable[None]] | None = None,
                ) -> list[Obj]:
    """The objects `owner` controls after adopting and releasing (upstream's
    ClaimObject). A failed adoption leaves the object out; the first error
    other than a lost race is raised after all objects were looked at."""
    owner_uid = (owner.get("metadata") or {}).get("uid")
    owner_deleting = bool((owner.get("metadata") or {}).get("deletionTimestamp"))
    claimed: list[Obj] = []
    error: BaseException | None = None
    for obj in objects:
        ref = controller_of(obj)
        labels = meta.labels_of(obj)
        if ref is not None:
            if ref.get("uid") != owner_uid:
                continue
            if matches(selector, labels):
                claimed.append(obj)
                continue
            if owner_deleting:
                # A dying owner changes nothing: it neither keeps nor releases.
                continue
            log.info("releasing object=%s/%s owner=%s", meta.namespace_of(obj), meta.name_of(obj),
                     meta.name_of(owner))
            await release(client, rtype, obj, owner)
            continue
        if owner_deleting or not matches(selector, labels):
            continue
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            continue
        try:
            if can_adopt is not None:
                await can_adopt()
            adopted = await adopt(client, rtype, obj, owner)
        except ApiError as e:
            if e.code in (404, 409):
                continue
            error = error or e
            continue
        except RuntimeError as e:
            error = error or e
            break
        log.info("adopted object=%s/%s owner=%s", meta.namespace_of(obj), meta.name_of(obj),
                 meta.name_of(owner))
        claimed.append(adopted)
    if error is not None:
        raise error
    return claimed
