"""Server-side printing: `meta.k8s.io/v1` Tables as kube-apiserver builds them.

`kubectl get` asks for `application/json;as=Table;v=v1;g=meta.k8s.io` and prints
the columns it receives, so the columns and cells here follow upstream's
printers (`pkg/printers/internalversion/printers.go`) kind by kind; kinds
without a printer get upstream's default table (NAME, CREATED AT). As upstream,
the server always builds the wide table: columns with priority 1 are in every
row and kubectl hides them unless asked for `-o wide`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from timonel.api.errors import bad_request
from timonel.api.resources import ResourceType
from timonel.api.selectors import go_quote
from timonel.api.server.tables import cluster, core, network, pods, workloads
from timonel.api.server.tables.common import (
    META,
    NAME,
    Column,
    Obj,
    Printer,
    column_definitions,
    human_duration,
    meta,
    name,
    parse_time,
)

__all__ = ["INCLUDE_OBJECT_VALUES", "human_duration", "printer_for", "to_table"]


def _created_at(obj: Obj, _now: datetime) -> list[Any]:
    created = parse_time(meta(obj).get("creationTimestamp"))
    if created is None:
        return [name(obj), "0001-01-01T00:00:00Z"]  # Go's zero time in RFC 3339
    return [name(obj), created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")]


DEFAULT = Printer((NAME, Column("Created At", "date", META + "#creationTimestamp")), _created_at)

PRINTERS: dict[tuple[str, str], Printer] = {
    **pods.PRINTERS, **core.PRINTERS, **network.PRINTERS, **workloads.PRINTERS,
    **cluster.PRINTERS,
}

INCLUDE_OBJECT_VALUES = ("None", "Metadata", "Object")


def printer_for(rtype: ResourceType) -> Printer:
    return PRINTERS.get((rtype.group, rtype.kind), DEFAULT)


def to_table(
    objects: list[dict[str, Any]],
    rtype: ResourceType,
    *,
    include_object: str = "Metadata",
    now: datetime | None = None,
    list_meta: dict[str, Any] | None = None,
    include_headers: bool = True,
    api_version: str = "meta.k8s.io/v1",
) -> dict[str, Any]:
    """The Table for `objects` of one resource type.

    `include_object` is the `includeObject` query parameter: "Metadata" (the
    default, a PartialObjectMetadata per row; kubectl's NAMESPACE column of
    `get -A` reads it), "Object" (the whole object) or "None". `list_meta`
    supplies resourceVersion/continue/remainingItemCount for a list; without it
    a single object's resourceVersion is used, as upstream does for a get or a
    watch event. Upstream sends column definitions only with the first Table of
    a watch: pass `include_headers=False` for the later ones (kubectl copes
    either way). Rows share sub-dicts with `objects`; do not mutate them.
    """
    if include_object not in (*INCLUDE_OBJECT_VALUES, ""):
        raise bad_request(f"unrecognized includeObject value: {go_quote(include_object)}")
    printer = printer_for(rtype)
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": printer.cells(obj, now)}
        conditions = printer.conditions(obj) if printer.conditions else None
        if conditions:
            row["conditions"] = conditions
        if include_object == "Object":
            full = dict(obj)
            full.setdefault("apiVersion", rtype.api_version)
            full.setdefault("kind", rtype.kind)
            row["object"] = full
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": api_version,
                             "metadata": meta(obj)}
        rows.append(row)
    metadata: dict[str, Any] = {}
    if list_meta is not None:
        for key in ("resourceVersion", "continue", "remainingItemCount"):
            if list_meta.get(key) not in (None, ""):
                metadata[key] = list_meta[key]
    elif len(objects) == 1 and meta(objects[0]).get("resourceVersion"):
        metadata["resourceVersion"] = meta(objects[0])["resourceVersion"]
    return {
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": metadata,
        "columnDefinitions": ([dict(c) for c in column_definitions(printer.columns)]
                              if include_headers else []),
        "rows": rows,
    }
