"""What every printer shares: column records, ages, upstream's formatting helpers."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from timonel.api import schemas, selectors
from timonel.api.errors import ApiError

Obj = dict[str, Any]

META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
CORE = "io.k8s.api.core.v1."
APPS = "io.k8s.api.apps.v1."
BATCH = "io.k8s.api.batch.v1."


@dataclass(frozen=True)
class Column:
    name: str
    type: str = "string"
    # Literal text, or "<OpenAPI definition>#<property>": the description
    # upstream takes from the Go type's SwaggerDoc, read from the same
    # definitions we validate with.
    doc: str = ""
    priority: int = 0
    format: str = ""


@dataclass(frozen=True)
class Printer:
    columns: tuple[Column, ...]
    cells: Callable[[Obj, datetime], list[Any]]
    conditions: Callable[[Obj], list[dict[str, str]] | None] | None = None


NAME = Column("Name", format="name", doc=META + "#name")
AGE = Column("Age", doc=META + "#creationTimestamp")
CONTAINERS = Column("Containers", priority=1, doc="Names of each container in the template.")
IMAGES = Column("Images", priority=1, doc="Images referenced by each container in the template.")


def describe(doc: str) -> str:
    if not doc.startswith("io.k8s.") or "#" not in doc:
        return doc
    definition, prop = doc.split("#", 1)
    props = schemas.definitions().get(definition, {}).get("properties", {})
    return str(props.get(prop, {}).get("description", ""))


@functools.cache
def column_definitions(columns: tuple[Column, ...]) -> tuple[dict[str, Any], ...]:
    return tuple({"name": c.name, "type": c.type, "format": c.format,
                  "description": describe(c.doc), "priority": c.priority} for c in columns)


# ---------------------------------------------------------------------------
# Time


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (Time or MicroTime) as an aware datetime; None if unset."""
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def human_duration(d: timedelta) -> str:
    """Upstream `duration.HumanDuration`: ~2-3 significant figures ("5s", "3m20s", "4h", "2d3h")."""
    # Go works on integer nanoseconds and truncates toward zero.
    micros = (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds
    seconds = int(micros / 1_000_000)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def since(value: Any, now: datetime) -> str:
    """Upstream `translateTimestampSince`: "<unknown>" for an unset time."""
    t = value if isinstance(value, datetime) else parse_time(value)
    if t is None:
        return "<unknown>"
    return human_duration(now - t)


def age(obj: Obj, now: datetime) -> str:
    return since(meta(obj).get("creationTimestamp"), now)


# ---------------------------------------------------------------------------
# Reading objects leniently: a printer must never fail on a half-filled object.


def meta(obj: Obj) -> Obj:
    md = obj.get("metadata")
    return md if isinstance(md, dict) else {}


def name(obj: Obj) -> str:
    return text(meta(obj).get("name"))


def sub(obj: Any, *path: str) -> Obj:
    """The dict at `path`, or {} if any step is missing."""
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj if isinstance(obj, dict) else {}


def items(obj: Any, key: str) -> list[Obj]:
    value = obj.get(key) if isinstance(obj, dict) else None
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def num(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def quantity(value: Any) -> str:
    """A resource quantity as stored; "0" when unset, like a zero `resource.Quantity`."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return "0"


# ---------------------------------------------------------------------------
# Upstream formatting helpers


def format_labels(labels: Any) -> str:
    """`labels.FormatLabels`: "k=v,..." sorted by key, or "<none>"."""
    if not isinstance(labels, dict) or not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def selector_text(sel: Any) -> str:
    """`LabelSelectorAsSelector(sel).String()`; raises ApiError if invalid."""
    return selectors.to_text(selectors.from_label_selector_dict(sel if isinstance(sel, dict)
                                                                else None))


def format_label_selector(sel: Any) -> str:
    """`metav1.FormatLabelSelector`: "<none>" when it selects nothing or everything."""
    try:
        s = selector_text(sel)
    except ApiError:
        return "<error>"
    return s or "<none>"


def containers_cells(pod_spec: Obj) -> list[str]:
    """`layoutContainerCells`: container names and images, comma separated."""
    containers = items(pod_spec, "containers")
    return [",".join(text(c.get("name")) for c in containers),
            ",".join(text(c.get("image")) for c in containers)]


def join_host_port(host: str, port: Any) -> str:
    """Go's `net.JoinHostPort`."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def list_with_more(values: list[str], more: bool, count: int, limit: int) -> str:
    """`listWithMoreString`."""
    joined = ",".join(values)
    if more:
        return f"{joined} + {count - limit} more..."
    return joined or "<unset>"
