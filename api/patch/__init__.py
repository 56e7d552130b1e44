"""Patching objects: the four PATCH content types of the Kubernetes API.

`apply_patch` is the single entry point for the API server; the functions it
dispatches to are usable on their own:

- `merge_patch` (RFC 7386, `application/merge-patch+json`)
- `json_patch` (RFC 6902, `application/json-patch+json`)
- `strategic_merge_patch` (`application/strategic-merge-patch+json`, built-in kinds)
- `server_side_apply` (`application/apply-patch+yaml`) and `record_update`
  (managedFields bookkeeping for every other write)

All are plain functions over JSON dicts: inputs are never modified.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import yaml

from timonel.api.errors import ApiError
from timonel.api.patch.apply import server_side_apply
from timonel.api.patch.json_patch import json_patch
from timonel.api.patch.jsonvalue import type_name
from timonel.api.patch.merge import merge_patch
from timonel.api.patch.record import record_update
from timonel.api.patch.strategic import strategic_merge_patch

log = logging.getLogger(__name__)

__all__ = [
    "APPLY_PATCH", "JSON_PATCH", "MERGE_PATCH", "PATCH_TYPES", "STRATEGIC_MERGE_PATCH",
    "apply_patch", "json_patch", "merge_patch", "parse_apply_body", "record_update",
    "server_side_apply", "strategic_merge_patch",
]

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)
# Custom resources have no strategic merge metadata; upstream refuses that type for them.
CUSTOM_RESOURCE_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH)


def _unsupported(accepted: tuple[str, ...]) -> ApiError:
    return ApiError(415, "the body of the request was in an unknown format - accepted media "
                         f"types include: {', '.join(accepted)}", "UnsupportedMediaType")


def apply_patch(content_type: str, live: dict[str, Any] | None, body: bytes, *,
                definition: str | None, manager: str, force: bool, now: str) -> dict[str, Any]:
    """The object after applying the PATCH `body` of `content_type` to `live`.

    `definition` is the OpenAPI definition name of the kind (None for custom
    resources). `live` may be None only for apply patches (create). For
    apply, the result carries updated `metadata.managedFields`; for the other
    types the caller records the write with `record_update`. The result never
    shares structure with `live`. Raises ApiError: 415 for an unsupported
    type, 400 for a malformed body (with line and column), 422/409 from the
    patch itself.
    """
    ctype = content_type.split(";", 1)[0].strip().lower()
    accepted = PATCH_TYPES if definition is not None else CUSTOM_RESOURCE_PATCH_TYPES
    if ctype not in accepted:
        raise _unsupported(accepted)
    if ctype == APPLY_PATCH:
        applied = parse_apply_body(body)
        return server_side_apply(live, applied, manager, force, definition, now)
    if live is None:
        raise ApiError(404, "the object to patch does not exist (only an apply patch creates "
                            "objects)", "NotFound")
    if force:
        message = "force: Forbidden: may not be specified for non-apply patch"
        raise ApiError(422, f'PatchOptions.meta.k8s.io "" is invalid: {message}', "Invalid",
                       causes=[{"type": "FieldValueForbidden", "field": "force",
                                "message": "Forbidden: may not be specified for non-apply patch"}])
    patch = _parse_json(body)
    if ctype == JSON_PATCH:
        result = json_patch(live, patch)
    elif not isinstance(patch, dict):
        raise ApiError(400, f"a {'merge' if ctype == MERGE_PATCH else 'strategic merge'} patch "
                            f"must be a JSON object, not {type_name(patch)}", "BadRequest")
    elif ctype == MERGE_PATCH:
        result = merge_patch(live, patch)
    else:
        result = strategic_merge_patch(live, patch, definition)
    if not isinstance(result, dict):
        raise ApiError(422, f"the patched object must be a JSON object, not {type_name(result)}",
                       "Invalid", causes=[{"type": "FieldValueInvalid", "field": "patch",
                                           "message": "the patch replaces the whole object"}])
    return result


def _parse_json(body: bytes) -> Any:
    if not body.strip():
        raise ApiError(400, "the patch body is empty", "BadRequest")
    try:
        return json.loads(body)
    except UnicodeDecodeError as e:
        raise ApiError(400, f"error decoding patch: the body is not UTF-8: {e}",
                       "BadRequest") from None
    except json.JSONDecodeError as e:
        raise ApiError(400, f"error decoding patch: line {e.lineno}, column {e.colno}: {e.msg}",
                       "BadRequest") from None
    except RecursionError:
        raise ApiError(400, "error decoding patch: nested too deeply", "BadRequest") from None


class _ApplyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML as Kubernetes reads it: timestamps stay strings (sigs.k8s.io/yaml goes via JSON)."""


_ApplyLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_map(loader: Any, node: Any) -> Any:
    """A mapping with string keys, as JSON needs: `1: a` and `true: b` must not collide."""
    data: dict[str, Any] = {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, dict | list):
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a string or a number", key_node.start_mark)
        data[_key_text(key)] = loader.construct_object(value_node, deep=True)


_ApplyLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)


def parse_apply_body(body: bytes) -> dict[str, Any]:
    """An apply patch body (YAML or JSON) as an object; 400 with the position if malformed."""
    if not body.strip():
        raise ApiError(400, "the apply patch body is empty", "BadRequest")
    if body.lstrip()[:1] == b"{":
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError):
            obj = _parse_yaml(body)
    else:
        obj = _parse_yaml(body)
    if not isinstance(obj, dict):
        raise ApiError(400, f"error decoding YAML: an apply patch must be an object, not "
                            f"{type_name(obj)}", "BadRequest")
    return obj


def _parse_yaml(body: bytes) -> Any:
    try:
        return yaml.load(body, Loader=_ApplyLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ApiError(400, f"error decoding YAML: {where}{e.problem or e.context}",
                       "BadRequest") from None
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as e:
        raise ApiError(400, f"error decoding YAML: {e}", "BadRequest") from None


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return str(key)
