"""Kubernetes resource quantities ("100m", "1.5Gi", "1e3") as exact decimals.

Follows k8s.io/apimachinery's resource.Quantity: the same accepted syntax, the
same error messages, and the same canonical form (`format_quantity`), so values
echoed back to users and in validation messages read like upstream's. Exact
`Decimal` arithmetic because requests are compared against limits and summed
per node by the scheduler, where float rounding would be a real bug.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_UP, Decimal, InvalidOperation, localcontext
from typing import ParamSpec, TypeVar

ERR_FORMAT = ("quantities must match the regular expression "
              "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
ERR_NUMERIC = "unable to parse numeric part of quantity"
ERR_SUFFIX = "unable to parse quantity's suffix"

DECIMAL_SI = "DecimalSI"
BINARY_SI = "BinarySI"
DECIMAL_EXPONENT = "DecimalExponent"

_SYNTAX = re.compile(r"([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)")
_EXPONENT = re.compile(r"[eE]([-+]?[0-9]+)")

_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12,
                     "P": 15, "E": 18}
_BINARY_SUFFIXES = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL_BY_EXP = {v: k for k, v in _DECIMAL_SUFFIXES.items()}
_BINARY_BY_EXP = {v: k for k, v in _BINARY_SUFFIXES.items()}
# Upstream keeps nano precision; anything finer is rounded up to it.
_NANO = Decimal("1e-9")


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _wide(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    # Exabytes at nano precision need ~30 digits; the default context has 28.
    @functools.wraps(fn)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with localcontext() as ctx:
            ctx.prec = 80
            return fn(*args, **kwargs)
    return run


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity; str() is upstream's message."""


@_wide
def parse_quantity_format(value: str | int | float) -> tuple[Decimal, str]:
    """The exact value and the format (DecimalSI, BinarySI, DecimalExponent)."""
    if isinstance(value, bool):
        raise QuantityError(ERR_FORMAT)
    if isinstance(value, int):
        return Decimal(value), DECIMAL_SI
    if isinstance(value, float):
        # JSON numbers arrive as floats; their shortest repr is what was sent.
        value = repr(value)
    if not isinstance(value, str) or not value:
        raise QuantityError(ERR_FORMAT)
    m = _SYNTAX.fullmatch(value)
    if m is None:
        raise QuantityError(ERR_FORMAT)
    number, suffix = m.groups()
    if not _NUMBER.fullmatch(number):
        raise QuantityError(ERR_NUMERIC)
    try:
        amount = Decimal(number)
    except InvalidOperation as e:
        raise QuantityError(ERR_NUMERIC) from e
    try:
        if suffix in _DECIMAL_SUFFIXES:
            result, fmt = amount.scaleb(_DECIMAL_SUFFIXES[suffix]), DECIMAL_SI
        elif suffix in _BINARY_SUFFIXES:
            result, fmt = amount * (Decimal(1024) ** _BINARY_SUFFIXES[suffix]), BINARY_SI
        else:
            exp = _EXPONENT.fullmatch(suffix)
            if exp is None:
                raise QuantityError(ERR_SUFFIX)
            result, fmt = amount.scaleb(int(exp.group(1))), DECIMAL_EXPONENT
        return _round_nano(result), fmt
    except QuantityError:
        raise
    except (InvalidOperation, OverflowError, ValueError) as e:
        # Exponents beyond what a quantity can hold (e.g. "1E400").
        raise QuantityError(ERR_NUMERIC) from e


def parse_quantity(value: str | int | float) -> Decimal:
    """The exact value of a quantity; raises QuantityError with upstream's wording."""
    return parse_quantity_format(value)[0]


def is_quantity(value: object) -> bool:
    try:
        parse_quantity_format(value)  # type: ignore[arg-type]
    except QuantityError:
        return False
    return True


def _round_nano(v: Decimal) -> Decimal:
    if v == v.quantize(_NANO, rounding=ROUND_UP):
        return v
    return v.quantize(_NANO, rounding=ROUND_UP)


def _plain(d: Decimal) -> str:
    """An integral Decimal without exponent notation or trailing '.0'."""
    return format(d.quantize(Decimal(1)), "f")


@_wide
def format_quantity(value: Decimal | int, fmt: str = DECIMAL_SI) -> str:
    """Upstream's canonical form: 1.5 -> "1500m", 1000 -> "1k", 1536Mi stays "1536Mi"."""
    v = _round_nano(Decimal(value))
    if v == 0:
        return "0"
    if fmt == BINARY_SI:
        if -1024 < v < 1024 or v != v.to_integral_value():
            fmt = DECIMAL_SI
        else:
            n, exp = int(v), 0
            while exp < 6 and n % 1024 == 0:
                n //= 1024
                exp += 1
            return f"{n}{_BINARY_BY_EXP[exp]}" if exp else str(n)
    # Largest power-of-ten exponent, a multiple of 3, that leaves an integer.
    exp = -9
    while exp < 18 and (v.scaleb(-(exp + 3)) == v.scaleb(-(exp + 3)).to_integral_value()):
        exp += 3
    mantissa = _plain(v.scaleb(-exp))
    if fmt == DECIMAL_EXPONENT:
        return mantissa if exp == 0 else f"{mantissa}e{exp}"
    return f"{mantissa}{_DECIMAL_BY_EXP[exp]}"


def canonical_quantity(value: str | int | float) -> str:
    """A quantity rewritten in canonical form, keeping its format."""
    amount, fmt = parse_quantity_format(value)
    return format_quantity(amount, fmt)


@_wide
def milli_value(value: str | int | float) -> int:
    """Value * 1000 rounded up, like Quantity.MilliValue (cpu in millicores)."""
    return int((parse_quantity(value) * 1000).to_integral_value(rounding=ROUND_CEILING))


@_wide
def int_value(value: str | int | float) -> int:
    """Value rounded up to an integer, like Quantity.Value (memory in bytes)."""
    return int(parse_quantity(value).to_integral_value(rounding=ROUND_CEILING))
