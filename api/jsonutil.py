"""JSON in and out of the server, fast.

Every request parses and writes JSON several times (body, etcd value, watch
cache, response): orjson does it several times faster than the standard
library, which measurably raises creates/s. But orjson reads integers beyond
64 bits as floats without a word, so untrusted input (request bodies) goes
through the standard library, and orjson reads only what the server itself
wrote after validation (etcd values).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTS = orjson.OPT_NON_STR_KEYS


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes."""
    try:
        return orjson.dumps(obj, option=_OPTS)
    except TypeError:  # e.g. integers beyond 64 bits
        return json.dumps(obj, separators=(",", ":")).encode()


def loads(data: bytes | str) -> Any:
    """Parse untrusted JSON exactly; json.JSONDecodeError says where it broke."""
    return json.loads(data)


def loads_trusted(data: bytes | str) -> Any:
    """Parse JSON this server wrote (validated objects): fast."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
