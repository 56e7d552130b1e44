"""Resource quantities: upstream's syntax, errors and canonical form."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timonel.api.quantity import (
    BINARY_SI,
    DECIMAL_EXPONENT,
    DECIMAL_SI,
    ERR_FORMAT,
    ERR_NUMERIC,
    ERR_SUFFIX,
    QuantityError,
    canonical_quantity,
    format_quantity,
    int_value,
    milli_value,
    parse_quantity,
    parse_quantity_format,
)


@pytest.mark.parametrize(("text", "value", "canonical"), [
    ("100m", Decimal("0.1"), "100m"),
    ("1", Decimal(1), "1"),
    ("1.5", Decimal("1.5"), "1500m"),
    ("1000", Decimal(1000), "1k"),
    ("1500", Decimal(1500), "1500"),
    ("2000m", Decimal(2), "2"),
    ("0.1", Decimal("0.1"), "100m"),
    (".5", Decimal("0.5"), "500m"),
    ("1Ki", Decimal(1024), "1Ki"),
    ("1.5Gi", Decimal(1610612736), "1536Mi"),
    ("1024", Decimal(1024), "1024"),
    ("129e6", Decimal(129000000), "129e6"),
    ("1e3", Decimal(1000), "1e3"),
    ("1E", Decimal(10) ** 18, "1E"),
    ("-1", Decimal(-1), "-1"),
    ("0", Decimal(0), "0"),
    ("0.0000000001", Decimal("1e-9"), "1n"),  # finer than nano rounds up to it
    ("+5M", Decimal(5000000), "5M"),
    (3, Decimal(3), "3"),
    (0.25, Decimal("0.25"), "250m"),
])
def test_parse_and_canonical_form(text: str | int | float, value: Decimal, canonical: str) -> None:
    assert parse_quantity(text) == value
    assert canonical_quantity(text) == canonical


@pytest.mark.parametrize(("text", "error"), [
    ("abc", ERR_FORMAT), ("", ERR_FORMAT), ("1 ", ERR_FORMAT), ("1Gb", ERR_FORMAT),
    ("1.2.3", ERR_NUMERIC), (".", ERR_NUMERIC),
    ("1K", ERR_SUFFIX), ("1e", ERR_SUFFIX), ("1mi", ERR_SUFFIX),
    (True, ERR_FORMAT),
])
def test_invalid_quantities_say_what_upstream_says(text: object, error: str) -> None:
    with pytest.raises(QuantityError) as e:
        parse_quantity(text)  # type: ignore[arg-type]
    assert str(e.value) == error


def test_formats_follow_the_suffix() -> None:
    assert parse_quantity_format("1Mi")[1] == BINARY_SI
    assert parse_quantity_format("1M")[1] == DECIMAL_SI
    assert parse_quantity_format("1e6")[1] == DECIMAL_EXPONENT
    # Binary values that are not whole numbers of bytes fall back to decimal.
    assert format_quantity(Decimal("0.5"), BINARY_SI) == "500m"
    assert format_quantity(Decimal(1025), BINARY_SI) == "1025"


def test_scheduler_helpers_round_up_like_upstream() -> None:
    assert milli_value("100m") == 100
    assert milli_value("0.0001") == 1
    assert milli_value(2) == 2000
    assert int_value("1.5Gi") == 1610612736
    assert int_value("100m") == 1


@given(st.integers(min_value=-(10**20), max_value=10**20),
       st.sampled_from(["", "n", "u", "m", "k", "M", "G", "Ki", "Mi", "Gi", "e3", "e-2"]))
def test_canonical_form_round_trips(number: int, suffix: str) -> None:
    text = f"{number}{suffix}"
    amount = parse_quantity(text)
    canonical = canonical_quantity(text)
    assert parse_quantity(canonical) == amount
    assert canonical_quantity(canonical) == canonical


def test_huge_exponents_are_quantity_errors() -> None:
    import pytest

    from timonel.api.quantity import QuantityError, parse_quantity_format

    for value in ("1E400", "1e999999999", 1e308):
        with pytest.raises(QuantityError):
            parse_quantity_format(value)
