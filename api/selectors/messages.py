"""Upstream's wording: Go quoting, validation messages and error aggregation.

Selectors report errors exactly as apimachinery does (`field.Invalid`,
`utilerrors.NewAggregate`, `IsLabelKey`, `IsValidLabelValue`), so these helpers
reproduce Go's formatting rather than Python's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from timonel.api.validation.names import is_label_value, is_qualified_name


class SelectorError(Exception):
    """A selector problem, worded as upstream; callers turn it into a 400."""


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
               "\t": "\\t", "\v": "\\v", '"': '\\"', "\\": "\\\\"}


def go_quote(s: str) -> str:
    """`strconv.Quote`: how Go's `%q` shows a value inside an error message."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif 0xDC80 <= o <= 0xDCFF:
            # A byte that was not UTF-8, smuggled in by surrogateescape decoding.
            out.append(f"\\x{o - 0xDC00:02x}")
        elif 0xD800 <= o <= 0xDFFF:
            out.append("\\ufffd")
        elif ch.isprintable():
            out.append(ch)
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def label_key_errors(key: str) -> list[str]:
    """Upstream `IsQualifiedName`, the rule for label keys: [prefix/]name."""
    return is_qualified_name(key)


def label_value_errors(value: str) -> list[str]:
    """Upstream `IsValidLabelValue`."""
    return is_label_value(value)


def invalid(path: str, value: str, detail: str) -> str:
    """A `field.Invalid` error as text."""
    return f"{path}: Invalid value: {value}: {detail}"


def aggregate(errs: list[str]) -> str:
    """`utilerrors.NewAggregate(...).Error()`: duplicates dropped, several in brackets."""
    unique = list(dict.fromkeys(errs))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


_GO_INT_RE = re.compile(r"[+-]?[0-9]+")


def go_int(s: str) -> int | None:
    """`strconv.ParseInt(s, 10, 64)`, or None where Go returns an error."""
    if not _GO_INT_RE.fullmatch(s):
        return None
    v = int(s)
    return v if -(2**63) <= v < 2**63 else None


def go_string_slice(values: Iterable[str]) -> str:
    return "[]string{" + ", ".join(go_quote(v) for v in values) + "}"

