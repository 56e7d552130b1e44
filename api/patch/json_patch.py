"""JSON patch (RFC 6902), `application/json-patch+json`.

Upstream answers a patch document that is not a list of operations with 400
BadRequest, more than 10000 operations with 413, and any operation that cannot
be applied (unknown op, missing path, failed test) with 422 Invalid. Upstream's
422 message is a generic "the server rejected our request due to an error in
our request"; ours says which operation failed, where and why.
"""

from __future__ import annotations

from typing import Any

from timonel.api.errors import ApiError
from timonel.api.jsonutil import deep_copy
from timonel.api.patch.jsonvalue import json_equal, type_name

MAX_OPERATIONS = 10000

_MISSING = object()


class _OpError(Exception):
    pass


def json_patch(doc: Any, operations: Any) -> Any:
    """Apply the RFC 6902 operations to `doc` and return the result.

    The input is not modified and the result shares nothing with the inputs.
    Raises ApiError: 400 for a malformed patch document, 413 for too many
    operations, 422 for an operation that cannot be applied.
    """
    if not isinstance(operations, list):
        raise ApiError(400, f"a JSON patch must be a JSON array of operations, not "
                            f"{type_name(operations)}", "BadRequest")
    for i, op in enumerate(operations):
        if not isinstance(op, dict):
            raise ApiError(400, f"JSON patch operation {i} must be a JSON object like "
                                f'{{"op":"add","path":"/a","value":1}}, not {type_name(op)}',
                           "BadRequest")
    if len(operations) > MAX_OPERATIONS:
        raise ApiError(413, f"Request entity too large: The allowed maximum operations in a JSON "
                            f"patch is {MAX_OPERATIONS}, got {len(operations)}",
                       "RequestEntityTooLarge")
    result = deep_copy(doc)
    for i, op in enumerate(operations):
        try:
            result = _apply_one(result, op)
        except _OpError as e:
            name = op.get("op")
            path = op.get("path")
            where = f"{name} {path}" if isinstance(name, str) and isinstance(path, str) else "?"
            message = f"json patch operation {i} ({where}): {e}"
            raise ApiError(422, message, "Invalid",
                           causes=[{"type": "FieldValueInvalid", "field": "patch",
                                    "message": message}]) from None
    return result


def _apply_one(doc: Any, op: dict[str, Any]) -> Any:
    name = op.get("op")
    if not isinstance(name, str):
        raise _OpError('"op" must be one of add, remove, replace, move, copy, test')
    path = _pointer(op, "path")
    if name == "add":
        return _add(doc, path, deep_copy(_value(op)))
    if name == "remove":
        _remove(doc, path)
        return doc
    if name == "replace":
        return _replace(doc, path, deep_copy(_value(op)))
    if name == "move":
        source = _pointer(op, "from")
        if source == path:
            _get(doc, source)
            return doc
        if path[:len(source)] == source:
            raise _OpError(f'cannot move "{_render(source)}" into its own child')
        value = _remove(doc, source)
        return _add(doc, path, value)
    if name == "copy":
        source = _pointer(op, "from")
        return _add(doc, path, deep_copy(_get(doc, source)))
    if name == "test":
        expected = _value(op)
        actual = _get(doc, path)
        if not json_equal(actual, expected):
            raise _OpError("test failed: the value is not equal to the one given")
        return doc
    raise _OpError(f'unknown operation "{name}": use add, remove, replace, move, copy or test')


def _value(op: dict[str, Any]) -> Any:
    if "value" not in op:
        raise _OpError('the operation needs a "value"')
    return op["value"]


def _pointer(op: dict[str, Any], field: str) -> list[str]:
    text = op.get(field, _MISSING)
    if text is _MISSING:
        raise _OpError(f'the operation needs a "{field}"')
    if not isinstance(text, str):
        raise _OpError(f'"{field}" must be a JSON pointer string like "/spec/replicas"')
    if text == "":
        return []
    if not text.startswith("/"):
        raise _OpError(f'"{field}" {text!r} is not a JSON pointer: it must start with "/"')
    tokens = []
    for raw in text[1:].split("/"):
        if "~" in raw:
            check = raw.replace("~0", "").replace("~1", "")
            if "~" in check:
                raise _OpError(f'"{field}" {text!r} has a bad escape: use ~0 for "~" and ~1 for "/"')
            raw = raw.replace("~1", "/").replace("~0", "~")
        tokens.append(raw)
    return tokens


def _render(tokens: list[str]) -> str:
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


def _index(token: str, length: int, *, append_ok: bool) -> int:
    if token == "-":
        if append_ok:
            return length
        raise _OpError('"-" (the end of the array) can only be used to add')
    if not token.isdigit() or not token.isascii() or (len(token) > 1 and token[0] == "0"):
        raise _OpError(f"{token!r} is not an array index")
    i = int(token)
    limit = length if append_ok else length - 1
    if i > limit:
        raise _OpError(f"index {i} is out of range (the array has {length} items)")
    return i


def _walk(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for n, token in enumerate(tokens):
        if isinstance(node, dict):
            if token not in node:
                raise _OpError(f'"{_render(tokens[:n + 1])}" does not exist')
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(token, len(node), append_ok=False)]
        else:
            raise _OpError(f'"{_render(tokens[:n])}" is a {type_name(node)}, not an object '
                           f"or array")
    return node


def _get(doc: Any, tokens: list[str]) -> Any:
    return _walk(doc, tokens)


def _parent(doc: Any, tokens: list[str]) -> Any:
    parent = _walk(doc, tokens[:-1])
    if not isinstance(parent, dict | list):
        raise _OpError(f'"{_render(tokens[:-1])}" is a {type_name(parent)}, not an object or '
                       f"array")
    return parent


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    else:
        parent.insert(_index(last, len(parent), append_ok=True), value)
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise _OpError("cannot remove the whole document")
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _OpError(f'"{_render(tokens)}" does not exist')
        return parent.pop(last)
    return parent.pop(_index(last, len(parent), append_ok=False))


def _replace(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _OpError(f'"{_render(tokens)}" does not exist')
        parent[last] = value
    else:
        parent[_index(last, len(parent), append_ok=False)] = value
    return doc
