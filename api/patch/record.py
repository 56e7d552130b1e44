"""Field ownership for ordinary writes: create, update and non-apply patches.

`record_update` runs on every write the API server accepts, so it avoids the
general path-set machinery where it can: a create builds the writer's FieldsV1
in one walk over the new object, and an update diffs old and new once
(skipping equal subtrees) and edits the stored FieldsV1 of each manager in
place for the few paths that changed. Stored entries not in the form this
server writes (sent by a client, or written by something else) take the
general route, which gives the same result more slowly.
"""

from __future__ import annotations

import logging
from typing import Any

from timonel.api import schemas
from timonel.api.jsonutil import deep_copy
from timonel.api.patch import fieldsv1
from timonel.api.patch.fieldsets import STRIPPED, FieldSet, compare, decode, encode
from timonel.api.patch.managed import (
    MAX_UPDATE_MANAGERS,
    UPDATE,
    Manager,
    ManagerKey,
    cap_updaters,
    decode_managers,
    drop_empty,
    encode_managers,
    managed_fields_of,
    manager_entry,
    manager_key,
    manager_order,
    without_managed_fields,
)
from timonel.api.patch.shapes import root_shape

log = logging.getLogger(__name__)

# Above this many paths a writer's additions go through a path set (one sort)
# rather than one by one into its FieldsV1 (a sort per new sibling).
_ADD_ONE_BY_ONE = 32


def definition_for(obj: dict[str, Any], api_version: str) -> str | None:
    group, _, version = api_version.rpartition("/")
    kind = obj.get("kind")
    if not isinstance(kind, str) or not version:
        return None
    return schemas.definition_name(group, version, kind)


def record_update(old: dict[str, Any] | None, new: dict[str, Any], manager: str,
                  api_version: str, now: str, *, subresource: str = "") -> dict[str, Any]:
    """`new` with `metadata.managedFields` updated for a non-apply write by `manager`.

    `old` is None on create. The manager takes ownership of every field it
    added or changed; other managers lose those fields and any removed ones.
    Managed fields sent in `new` (if they differ from `old`'s) replace the
    stored ones, and `[{}]` removes them all, as upstream allows.

    The result is a new top-level object with a new `metadata`; other parts
    are shared with `new`. `old` and `new` are not modified.
    """
    md = new.get("metadata")
    md = md if isinstance(md, dict) else {}
    sent = md.get("managedFields")
    out_md = {k: v for k, v in md.items() if k != "managedFields"}
    if sent == [{}]:
        return {**new, "metadata": out_md}
    old_entries = managed_fields_of(old)
    base = sent if isinstance(sent, list) and sent and sent != old_entries else old_entries

    shape = root_shape(definition_for(new, api_version))
    new_view = without_managed_fields(new)
    if old is None and base is None:
        # A plain create: the writer owns everything, nobody else owns anything.
        fields = fieldsv1.created_fields(new_view, shape)
        if fields:
            mine = Manager(manager, UPDATE, api_version, now, subresource)
            out_md["managedFields"] = [manager_entry(mine, fields)]
        return {**new, "metadata": out_md}

    cmp = compare(without_managed_fields(old) if old is not None else {}, new_view, shape)
    changed = cmp.added | cmp.modified
    if not changed and not cmp.removed and base is old_entries:
        # Nothing changed hands: keep the stored entries as they are.
        if old_entries:
            out_md["managedFields"] = deep_copy(old_entries)
        return {**new, "metadata": out_md}
    owned = changed - STRIPPED
    key = manager_key(manager, UPDATE, api_version, subresource)
    mine = Manager(manager, UPDATE, api_version, now, subresource)
    entries = _edit_stored(base, changed | cmp.removed, owned, key, mine)
    if entries is None:
        entries = _recompute(base, changed, cmp.removed, owned, key, mine)
    if entries:
        out_md["managedFields"] = entries
    return {**new, "metadata": out_md}


def _edit_stored(base: Any, lost: FieldSet, owned: FieldSet, key: ManagerKey,
                 mine: Manager) -> list[dict[str, Any]] | None:
    """The new entries, made by editing a copy of the stored FieldsV1 of each manager.

    None when an entry is not in the form this server writes: `_recompute`
    then reproduces upstream's reading of it.
    """
    owners: dict[ManagerKey, tuple[Manager, dict[str, Any]]] = {}
    if isinstance(base, list):
        for entry in deep_copy(base):
            if not isinstance(entry, dict):
                continue
            if entry.get("fieldsType", "FieldsV1") != "FieldsV1":
                return None
            fields = entry.get("fieldsV1") or {}
            if not fieldsv1.is_canonical(fields):
                return None
            time = entry.get("time")
            m = Manager(str(entry.get("manager") or ""), str(entry.get("operation") or ""),
                        str(entry.get("apiVersion") or ""), time if isinstance(time, str) else None,
                        str(entry.get("subresource") or ""))
            if m.key in owners:
                return None  # the same manager twice: its entries are merged
            owners[m.key] = (m, fields)
    for _, fields in owners.values():
        if fields:
            for path in lost:
                fieldsv1.discard(fields, path)
    if owned:
        held = owners.get(key)
        if held is None:
            held = owners[key] = (mine, {})
        held[0].time = mine.time
        fields = held[1]
        if not fields:
            fields.update(encode(owned))
        elif len(owned) > _ADD_ONE_BY_ONE:
            merged = encode(decode(fields) | owned)
            fields.clear()
            fields.update(merged)
        else:
            for path in owned:
                fieldsv1.add(fields, path)
    kept = [(m, fields) for m, fields in owners.values() if fields]
    if sum(1 for m, _ in kept if m.operation == UPDATE) > MAX_UPDATE_MANAGERS:
        managers = {m.key: m for m, _ in kept}
        for m, fields in kept:
            m.fields = decode(fields)
        cap_updaters(managers)
        return encode_managers(managers)
    kept.sort(key=lambda mf: manager_order(mf[0]))
    return [manager_entry(m, fields) for m, fields in kept]


def _recompute(base: Any, changed: FieldSet, removed: FieldSet, owned: FieldSet,
               key: ManagerKey, mine: Manager) -> list[dict[str, Any]]:
    """The new entries via path sets: any stored form, duplicates merged, bad ones dropped."""
    managers = decode_managers(base)
    for m in managers.values():
        m.fields = m.fields - changed - removed
    if owned:
        held = managers.get(key)
        if held is None:
            held = managers[key] = mine
        held.fields = held.fields | owned
        held.time = mine.time
    drop_empty(managers)
    cap_updaters(managers)
    return encode_managers(managers)
