"""JSON merge patch (RFC 7386), `application/merge-patch+json`."""

from __future__ import annotations

from typing import Any

from timonel.api.jsonutil import deep_copy


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply merge patch `patch` to `target` and return the result.

    Objects merge key by key, `null` deletes a key, anything else replaces.
    Neither argument is modified and the result shares nothing with them.
    """
    if not isinstance(patch, dict):
        return deep_copy(patch)
    result = deep_copy(target) if isinstance(target, dict) else {}
    merge_patch_into(result, patch)
    return result


def merge_patch_into(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Apply `patch` to `target` in place; `target` must be owned by the caller."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            current = target.get(key)
            if not isinstance(current, dict):
                current = {}
                target[key] = current
            merge_patch_into(current, value)
        else:
            target[key] = deep_copy(value) if isinstance(value, list) else value
