"""Validation of API objects: the upstream schema, then upstream's semantic rules.

`validate()` is what the API server calls for every create and update. It
answers as kube-apiserver does:
- wrong JSON types, bad quantities/timestamps/base64: 400 BadRequest
  `<Kind> in version "<v>" cannot be handled as a <Kind>: json: cannot unmarshal ...`;
- unknown fields: with fieldValidation=Strict 400 BadRequest
  `... cannot be handled as a <Kind>: strict decoding error: unknown field "spec.foo"`;
  with Warn they are dropped and returned as warnings (`unknown field "spec.foo"`);
  with Ignore they are silently dropped;
- everything else: 422 Invalid, one cause per field.
"""

from __future__ import annotations

import logging
from typing import Any

from timonel.api.errors import ApiError, invalid
from timonel.api.resources import ResourceType
from timonel.api.validation import field
from timonel.api.validation.meta import check_request_namespace
from timonel.api.validation.schema import check, prune_unknown, schema_errors
from timonel.api.validation.semantic import semantic_errors, validate_update

__all__ = ["FIELD_VALIDATION", "check_request_namespace", "schema_errors", "semantic_errors",
           "validate", "validate_update"]

log = logging.getLogger(__name__)

FIELD_VALIDATION = ("Strict", "Warn", "Ignore")


def _cannot_handle(rtype: ResourceType, detail: str) -> str:
    return f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}: {detail}'


def validate(obj: dict[str, Any], rtype: ResourceType, *, old: dict[str, Any] | None = None,
             field_validation: str = "Strict") -> list[str]:
    """Validate one object about to be stored; returns warnings, raises ApiError if refused.

    Under Warn and Ignore, unknown fields are removed from `obj` in place (the
    stored object never carries them, as upstream). `old` is the stored object
    on updates, for the immutable-field rules.
    """
    if field_validation not in FIELD_VALIDATION:
        raise ApiError(400, f'fieldValidation "{field_validation}" is not supported: use '
                            "Strict, Warn or Ignore")
    md = obj.get("metadata")
    name = md.get("name", "") if isinstance(md, dict) else ""
    name = name if isinstance(name, str) else ""
    result = check(obj, rtype)
    decode = [c for c in result.causes if c["reason"] == field.TYPE_INVALID]
    if decode:
        raise ApiError(400, _cannot_handle(rtype, decode[0]["message"]), "BadRequest",
                       name=name or None, group=rtype.group, kind=rtype.kind, causes=decode)
    warnings: list[str] = []
    if result.unknown:
        unknown = [f'unknown field "{p}"' for p in result.unknown_paths]
        if field_validation == "Strict":
            raise ApiError(400, _cannot_handle(rtype, "strict decoding error: " + ", ".join(unknown)),
                           "BadRequest", name=name or None, group=rtype.group, kind=rtype.kind)
        prune_unknown(obj, result.unknown)
        if field_validation == "Warn":
            warnings = unknown
    causes = result.causes + semantic_errors(obj, rtype, creating=old is None)
    if old is not None:
        causes += validate_update(obj, old, rtype)
    if causes:
        causes = field.dedupe(causes)
        log.debug("msg=invalid kind=%s name=%s causes=%d", rtype.kind, name, len(causes))
        raise invalid(rtype.kind, name, causes, group=rtype.group)
    return warnings
