"""ControllerRevisions: the template history of DaemonSets and StatefulSets
(upstream's pkg/controller/history).

A revision stores a patch that re-applies the owner's pod template
(`{"spec": {"template": {..., "$patch": "replace"}}}`), a revision number,
and is named `<owner>-<hash>` with the hash of that data, so the same
template always maps to the same revision. A hash collision with different
data bumps the owner's `status.collisionCount` and hashes again.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterable
from typing import Any

from timonel.api import meta
from timonel.api.client import Client, Informer
from timonel.api.errors import ApiError
from timonel.controller import ownership
from timonel.controller.pods import controller_ref

log = logging.getLogger(__name__)

Obj = dict[str, Any]
REVISIONS = ("apps/v1", "ControllerRevision")
HASH_LABEL = "controller.kubernetes.io/hash"
# The label on pods naming the revision they were made from.
POD_REVISION_LABEL = "controller-revision-hash"

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def fnv32(data: bytes) -> int:
    """FNV-1 32-bit, as Go's hash/fnv New32 (what upstream hashes revisions with)."""
    h = 0x811C9DC5
    for b in data:
        h = (h * 0x01000193) & 0xFFFFFFFF
        h ^= b
    return h


def safe_encode(s: str) -> str:
    """Upstream's rand.SafeEncodeString: each byte to a consonant or digit."""
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in s.encode())


def canonical(data: Any) -> bytes:
    """Compact JSON with sorted keys, as Go marshals a map."""
    return json.dumps(data, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def template_patch(owner: Obj) -> Obj:
    """The revision data for an owner: its template, replacing whatever was there."""
    template = copy.deepcopy((owner.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def template_of(revision: Obj) -> Obj:
    """The pod template a revision re-applies."""
    template = copy.deepcopy(((revision.get("data") or {}).get("spec") or {}).get("template")
                             or {})
    template.pop("$patch", None)
    return template


def hash_revision(data: Obj, collision_count: int | None) -> str:
    raw = canonical(data)
    if collision_count is not None:
        raw += str(collision_count).encode()
    return safe_encode(str(fnv32(raw)))


def revision_name(prefix: str, hash_: str) -> str:
    return f"{prefix[:223]}-{hash_}"


def new_revision(owner: Obj, data: Obj, number: int, collision_count: int | None,
                 hash_label: str = HASH_LABEL) -> Obj:
    """A ControllerRevision object (not yet created) for `owner`, labelled
    with the template's labels and its hash under `hash_label` (StatefulSets:
    `controller.kubernetes.io/hash`, DaemonSets: `controller-revision-hash`)."""
    labels = dict(((((owner.get("spec") or {}).get("template") or {}).get("metadata") or {})
                   .get("labels")) or {})
    hash_ = hash_revision(data, collision_count)
    labels[hash_label] = hash_
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": revision_name(meta.name_of(owner), hash_),
                         "namespace": meta.namespace_of(owner), "labels": labels,
                         "ownerReferences": [controller_ref(owner)]},
            "data": data, "revision": number}


def revision_number(rev: Obj) -> int:
    return int(rev.get("revision") or 0)


def sort_revisions(revisions: Iterable[Obj]) -> list[Obj]:
    """Oldest first: by revision number, then creation, then name."""
    return sorted(revisions, key=lambda r: (
        revision_number(r), str((r.get("metadata") or {}).get("creationTimestamp") or ""),
        meta.name_of(r)))


def equal(a: Obj, b: Obj) -> bool:
    return canonical(a.get("data")) == canonical(b.get("data"))


def next_number(revisions: list[Obj]) -> int:
    return max((revision_number(r) for r in revisions), default=0) + 1


def ensure_indexes(informer: Informer) -> None:
    ownership.ensure_ownership_indexes(informer)


async def owned_revisions(client: Client, informer: Informer, owner: Obj, owner_rtype: Any,
                          selector: Any) -> list[Obj]:
    """The owner's revisions, adopting orphans its selector matches and
    releasing those that no longer match (as for pods)."""
    return await ownership.claim(
        client, REVISIONS, owner, selector, ownership.candidates(informer, owner),
        can_adopt=ownership.owner_recheck(client, owner_rtype, owner))


async def create_revision(client: Client, owner: Obj, data: Obj, number: int,
                          collision_count: int, hash_label: str = HASH_LABEL) -> tuple[Obj, int]:
    """Create the revision for `data`, or return the equal one that exists.
    A different revision under the same name is a hash collision: count it
    and hash again. Returns (revision, collision count used)."""
    for _ in range(100):
        rev = new_revision(owner, data, number, collision_count, hash_label)
        try:
            return await client.create(REVISIONS, rev, namespace=meta.namespace_of(owner)), \
                collision_count
        except ApiError as e:
            if e.code != 409:
                raise
        existing = await client.get(REVISIONS, meta.namespace_of(owner), meta.name_of(rev))
        if equal(existing, rev):
            return existing, collision_count
        log.info("controller revision hash collision owner=%s/%s name=%s",
                 meta.namespace_of(owner), meta.name_of(owner), meta.name_of(rev))
        collision_count += 1
    raise RuntimeError(f"could not find a free name for a revision of {meta.name_of(owner)} "
                       "after 100 hash collisions")


async def set_revision_number(client: Client, rev: Obj, number: int) -> Obj:
    if revision_number(rev) == number:
        return rev
    body = copy.deepcopy(rev)
    body["revision"] = number
    return await client.update(REVISIONS, body)


async def truncate(client: Client, revisions: list[Obj], live: set[str], limit: int) -> None:
    """Delete the oldest revisions not in `live` (names) beyond `limit`."""
    history = [r for r in sort_revisions(revisions) if meta.name_of(r) not in live]
    for rev in history[:max(0, len(history) - limit)]:
        try:
            await client.delete(REVISIONS, meta.namespace_of(rev), meta.name_of(rev))
        except ApiError as e:
            if e.code != 404:
                raise


async def update_revision(client: Client, owner: Obj, revisions: list[Obj],
                          hash_label: str = HASH_LABEL) -> tuple[Obj, list[Obj], int]:
    """The revision of the owner's current template, made the newest: an
    equal one is reused (a rollback renumbers it), else one is created.
    Returns (that revision, all others, the collision count used)."""
    data = template_patch(owner)
    probe = {"data": data}
    ordered = sort_revisions(revisions)
    equal_ones = [r for r in ordered if equal(r, probe)]
    others = [r for r in ordered if not equal(r, probe)]
    collisions = int((owner.get("status") or {}).get("collisionCount") or 0)
    top = next_number(ordered)
    if equal_ones:
        *dups, rev = equal_ones
        others.extend(dups)
        if ordered and meta.name_of(ordered[-1]) != meta.name_of(rev):
            rev = await set_revision_number(client, rev, top)
        return rev, others, collisions
    rev, collisions = await create_revision(client, owner, data, top, collisions, hash_label)
    return rev, others, collisions
