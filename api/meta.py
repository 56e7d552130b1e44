"""Small helpers over object metadata shared by the server and its clients."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

# Upstream's generateName alphabet: no vowels (no accidental words), no
# look-alike characters.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now() -> str:
    """An RFC 3339 timestamp with second precision, as metav1.Time serializes."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """metav1.MicroTime (events, leases)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> datetime:
    """Accepts `Z` and `+00:00` (the Python client sends the latter)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def new_uid() -> str:
    return str(uuid.uuid4())


def generate_name(base: str) -> str:
    # Upstream truncates the base so the result stays within 63 characters.
    return base[:58] + "".join(random.choices(_NAME_ALPHABET, k=5))


def name_of(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def namespace_of(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def labels_of(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def resource_version(obj: dict[str, Any]) -> int:
    rv = (obj.get("metadata") or {}).get("resourceVersion") or "0"
    try:
        return int(rv)
    except ValueError:
        return 0
