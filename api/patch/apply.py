"""Server-side apply and field ownership for ordinary writes (`metadata.managedFields`).

`server_side_apply` is `application/apply-patch+yaml`: the manager states the
fields it cares about; they are merged into the live object (maps merged, list
maps merged by key, atomic values replaced); fields it applied last time and
no longer applies are removed unless another manager owns them too; a field
another manager owns with a different value is a conflict (409) unless
`force`, which moves the ownership.

`record_update` (record.py) is the bookkeeping for the other writes.

Like upstream, kubectl's own manager (`kubectl`) may take over fields from
client-side apply without conflict when the live value is still the one in
the `last-applied-configuration` annotation, and keeps that annotation in step.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from timonel.api.errors import ApiError, bad_request
from timonel.api.jsonutil import deep_copy
from timonel.api.patch.fieldsets import (
    STRIPPED,
    FieldSet,
    compare,
    remove_paths,
    to_field_set,
)
from timonel.api.patch.managed import (
    APPLY,
    BEFORE_FIRST_APPLY,
    UPDATE,
    Manager,
    ManagerKey,
    conflict_error,
    decode_managers,
    drop_empty,
    encode_managers,
    managed_fields_of,
    manager_key,
    without_managed_fields,
)
from timonel.api.patch.shapes import Shape, root_shape
from timonel.api.patch.ssa_merge import merge_applied

log = logging.getLogger(__name__)

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# Set by the server; a null for them in an applied configuration means nothing.
_SYSTEM_METADATA = ("creationTimestamp", "uid", "resourceVersion", "generation", "selfLink",
                    "deletionTimestamp", "deletionGracePeriodSeconds")


def server_side_apply(live: dict[str, Any] | None, applied: dict[str, Any], manager: str,
                      force: bool, definition: str | None, now: str) -> dict[str, Any]:
    """The object after `manager` applies `applied` to `live` (None: create).

    Returns a new object (sharing nothing with the inputs) whose
    `metadata.managedFields` records the apply. Raises ApiError 400 for a bad
    configuration, 422 for malformed list items, 409 for conflicts.
    """
    config = _check_applied(live, applied, manager)
    shape = root_shape(definition)
    api_version = str(config["apiVersion"])
    new_set = to_field_set(config, shape, strict=True) - STRIPPED

    live_view = without_managed_fields(live) if live is not None else {}
    stored: dict[ManagerKey, tuple[FieldSet, Any]] = {}
    managers = decode_managers(managed_fields_of(live), stored)
    if live is not None and not managers:
        # Fields set before anyone applied belong to a placeholder, so that the
        # first apply conflicts instead of silently taking them (upstream).
        seed = Manager(BEFORE_FIRST_APPLY, UPDATE, str(live.get("apiVersion") or api_version),
                       now, "", to_field_set(live_view, shape) - STRIPPED)
        if seed.fields:
            managers[seed.key] = seed
    key = manager_key(manager, APPLY, api_version)
    previous = managers.get(key)

    merged = merge_applied(deep_copy(live_view), config, shape)
    if previous is not None and previous.fields:
        _prune(merged, previous.fields, new_set, managers, key, shape)

    conflicts: dict[ManagerKey, FieldSet] = {}
    if any(k != key for k in managers):
        # What changed only matters to the other managers (a create or the
        # sole manager re-applying skips the diff).
        cmp = compare(live_view, merged, shape)
        changed = cmp.added | cmp.modified
        conflicts = {k: m.fields & changed for k, m in managers.items()
                     if k != key and m.fields & changed}
        if conflicts and not force:
            remaining = _not_allowed_by_last_applied(live_view, conflicts, shape) \
                if manager == "kubectl" else conflicts
            if remaining:
                raise conflict_error(remaining, managers)
        for k, fields in conflicts.items():
            managers[k].fields = managers[k].fields - fields
        for k, m in managers.items():
            if k != key:
                m.fields = m.fields - cmp.removed
    managers[key] = Manager(manager, APPLY, api_version, now, "", new_set)
    drop_empty(managers)
    if manager == "kubectl":
        _sync_last_applied(merged, config)
    _set_managed_fields(merged, managers, stored)
    log.debug("server_side_apply manager=%s fields=%d conflicts_forced=%d", manager, len(new_set),
              sum(len(c) for c in conflicts.values()))
    return merged


def _check_applied(live: dict[str, Any] | None, applied: Any, manager: str) -> dict[str, Any]:
    if not manager:
        raise ApiError(422, 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required '
                            "value: is required for apply patch", "Invalid",
                       causes=[{"type": "FieldValueRequired", "field": "fieldManager",
                                "message": "Required value: is required for apply patch"}])
    if not isinstance(applied, dict):
        raise bad_request("an applied configuration must be an object with apiVersion, kind "
                          "and metadata.name")
    api_version, kind = applied.get("apiVersion"), applied.get("kind")
    if not isinstance(api_version, str) or not api_version:
        raise bad_request("apiVersion must be set in an applied configuration")
    if not isinstance(kind, str) or not kind:
        raise bad_request("kind must be set in an applied configuration")
    if live is not None:
        if live.get("apiVersion") and api_version != live.get("apiVersion"):
            raise bad_request(f"Incorrect version specified in apply patch. Specified patch "
                              f"version: {api_version}, expected: {live.get('apiVersion')}")
        if live.get("kind") and kind != live.get("kind"):
            raise bad_request(f"Incorrect kind specified in apply patch. Specified patch kind: "
                              f"{kind}, expected: {live.get('kind')}")
    md = applied.get("metadata")
    if md is None:
        return applied
    if not isinstance(md, dict):
        raise bad_request("metadata must be an object in an applied configuration")
    if md.get("managedFields") is not None:
        raise bad_request("metadata.managedFields must be nil in an applied configuration: "
                          "remove it and apply again")
    if any(md.get(k, 0) is None for k in (*_SYSTEM_METADATA, "managedFields")):
        cleaned = {k: v for k, v in md.items()
                   if not (v is None and k in (*_SYSTEM_METADATA, "managedFields"))}
        return {**applied, "metadata": cleaned}
    return applied


def _prune(merged: dict[str, Any], previous: FieldSet, new_set: FieldSet,
           managers: dict[ManagerKey, Manager], key: ManagerKey, shape: Shape) -> None:
    """Remove what this manager applied before and no longer applies, unless others own it."""
    keep = set(new_set)
    for k, m in managers.items():
        if k != key:
            keep |= m.fields
    stale = previous - keep
    if not stale:
        return
    # A stale list item or map stays if someone still owns something inside it.
    kept_prefixes = {p[:i] for p in keep for i in range(1, len(p))}
    remove_paths(merged, [p for p in stale if p not in kept_prefixes], shape)


def _not_allowed_by_last_applied(live_view: dict[str, Any],
                                 conflicts: dict[ManagerKey, FieldSet],
                                 shape: Shape) -> dict[ManagerKey, FieldSet]:
    """The conflicts left after allowing kubectl to take over its own client-side applies."""
    annotations = (live_view.get("metadata") or {}).get("annotations") or {}
    text = annotations.get(LAST_APPLIED) if isinstance(annotations, dict) else None
    if not isinstance(text, str) or not text:
        return conflicts
    try:
        last = json.loads(text)
    except ValueError:
        return conflicts
    if not isinstance(last, dict):
        return conflicts
    allowed = to_field_set(last, shape) - compare(last, live_view, shape).modified
    remaining = {k: c - allowed for k, c in conflicts.items()}
    return {k: c for k, c in remaining.items() if c}


def _sync_last_applied(merged: dict[str, Any], config: dict[str, Any]) -> None:
    md = merged.get("metadata")
    annotations = md.get("annotations") if isinstance(md, dict) else None
    if not isinstance(annotations, dict) or LAST_APPLIED not in annotations:
        return
    cfg_md = config.get("metadata")
    if isinstance(cfg_md, dict) and isinstance(cfg_md.get("annotations"), dict):
        cfg_annotations = {k: v for k, v in cfg_md["annotations"].items() if k != LAST_APPLIED}
        cfg_md = {**cfg_md, "annotations": cfg_annotations}
        if not cfg_annotations:
            del cfg_md["annotations"]
        config = {**config, "metadata": cfg_md}
    annotations[LAST_APPLIED] = json.dumps(config, separators=(",", ":"), ensure_ascii=False)


def _set_managed_fields(obj: dict[str, Any], managers: dict[ManagerKey, Manager],
                        stored: dict[ManagerKey, tuple[FieldSet, Any]]) -> None:
    entries = encode_managers(managers, stored)
    md = obj.get("metadata")
    if not isinstance(md, dict):
        if not entries:
            return
        md = obj["metadata"] = {}
    if entries:
        md["managedFields"] = entries
    else:
        md.pop("managedFields", None)
