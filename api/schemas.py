"""The upstream Kubernetes OpenAPI definitions, as shipped by kubernetes-validate.

One place reads them; validation, strategic merge patch, `explain` and the
OpenAPI documents served to kubectl all derive from the same definitions, so
they cannot disagree about a field.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import kubernetes_validate

# The schema version we serve; it matches the Kubernetes minor we claim in /version.
KUBE_VERSION = "1.37.0"


def _schema_dir(strict: bool) -> str:
    base = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema")
    suffix = "-local-strict" if strict else "-local"
    wanted = os.path.join(base, f"v{KUBE_VERSION}{suffix}")
    if os.path.isdir(wanted):
        return wanted
    # A newer kubernetes-validate may drop old versions: take the newest it has.
    candidates = sorted(d for d in os.listdir(base) if d.endswith(suffix))
    return os.path.join(base, candidates[-1])


@functools.cache
def definitions() -> dict[str, Any]:
    """All definitions by their OpenAPI name, e.g. ``io.k8s.api.core.v1.Pod``."""
    with open(os.path.join(_schema_dir(strict=False), "_definitions.json")) as f:
        defs: dict[str, Any] = json.load(f)["$defs"]
    return defs


@functools.cache
def strict_definitions_document() -> dict[str, Any]:
    """The whole strict `_definitions.json` (additionalProperties: false)."""
    with open(os.path.join(_schema_dir(strict=True), "_definitions.json")) as f:
        doc: dict[str, Any] = json.load(f)
    return doc


@functools.cache
def _gvk_index() -> dict[tuple[str, str, str], str]:
    index: dict[tuple[str, str, str], str] = {}
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            key = (gvk.get("group", ""), gvk["version"], gvk["kind"])
            # Several definitions may claim e.g. DeleteOptions for every group;
            # the first, canonical one wins.
            index.setdefault(key, name)
    return index


def definition_name(group: str, version: str, kind: str) -> str | None:
    """The OpenAPI definition name of a group/version/kind, or None if unknown."""
    return _gvk_index().get((group, version, kind))


def definition(name: str) -> dict[str, Any]:
    return definitions()[name]


def resolve_ref(schema: dict[str, Any]) -> dict[str, Any]:
    """Follow a `$ref` (local `#/$defs/...` form) to the schema it names."""
    ref = schema.get("$ref")
    if not ref:
        return schema
    return definitions()[ref.rsplit("/", 1)[-1]]
