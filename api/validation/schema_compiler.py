"""The strict upstream schemas compiled into small Python closures, one per schema node.

A generic JSON Schema walk (jsonschema's `iter_errors`) costs about 0.35 ms a
typical Pod: every keyword of every node is dispatched through dicts and
generators. The definitions only use a handful of keywords (`type`, `$ref`,
`properties`, `additionalProperties`, `items`, `required`, `enum`, `format`),
so each node is turned once into a closure that knows exactly what it checks:
an object node holds its property table and loops once over the value's keys;
a leaf whose value is of a class that surely passes (a `str` where a string or
null is allowed) is not even called.

A compiled check is `check(value, path, out)`. It appends *findings*
`(kind, path, value, info)` to `out`, in exactly the order jsonschema's Draft
2020-12 validator yields its errors for the same schema (keyword order within
a node, schema order for properties, set order for map entries): schema.py
turns them into causes with the wording upstream's decoder uses. The kinds:
- TYPE: the value has none of the node's types (info None);
- FORMAT: the value fails a format (info (format, exception or None));
- ENUM: the value is not one of the node's values (info the values);
- REQUIRED: one per missing required property (value the object, info the required list);
- UNKNOWN: the object has fields the schema does not know (value the object,
  info the known property names), once per object.

Every definition is compiled once per process and shared between kinds;
recursive definitions (JSONSchemaProps) go through a forward reference.
"""

from __future__ import annotations

import base64
import binascii
import logging
import numbers
import re
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from timonel.api.quantity import QuantityError, parse_quantity_format

log = logging.getLogger(__name__)

Path = tuple[str | int, ...]
Finding = tuple[str, Path, Any, Any]
Check = Callable[[Any, Path, list[Finding]], None]

TYPE, FORMAT, ENUM, REQUIRED, UNKNOWN = "type", "format", "enum", "required", "unknown"

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_NONE = type(None)
_JSON_CLASSES: frozenset[type] = frozenset({str, int, float, bool, _NONE, dict, list})

# Keywords that only annotate: jsonschema does not validate them.
_ANNOTATIONS = frozenset({"description", "title", "default", "examples", "deprecated",
                          "readOnly", "writeOnly", "$comment", "$schema", "$id"})


class SchemaCompileError(Exception):
    """The definitions use something this compiler does not know how to check."""


# -- types and formats, with jsonschema's Draft 2020-12 semantics ------------------------


def _is_integer(v: object) -> bool:
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, float) and v.is_integer())


def _is_number(v: object) -> bool:
    return isinstance(v, numbers.Number) and not isinstance(v, bool)


_TYPE_TESTS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": _is_integer,
    "number": _is_number,
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}
# Exact classes that surely have a type (a float may or may not be an integer).
_TYPE_SURE: dict[str, frozenset[type]] = {
    "string": frozenset({str}), "integer": frozenset({int}), "number": frozenset({int, float}),
    "boolean": frozenset({bool}), "object": frozenset({dict}), "array": frozenset({list}),
    "null": frozenset({_NONE}),
}


def _int_in(bounds: tuple[int, int]) -> Callable[[object], bool]:
    def check(v: object) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return True
        return isinstance(v, int) and bounds[0] <= v <= bounds[1]
    return check


# Quantity strings that parsed: most objects repeat the same few ("100m", "64Mi").
_GOOD_QUANTITIES: set[str] = set()
_GOOD_QUANTITIES_MAX = 4096


def _quantity(v: object) -> bool:
    if v.__class__ is str and v in _GOOD_QUANTITIES:
        return True
    if isinstance(v, str | int | float) and not isinstance(v, bool):
        parse_quantity_format(v)  # raises QuantityError with upstream's message
        if v.__class__ is str and len(_GOOD_QUANTITIES) < _GOOD_QUANTITIES_MAX:
            _GOOD_QUANTITIES.add(v)  # type: ignore[arg-type]
    return True


_IN_INT32 = _int_in(_INT32)


def _int_or_string(v: object) -> bool:
    return not isinstance(v, float) and _IN_INT32(v)


def _byte(v: object) -> bool:
    if isinstance(v, str):
        base64.b64decode(v.replace("\n", "").replace("\r", ""), validate=True)
    return True


def _date_time(v: object) -> bool:
    if not isinstance(v, str):
        return True
    if not _RFC3339.fullmatch(v):
        return False
    try:
        datetime.fromisoformat(v.replace("z", "Z").replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        return False
    return True


_SCALARS_BUT_STR: frozenset[type] = frozenset({_NONE, bool, int, float, dict, list})
# format: (check, exceptions that mean "does not conform", exact classes that always conform).
# Formats not listed (e.g. "double") are not checked, as with jsonschema's FormatChecker(()).
FORMATS: dict[str, tuple[Callable[[object], bool], tuple[type[Exception], ...], frozenset[type]]] = {
    "int32": (_int_in(_INT32), (), frozenset({str, _NONE, bool, dict, list})),
    "int64": (_int_in(_INT64), (), frozenset({str, _NONE, bool, dict, list})),
    "k8s-quantity": (_quantity, (QuantityError,), frozenset({_NONE, bool, int, dict, list})),
    "k8s-int-or-string": (_int_or_string, (), frozenset({str, _NONE, bool, dict, list})),
    "byte": (_byte, (binascii.Error, ValueError), _SCALARS_BUT_STR),
    "date-time": (_date_time, (), _SCALARS_BUT_STR),
}


# -- compiling --------------------------------------------------------------------------


class _Node:
    """One compiled schema node: its check and the classes it surely accepts."""

    __slots__ = ("check", "sure")

    def __init__(self, check: Check, sure: frozenset[type]) -> None:
        self.check = check
        self.sure = sure


def _noop(v: Any, path: Path, out: list[Finding]) -> None:
    return None


_ANYTHING = _Node(_noop, _JSON_CLASSES)


class Compiler:
    """Compiles the definitions of one document; definitions are compiled once, on demand."""

    def __init__(self, defs: dict[str, Any]) -> None:
        self._defs = defs
        self._compiled: dict[str, _Node] = {}
        self._lock = threading.Lock()

    def definition(self, name: str) -> Check:
        with self._lock:
            return self._definition(name).check

    def _definition(self, name: str) -> _Node:
        node = self._compiled.get(name)
        if node is not None:
            return node
        schema = self._defs.get(name)
        if schema is None:
            return _ANYTHING  # as the inlined schema did: an unknown $ref accepts anything
        # A recursive reference is reached while its definition is compiling: it
        # calls through a slot filled in below. What it surely accepts only
        # depends on the node's own keywords, so that is known up front.
        slot: list[Check] = []

        def forward(v: Any, path: Path, out: list[Finding]) -> None:
            slot[0](v, path, out)

        self._compiled[name] = _Node(forward, _sure(schema))
        try:
            node = self._node(schema)
        except BaseException:
            del self._compiled[name]
            raise
        slot.append(node.check)
        self._compiled[name] = node
        return node

    def _node(self, schema: Any) -> _Node:
        if schema is True:
            return _ANYTHING
        if not isinstance(schema, dict):
            raise SchemaCompileError(f"schema {schema!r} is not an object")
        keywords = [k for k in schema if k not in _ANNOTATIONS and not k.startswith("x-")]
        unsupported = set(keywords) - {"$ref", "type", "format", "enum", "properties",
                                       "required", "additionalProperties", "items"}
        if unsupported:
            raise SchemaCompileError(f"keyword(s) {sorted(unsupported)} in {schema!r:.200}")
        if "$ref" in keywords:
            if len(keywords) > 1:
                raise SchemaCompileError(f"$ref with sibling keywords in {schema!r:.200}")
            return self._definition(schema["$ref"].rsplit("/", 1)[-1])
        if not keywords:
            return _ANYTHING
        pos = {k: i for i, k in enumerate(keywords)}
        own = _own_steps(schema, keywords)
        props: dict[str, _Node] = {k: self._node(s) for k, s in
                                   (schema.get("properties") or {}).items()}
        extra = schema.get("additionalProperties", True)
        extra_node = self._node(extra) if isinstance(extra, dict) else None
        items = self._node(schema["items"]) if "items" in schema else None
        required = tuple(schema.get("required") or ())
        struct = reorder = None
        if props or required or extra is not True:
            closed = not isinstance(extra, dict) and not extra
            struct, reorder = _struct(pos, props, closed, extra_node, required)
        generic = _generic(pos, own, struct, reorder, items)
        sure = _sure(schema)
        # The hot paths: a dict at an object node, a list at an array node, an int
        # or a parsed-before quantity at a format leaf. Anything else takes the
        # generic path, which is exact for every value.
        dict_ok = _TYPE_SURE["object"] <= _type_sure(schema) and "enum" not in schema
        list_ok = _TYPE_SURE["array"] <= _type_sure(schema) and "enum" not in schema
        if struct is not None and items is None and dict_ok:
            return _Node(_dict_first(struct, generic), sure)
        if items is not None and struct is None and list_ok:
            return _Node(_list_first(items, generic), sure)
        if struct is None and items is None:
            fmt = schema.get("format")
            bounds = {"int32": _INT32, "int64": _INT64}.get(fmt or "")
            if bounds and int in _type_sure(schema) and "enum" not in schema:
                return _Node(_int_first(bounds, generic), sure)
            if fmt == "k8s-quantity" and str in _type_sure(schema) and "enum" not in schema:
                return _Node(_quantity_first(generic), sure)
        return _Node(generic, sure)


def _type_sure(schema: dict[str, Any]) -> frozenset[type]:
    types = schema.get("type")
    if types is None:
        return _JSON_CLASSES
    names = [types] if isinstance(types, str) else types
    sure: frozenset[type] = frozenset()
    for name in names:
        if name not in _TYPE_SURE:
            raise SchemaCompileError(f"unknown type {name!r}")
        sure |= _TYPE_SURE[name]
    return sure


def _sure(schema: dict[str, Any]) -> frozenset[type]:
    """Exact classes whose values surely pass every keyword of the node itself."""
    if "$ref" in schema:
        return frozenset()  # whatever the definition says: always call it
    sure = _type_sure(schema)
    fmt = schema.get("format")
    if fmt in FORMATS:
        sure &= FORMATS[fmt][2]
    if "enum" in schema:
        sure = frozenset()
    if schema.get("properties") or schema.get("required") or \
            schema.get("additionalProperties", True) is not True:
        sure -= {dict}
    if "items" in schema:
        sure -= {list}
    return sure


Step = Callable[[Any, Path, list[Finding]], None]


def _own_steps(schema: dict[str, Any], keywords: list[str]) -> list[Step]:
    """The checks of `type`, `format` and `enum`, in the node's keyword order."""
    steps: list[Step] = []
    for kw in keywords:
        if kw == "type":
            steps.append(_type_step(schema["type"]))
        elif kw == "format" and schema["format"] in FORMATS:
            steps.append(_format_step(schema["format"]))
        elif kw == "enum":
            steps.append(_enum_step(schema["enum"]))
    return steps


def _type_step(types: str | list[str]) -> Step:
    sure = _type_sure({"type": types})  # refuses unknown type names
    names = [types] if isinstance(types, str) else list(types)
    tests = tuple(_TYPE_TESTS[n] for n in names)

    def step(v: Any, path: Path, out: list[Finding]) -> None:
        if v.__class__ in sure:
            return
        for test in tests:
            if test(v):
                return
        out.append((TYPE, path, v, None))
    return step


def _format_step(fmt: str) -> Step:
    func, raises, sure = FORMATS[fmt]

    def step(v: Any, path: Path, out: list[Finding]) -> None:
        if v.__class__ in sure:
            return
        # As jsonschema's FormatChecker: a listed exception is the cause of the failure.
        result, cause = False, None
        try:
            result = func(v)
        except raises as e:
            cause = e
        if not result:
            out.append((FORMAT, path, v, (fmt, cause)))
    return step


def _enum_step(values: list[Any]) -> Step:
    if not all(isinstance(x, str) for x in values):
        # jsonschema compares with bool/int/float/sequence subtleties; upstream only has strings.
        raise SchemaCompileError(f"enum with non-string values {values!r:.200}")
    as_set = frozenset(values)

    def step(v: Any, path: Path, out: list[Finding]) -> None:
        # With string values jsonschema's `equal` is plain ==, as `in` on the list.
        if v.__class__ is str and v in as_set:
            return
        if v.__class__ is not str and v in values:
            return
        out.append((ENUM, path, v, values))
    return step


Reorder = Callable[[dict[Any, Any], Path, list[Finding], int], None]


def _struct(pos: dict[str, int], props: dict[str, _Node], closed: bool,
            extra: _Node | None, required: tuple[str, ...]) -> tuple[Step, Reorder]:
    """`properties`, `additionalProperties` and `required` on a dict, in one pass over its keys.

    Also returns how to put the findings from `start` on in jsonschema's order.
    """
    table = {k: (n.sure, n.check) for k, n in props.items()}
    index = {k: i for i, k in enumerate(props)}
    known = frozenset(props)
    extra_sure, extra_check = (extra.sure, extra.check) if extra else (_JSON_CLASSES, _noop)

    def order(v: dict[Any, Any], path: Path, out: list[Finding], start: int) -> None:
        # Children were checked in the value's key order; jsonschema goes by
        # keyword, then schema order for properties, set order for the others.
        depth = len(path)
        extras = {k: i for i, k in enumerate(set(k for k in v if k not in known))}

        def key(f: Finding) -> tuple[int, int]:
            p = f[1]
            if len(p) == depth:
                return pos.get(f[0] if f[0] != UNKNOWN else "additionalProperties", -1), 0
            k = p[depth]
            i = index.get(k)  # type: ignore[arg-type]
            if i is not None:
                return pos["properties"], i
            return pos["additionalProperties"], extras[k]
        out[start:] = sorted(out[start:], key=key)

    def struct(v: dict[Any, Any], path: Path, out: list[Finding]) -> None:
        start = len(out)
        unknown = False
        for k, x in v.items():
            entry = table.get(k)
            if entry is None:
                if closed:
                    unknown = True
                elif x.__class__ not in extra_sure:
                    extra_check(x, (*path, k), out)
            elif x.__class__ not in entry[0]:
                entry[1](x, (*path, k), out)
        if unknown:
            out.append((UNKNOWN, path, v, known))
        for r in required:
            if r not in v:
                out.append((REQUIRED, path, v, required))
        if len(out) - start > 1:
            order(v, path, out, start)
    return struct, order


def _items(node: _Node) -> Step:
    sure, check = node.sure, node.check

    def items(v: list[Any], path: Path, out: list[Finding]) -> None:
        for i, x in enumerate(v):
            if x.__class__ not in sure:
                check(x, (*path, i), out)
    return items


def _generic(pos: dict[str, int], own: list[Step], struct: Step | None,
             reorder: Reorder | None, items: _Node | None) -> Check:
    """Exact for any value: own keywords, then the object or array keywords, in keyword order."""
    each = _items(items) if items else None

    def check(v: Any, path: Path, out: list[Finding]) -> None:
        start = len(out)
        for step in own:
            step(v, path, out)
        mine = len(out) - start
        if struct is not None and reorder is not None and isinstance(v, dict):
            struct(v, path, out)
            if mine and len(out) - start > mine:
                reorder(v, path, out, start)
        elif each is not None and isinstance(v, list):
            each(v, path, out)
            if mine and len(out) - start > mine:
                depth = len(path)

                def key(f: Finding) -> tuple[int, int]:
                    if len(f[1]) == depth:
                        return pos[f[0]], 0
                    return pos["items"], f[1][depth]  # type: ignore[return-value]
                out[start:] = sorted(out[start:], key=key)
    return check


def _dict_first(struct: Step, generic: Check) -> Check:
    def check(v: Any, path: Path, out: list[Finding]) -> None:
        if v.__class__ is dict:
            struct(v, path, out)
        else:
            generic(v, path, out)
    return check


def _list_first(items: _Node, generic: Check) -> Check:
    each = _items(items)

    def check(v: Any, path: Path, out: list[Finding]) -> None:
        if v.__class__ is list:
            each(v, path, out)
        else:
            generic(v, path, out)
    return check


def _int_first(bounds: tuple[int, int], generic: Check) -> Check:
    low, high = bounds

    def check(v: Any, path: Path, out: list[Finding]) -> None:
        if v.__class__ is not int or not low <= v <= high:
            generic(v, path, out)
    return check


def _quantity_first(generic: Check) -> Check:
    def check(v: Any, path: Path, out: list[Finding]) -> None:
        if v.__class__ is not str or v not in _GOOD_QUANTITIES:
            generic(v, path, out)
    return check
