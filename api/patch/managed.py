"""`metadata.managedFields`: decoding, encoding, capping, and conflict errors.

Managers are identified as upstream does: by name, operation, subresource
and, for `Update` only, the apiVersion (an applier keeps one entry whatever
version it applies with).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from timonel.api.errors import ApiError
from timonel.api.jsonutil import deep_copy
from timonel.api.patch.fieldsets import FieldSet, Path, decode, encode, path_string, sort_paths
from timonel.api.patch.fieldsv1 import is_canonical

log = logging.getLogger(__name__)

APPLY = "Apply"
UPDATE = "Update"
MAX_UPDATE_MANAGERS = 10
ANCIENT_CHANGES = "ancient-changes"
BEFORE_FIRST_APPLY = "before-first-apply"

ManagerKey = tuple[str, str, str, str]


@dataclass
class Manager:
    manager: str
    operation: str
    api_version: str
    time: str | None
    subresource: str = ""
    fields: FieldSet = field(default_factory=set)

    @property
    def key(self) -> ManagerKey:
        version = "" if self.operation == APPLY else self.api_version
        return (self.manager, self.operation, version, self.subresource)

    def describe(self) -> str:
        """How upstream names a manager in conflict messages."""
        text = json.dumps(self.manager, ensure_ascii=False)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource, ensure_ascii=False)}"
        if self.operation == UPDATE:
            text += f" using {self.api_version}"
        return text


def manager_key(manager: str, operation: str, api_version: str, subresource: str = "",
                ) -> ManagerKey:
    return Manager(manager, operation, api_version, None, subresource).key


def managed_fields_of(obj: dict[str, Any] | None) -> Any:
    """The stored `metadata.managedFields` of `obj` (None if there is none)."""
    md = (obj or {}).get("metadata")
    return md.get("managedFields") if isinstance(md, dict) else None


def without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """A shallow view of `obj` without managedFields (the inputs are never changed)."""
    md = obj.get("metadata")
    if isinstance(md, dict) and "managedFields" in md:
        return {**obj, "metadata": {k: v for k, v in md.items() if k != "managedFields"}}
    return obj


def decode_managers(entries: Any, stored: dict[ManagerKey, tuple[FieldSet, Any]] | None = None,
                    ) -> dict[ManagerKey, Manager]:
    """The managers of a `managedFields` list; unreadable entries are dropped.

    `stored`, if given, receives each manager's decoded fields next to the
    FieldsV1 they came from (for managers with a single entry), so that
    `encode_managers` can copy what did not change instead of encoding it.
    """
    out: dict[ManagerKey, Manager] = {}
    if not isinstance(entries, list):
        return out
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        if entry.get("fieldsType", "FieldsV1") != "FieldsV1":
            log.warning("managed_fields_skipped reason=fieldsType fieldsType=%s",
                        entry.get("fieldsType"))
            continue
        raw = entry.get("fieldsV1") or {}
        try:
            fields = decode(raw)
        except ValueError as e:
            log.warning("managed_fields_skipped manager=%s reason=%s", entry.get("manager"), e)
            continue
        time = entry.get("time")
        m = Manager(str(entry.get("manager") or ""), str(entry.get("operation") or ""),
                    str(entry.get("apiVersion") or ""), time if isinstance(time, str) else None,
                    str(entry.get("subresource") or ""), fields)
        seen = out.get(m.key)
        if seen is None:
            out[m.key] = m
            if stored is not None:
                stored[m.key] = (fields, raw)
        else:
            seen.fields |= fields
            if m.time and (not seen.time or m.time > seen.time):
                seen.time = m.time
            if stored is not None:
                stored.pop(m.key, None)
    return out


def manager_order(m: Manager) -> tuple[str, str, str, str, str]:
    return (m.operation, m.time or "", m.manager, m.api_version, m.subresource)


def encode_managers(managers: dict[ManagerKey, Manager],
                    stored: dict[ManagerKey, tuple[FieldSet, Any]] | None = None,
                    ) -> list[dict[str, Any]]:
    """A `managedFields` list, Apply entries first, then by time (as upstream sorts)."""
    return [manager_entry(m, _fields_v1(m, stored))
            for m in sorted(managers.values(), key=manager_order) if m.fields]


def _fields_v1(m: Manager, stored: dict[ManagerKey, tuple[FieldSet, Any]] | None,
               ) -> dict[str, Any]:
    hit = stored.get(m.key) if stored else None
    if hit is not None and hit[0] == m.fields and is_canonical(hit[1]):
        return deep_copy(hit[1])  # type: ignore[no-any-return]
    return encode(m.fields)


def manager_entry(m: Manager, fields_v1: dict[str, Any]) -> dict[str, Any]:
    """The `managedFields` entry of `m` owning `fields_v1` (its own `fields` are not read)."""
    entry: dict[str, Any] = {"manager": m.manager, "operation": m.operation,
                             "apiVersion": m.api_version}
    if m.time:
        entry["time"] = m.time
    entry["fieldsType"] = "FieldsV1"
    entry["fieldsV1"] = fields_v1
    if m.subresource:
        entry["subresource"] = m.subresource
    return entry


def drop_empty(managers: dict[ManagerKey, Manager]) -> None:
    for k in [k for k, m in managers.items() if not m.fields]:
        del managers[k]


def cap_updaters(managers: dict[ManagerKey, Manager]) -> None:
    """Keep at most 10 Update managers: fold the oldest into `ancient-changes` per version."""
    updaters = sorted((m for m in managers.values() if m.operation == UPDATE),
                      key=lambda m: m.time or "")
    count = len(updaters)
    first_of_version: dict[str, Manager] = {}
    for m in updaters:
        if count <= MAX_UPDATE_MANAGERS:
            break
        first = first_of_version.get(m.api_version)
        if first is None:
            first_of_version[m.api_version] = m
            continue
        bucket_key = manager_key(ANCIENT_CHANGES, UPDATE, m.api_version)
        if m.key == bucket_key:
            continue
        bucket = managers.get(bucket_key)
        if bucket is None:
            del managers[first.key]
            bucket = Manager(ANCIENT_CHANGES, UPDATE, m.api_version, first.time, "", first.fields)
            managers[bucket_key] = bucket
            first_of_version[m.api_version] = bucket
        bucket.fields = bucket.fields | m.fields
        bucket.time = m.time
        del managers[m.key]
        count -= 1


def conflict_error(conflicts: dict[ManagerKey, FieldSet],
                   managers: dict[ManagerKey, Manager]) -> ApiError:
    """409 Conflict shaped as upstream's apply conflict (message and one cause per field)."""
    pairs: list[tuple[Manager, Path]] = []
    for k in sorted(conflicts):
        for p in sort_paths(conflicts[k]):
            pairs.append((managers[k], p))
    causes = [{"type": "FieldManagerConflict", "message": f"conflict with {m.describe()}",
               "field": path_string(p)} for m, p in pairs]
    if len(pairs) == 1:
        m, p = pairs[0]
        message = f"Apply failed with 1 conflict: conflict with {m.describe()}: {path_string(p)}"
    else:
        lines: list[str] = []
        for k in sorted(conflicts):
            lines.append(f"conflicts with {managers[k].describe()}:")
            lines.extend(f"- {path_string(p)}" for p in sort_paths(conflicts[k]))
        message = f"Apply failed with {len(pairs)} conflicts: " + "\n".join(lines)
    return ApiError(409, message, "Conflict", causes=causes)
