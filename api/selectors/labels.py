"""Label selectors as `k8s.io/apimachinery/pkg/labels` parses and matches them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from timonel.api.errors import bad_request
from timonel.api.selectors.messages import (
    SelectorError,
    aggregate,
    go_int,
    go_quote,
    go_string_slice,
    invalid,
    label_key_errors,
    label_value_errors,
)

# Operators, spelled as upstream's `selection.Operator` values.
IN = "in"
NOT_IN = "notin"
EQUALS = "="
DOUBLE_EQUALS = "=="
NOT_EQUALS = "!="
EXISTS = "exists"
DOES_NOT_EXIST = "!"
GREATER_THAN = "gt"
LESS_THAN = "lt"

_BINARY_OPERATORS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN)


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelSelector:
    """AND of requirements, sorted by key. `nothing` is the selector of a nil
    `metav1.LabelSelector`: it matches no object at all."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    @property
    def empty(self) -> bool:
        """True if it selects everything."""
        return not self.nothing and not self.requirements


EVERYTHING = LabelSelector()
NOTHING = LabelSelector(nothing=True)


def _new_requirement(key: str, op: str, values: list[str]) -> Requirement:
    """Upstream `labels.NewRequirement`, with its checks and messages (root path)."""
    errs: list[str] = []
    key_errs = label_key_errors(key)
    if key_errs:
        errs.append(invalid("key", go_quote(key), "; ".join(key_errs)))
    if op in (IN, NOT_IN):
        if not values:
            errs.append(invalid("values", go_string_slice(values),
                                 "for 'in', 'notin' operators, values set can't be empty"))
    elif op in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(values) != 1:
            errs.append(invalid("values", go_string_slice(values),
                                 "exact-match compatibility requires one single value"))
    elif op in (EXISTS, DOES_NOT_EXIST):
        if values:
            errs.append(invalid("values", go_string_slice(values),
                                 "values set must be empty for exists and does not exist"))
    elif op in (GREATER_THAN, LESS_THAN):
        if len(values) != 1:
            errs.append(invalid("values", go_string_slice(values),
                                 "for 'Gt', 'Lt' operators, exactly one value is required"))
        for i, v in enumerate(values):
            if go_int(v) is None:
                errs.append(invalid(f"values[{i}]", go_quote(v),
                                     "for 'Gt', 'Lt' operators, the value must be an integer"))
    else:
        supported = ", ".join(go_quote(o) for o in (*_BINARY_OPERATORS, EXISTS, DOES_NOT_EXIST))
        errs.append(f"operator: Unsupported value: {go_quote(op)}: supported values: {supported}")
    for i, v in enumerate(values):
        value_errs = label_value_errors(v)
        if value_errs:
            errs.append(invalid(f"values[{i}][{key}]", go_quote(v), "; ".join(value_errs)))
    if errs:
        raise SelectorError(aggregate(errs))
    return Requirement(key, op, tuple(values))



# ---------------------------------------------------------------------------
# Label selector text: lexer and parser (upstream grammar, token for token)

_EOS, _ERROR, _IDENT = "EOS", "ERROR", "IDENT"
_SYMBOLS = {")": ")", ",": ",", "!": "!", "==": "==", "=": "=", ">": ">", "<": "<",
            "!=": "!=", "(": "("}
_KEYWORDS = {"in": "in", "notin": "notin"}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")
_OPERATOR_TOKENS = {"in": IN, "notin": NOT_IN, "=": EQUALS, "==": DOUBLE_EQUALS,
                    "!=": NOT_EQUALS, ">": GREATER_THAN, "<": LESS_THAN}


def _lex(s: str) -> list[tuple[str, str]]:
    # Upstream reads bytes and treats NUL like the end of input (its reader
    # returns 0 there); a literal NUL is consumed, the real end is not.
    n = len(s)
    pos = 0
    items: list[tuple[str, str]] = []
    while True:
        ch = "\0"
        while pos < n:
            ch = s[pos]
            pos += 1
            if ch not in _WHITESPACE:
                break
            ch = "\0"
        if ch == "\0":
            items.append((_EOS, ""))
            return items
        pos -= 1
        start = pos
        if ch in _SPECIAL:
            last: tuple[str, str] | None = None
            buf = ""
            while pos < n:
                c = s[pos]
                pos += 1
                if c == "\0":
                    break
                if c not in _SPECIAL:
                    pos -= 1
                    break
                buf += c
                if buf in _SYMBOLS:
                    last = (_SYMBOLS[buf], buf)
                elif last is not None:
                    pos -= 1
                    break
            if last is None:
                items.append((_ERROR, f"error expected: keyword found '{buf}'"))
            else:
                items.append(last)
        else:
            end = pos
            while pos < n:
                c = s[pos]
                if c in _SPECIAL or c in _WHITESPACE:
                    break
                pos += 1
                if c == "\0":
                    break
                end = pos
            word = s[start:end]
            items.append((_KEYWORDS.get(word, _IDENT), word))


class _Parser:
    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.pos = 0

    # In a "values" context the keywords in/notin are plain identifiers.
    def lookahead(self, values: bool = True) -> tuple[str, str]:
        tok, lit = self.items[min(self.pos, len(self.items) - 1)]
        if values and tok in ("in", "notin"):
            tok = _IDENT
        return tok, lit

    def consume(self, values: bool = True) -> tuple[str, str]:
        item = self.lookahead(values)
        self.pos += 1
        return item

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self.lookahead()
            if tok in (_IDENT, "!"):
                try:
                    reqs.append(self.requirement())
                except SelectorError as e:
                    raise SelectorError(f"unable to parse requirement: {e}") from None
                t, lit = self.consume()
                if t == _EOS:
                    return reqs
                if t != ",":
                    raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
                t2, lit2 = self.lookahead()
                if t2 not in (_IDENT, "!"):
                    raise SelectorError(f"found '{lit2}', expected: identifier after ','")
            elif tok == _EOS:
                return reqs
            else:
                raise SelectorError(
                    f"found '{lit}', expected: !, identifier, or 'end of string'")

    def requirement(self) -> Requirement:
        op = ""
        tok, key = self.consume()
        if tok == "!":
            op = DOES_NOT_EXIST
            tok, key = self.consume()
        if tok != _IDENT:
            raise SelectorError(f"found '{key}', expected: identifier")
        key_errs = label_key_errors(key)
        if key_errs:
            # Upstream validates here with a nil field path, hence "<nil>".
            raise SelectorError(invalid("<nil>", go_quote(key), "; ".join(key_errs)))
        if self.lookahead()[0] in (_EOS, ","):
            op = op or EXISTS
        if op in (EXISTS, DOES_NOT_EXIST):
            return _new_requirement(key, op, [])
        tok, lit = self.consume(values=False)
        if tok not in _OPERATOR_TOKENS:
            raise SelectorError(f"found '{lit}', expected: {', '.join(_BINARY_OPERATORS)}")
        op = _OPERATOR_TOKENS[tok]
        values = self.value_set() if op in (IN, NOT_IN) else self.exact_value()
        return _new_requirement(key, op, sorted(values))

    def value_set(self) -> set[str]:
        tok, lit = self.consume()
        if tok != "(":
            raise SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead()
        if tok == ")":
            self.consume()
            return {""}
        if tok not in (_IDENT, ","):
            raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")
        values: set[str] = set()
        while True:
            tok, lit = self.consume()
            if tok == _IDENT:
                values.add(lit)
                tok2, lit2 = self.lookahead()
                if tok2 == ")":
                    break
                if tok2 != ",":
                    raise SelectorError(f"found '{lit2}', expected: ',' or ')'")
            elif tok == ",":
                # "(,a" "a,,b" and "a,)" all carry the empty value.
                if not values:
                    values.add("")
                tok2, _ = self.lookahead()
                if tok2 == ")":
                    values.add("")
                    break
                if tok2 == ",":
                    values.add("")
            else:
                raise SelectorError(f"found '{lit}', expected: ',', or identifier")
        self.consume()  # the ")" just seen
        return values

    def exact_value(self) -> set[str]:
        if self.lookahead()[0] in (_EOS, ","):
            return {""}
        tok, lit = self.consume()
        if tok == _IDENT:
            return {lit}
        raise SelectorError(f"found '{lit}', expected: identifier")


def parse_label_selector(text: str) -> LabelSelector:
    """Parse `labelSelector` query text; an empty text selects everything.

    Raises ApiError 400 with upstream's message for bad text.
    """
    try:
        reqs = _Parser(text).parse()
    except SelectorError as e:
        raise bad_request(str(e)) from None
    reqs.sort(key=lambda r: r.key)
    return LabelSelector(tuple(reqs))


def _strings(value: Any, what: str) -> list[str]:
    # Schema validation keeps these strings; a stored object that is not
    # still gets a 400 rather than a crash.
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SelectorError(f"{what} must be a list of strings")
    return value


def from_label_selector_dict(sel: dict[str, Any] | None) -> LabelSelector:
    """A `metav1.LabelSelector` (matchLabels/matchExpressions) as a selector.

    None selects nothing and `{}` selects everything, as upstream's
    `LabelSelectorAsSelector`. Raises ApiError 400 for invalid content.
    """
    if sel is None:
        return NOTHING
    try:
        if not isinstance(sel, dict):
            raise SelectorError("a label selector must be an object")
        match_labels = sel.get("matchLabels") or {}
        expressions = sel.get("matchExpressions") or []
        if not isinstance(match_labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in match_labels.items()):
            raise SelectorError("matchLabels must map strings to strings")
        if not isinstance(expressions, list) or not all(isinstance(e, dict) for e in expressions):
            raise SelectorError("matchExpressions must be a list of objects")
        if not match_labels and not expressions:
            return EVERYTHING
        reqs: list[Requirement] = []
        for k in sorted(match_labels):
            reqs.append(_new_requirement(k, EQUALS, [match_labels[k]]))
        for expr in expressions:
            op_name = expr.get("operator", "")
            op = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS,
                  "DoesNotExist": DOES_NOT_EXIST}.get(op_name)
            if op is None:
                raise SelectorError(f"{go_quote(str(op_name))} is not a valid label selector operator")
            key = expr.get("key", "")
            if not isinstance(key, str):
                raise SelectorError("matchExpressions[].key must be a string")
            values = _strings(expr.get("values") or [], "matchExpressions[].values")
            reqs.append(_new_requirement(key, op, list(values)))
    except SelectorError as e:
        raise bad_request(str(e)) from None
    reqs.sort(key=lambda r: r.key)
    return LabelSelector(tuple(reqs))


def selector_from_set(labels: dict[str, str] | None) -> LabelSelector:
    """Equality on every given label (upstream `SelectorFromSet`); empty selects everything."""
    return LabelSelector(tuple(Requirement(k, EQUALS, (v,)) for k, v in sorted((labels or {}).items())))


def _requirement_matches(r: Requirement, labels: dict[str, str]) -> bool:
    op = r.operator
    if op in (IN, EQUALS, DOUBLE_EQUALS):
        return r.key in labels and labels[r.key] in r.values
    if op in (NOT_IN, NOT_EQUALS):
        return r.key not in labels or labels[r.key] not in r.values
    if op == EXISTS:
        return r.key in labels
    if op == DOES_NOT_EXIST:
        return r.key not in labels
    if op in (GREATER_THAN, LESS_THAN):
        if r.key not in labels or len(r.values) != 1:
            return False
        have, want = go_int(labels[r.key]), go_int(r.values[0])
        if have is None or want is None:
            return False
        return have > want if op == GREATER_THAN else have < want
    return False


def matches(selector: LabelSelector, labels: dict[str, str] | None) -> bool:
    if selector.nothing:
        return False
    have = labels or {}
    return all(_requirement_matches(r, have) for r in selector.requirements)


_OPERATOR_TEXT = {EQUALS: "=", DOUBLE_EQUALS: "==", NOT_EQUALS: "!=", IN: " in ",
                  NOT_IN: " notin ", GREATER_THAN: ">", LESS_THAN: "<"}


def requirement_text(r: Requirement) -> str:
    if r.operator == EXISTS:
        return r.key
    if r.operator == DOES_NOT_EXIST:
        return "!" + r.key
    values = r.values[0] if len(r.values) == 1 else ",".join(sorted(r.values))
    if r.operator in (IN, NOT_IN):
        values = f"({values})"
    return r.key + _OPERATOR_TEXT.get(r.operator, r.operator) + values


def to_text(selector: LabelSelector) -> str:
    """The selector as upstream's `String()` writes it (parses back to the same selector)."""
    return ",".join(requirement_text(r) for r in selector.requirements)
