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
