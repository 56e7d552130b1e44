"""The fast JSON path behaves like the standard library."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timonel.api import jsonutil

values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**80, 2**80) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(), c, max_size=4), max_leaves=25)


@given(values)
def test_round_trip_matches_stdlib(v: object) -> None:
    assert jsonutil.loads(jsonutil.dumps(v)) == json.loads(json.dumps(v))


@given(st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(), c, max_size=4),
                    max_leaves=25))
def test_trusted_loads_of_validated_values(v: object) -> None:
    assert jsonutil.loads_trusted(jsonutil.dumps(v)) == v


def test_malformed_input_says_where() -> None:
    with pytest.raises(json.JSONDecodeError) as e:
        jsonutil.loads(b'{"a": 1,\n "b": }')
    assert e.value.lineno == 2


def test_big_integers_stay_integers() -> None:
    big = 123456789012345678901234567890
    assert jsonutil.loads(b'{"n": 123456789012345678901234567890}') == {"n": big}
    assert jsonutil.loads(jsonutil.dumps({"n": big})) == {"n": big}
    assert jsonutil.loads(jsonutil.dumps({1: "x"})) == {"1": "x"}


def _ids(v: object) -> set[int]:
    if isinstance(v, dict):
        return {id(v)} | {i for x in v.values() for i in _ids(x)}
    if isinstance(v, list):
        return {id(v)} | {i for x in v for i in _ids(x)}
    return set()


@given(values)
def test_deep_copy_is_equal_and_shares_no_container(v: object) -> None:
    copy = jsonutil.deep_copy(v)
    assert copy == v
    assert not _ids(copy) & _ids(v)


def test_deep_copy_of_what_marshal_refuses() -> None:
    class Labels(dict):  # type: ignore[type-arg]
        pass

    obj = {"metadata": Labels(app="web"), "items": [Labels(a=1)]}
    copy = jsonutil.deep_copy(obj)
    assert copy == obj
    copy["metadata"]["app"] = "db"
    copy["items"][0]["a"] = 2
    assert obj == {"metadata": {"app": "web"}, "items": [{"a": 1}]}


# What orjson reads differently from the standard library, or refuses: each must come out as
# json.loads has it (a value, or a JSONDecodeError at the same place).
_EDGES = [b'{"a": 18446744073709551616}', b'{"a": -9223372036854775809}', b'[123456789012345678901234]',
          b'{"a": 0.12345678901234567890123}', b'{"s": "\\ud800"}', b'NaN', b'[Infinity, -Infinity]',
          b'{"a": 1e400}', b'\xef\xbb\xbf{"a": 1}', '{"a": 1}'.encode("utf-16"), b'{"a":1,"a":2}',
          b'{"a": "12345678901234567890"}', b'[1,]', b'{"a": "\x01"}', b'[] x', b'', b'{"a": -0.0}']


@pytest.mark.parametrize("text", _EDGES)
def test_loads_is_the_standard_librarys_on_what_orjson_reads_otherwise(text: bytes) -> None:
    for data in (text, text.decode("utf-8", errors="surrogatepass") if text[:2] != b"\xff\xfe" else None):
        if data is None:
            continue
        try:
            expected = json.loads(data)
        except json.JSONDecodeError as e:
            with pytest.raises(json.JSONDecodeError) as got:
                jsonutil.loads(data)
            assert (got.value.msg, got.value.pos) == (e.msg, e.pos)
            continue
        got_value = jsonutil.loads(data)
        assert repr(got_value) == repr(expected)  # repr: nan == nan is False; 1 == 1.0 is True
        assert type(got_value) is type(expected)


@given(st.integers(-2**200, 2**200))
def test_loads_keeps_every_integer_exact(n: int) -> None:
    for data in (f'{{"n": {n}}}', f'{{"n": {n}}}'.encode()):
        got = jsonutil.loads(data)["n"]
        assert got == n and type(got) is int
