"""JSON in and out of the server, fast.

Every request parses and writes JSON several times (body, etcd value, watch
cache, response): orjson does it several times faster than the standard
library, which measurably raises creates/s. But orjson reads integers beyond
64 bits as floats without a word: `loads` (request bodies, and everything a
client reads from the server) sends what might hold one to the standard library,
and `loads_trusted` (etcd values, which only the server wrote) does not look.
"""

from __future__ import annotations

import json
import marshal
from typing import Any

import orjson

_OPTS = orjson.OPT_NON_STR_KEYS


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes."""
    try:
        return orjson.dumps(obj, option=_OPTS)
    except TypeError:  # e.g. integers beyond 64 bits
        return json.dumps(obj, separators=(",", ":")).encode()


# A run of 19 digits may be a number beyond 64 bits, which orjson would read as a float:
# text with one (in a string or not) is parsed by the standard library. Found by mapping
# every digit to "0" and looking for 19 of them: ~1.4 us for a 2.6 KB pod, where the
# regular expression [0-9]{19} takes ~23 us (more than the standard library's parse).
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_DIGITS_TO_ZERO_STR = str.maketrans("123456789", "000000000")
_LONG, _LONG_BYTES = "0" * 19, b"0" * 19


def loads(data: bytes | str) -> Any:
    """Parse JSON exactly as the standard library does, fast; json.JSONDecodeError says where
    it broke. orjson refuses what it reads differently (lone surrogates, NaN, a BOM, other
    encodings), and that goes to the standard library too, as do numbers of 19 digits or
    more: the result is the standard library's in every case."""
    if isinstance(data, str):
        long = _LONG in data.translate(_DIGITS_TO_ZERO_STR)
    else:
        long = _LONG_BYTES in data.translate(_DIGITS_TO_ZERO)
    if not long:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def loads_trusted(data: bytes | str) -> Any:
    """Parse JSON this server wrote (validated objects): fast."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def deep_copy(value: Any) -> Any:
    """An independent copy of a JSON value.

    Every update, status write and patch copies the stored object: `marshal` round-trips
    plain JSON values about 7x faster than `copy.deepcopy`."""
    try:
        return marshal.loads(marshal.dumps(value))
    except ValueError:
        # Not plain JSON (e.g. a dict subclass): the slow but general way.
        return _copy_rec(value)


def _copy_rec(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy_rec(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_rec(v) for v in value]
    return value
