"""Watch stream decoding and Status → ApiError, without a server."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timonel.api.client.wire import LineSplitter, error_from_body, error_from_status, parse_event
from timonel.api.errors import ApiError, conflict, invalid


def _event(etype: str, name: str, rv: int) -> bytes:
    obj = {"kind": "Pod", "apiVersion": "v1",
           "metadata": {"name": name, "namespace": "ns", "resourceVersion": str(rv)}}
    return json.dumps({"type": etype, "object": obj}).encode() + b"\n"


def test_event_split_across_chunks_comes_out_once_complete() -> None:
    line = _event("ADDED", "a", 5)
    s = LineSplitter()
    assert s.feed(line[:10]) == []
    assert s.feed(line[10:-1]) == []
    out = s.feed(line[-1:])
    assert [parse_event(x)[1]["metadata"]["name"] for x in out] == ["a"]
    assert s.tail() == b""


def test_several_events_in_one_chunk_and_a_partial_tail() -> None:
    a, b, c = _event("ADDED", "a", 1), _event("MODIFIED", "b", 2), _event("DELETED", "c", 3)
    s = LineSplitter()
    out = s.feed(a + b + c[:7])
    assert [parse_event(x)[0] for x in out] == ["ADDED", "MODIFIED"]
    assert [parse_event(x)[0] for x in s.feed(c[7:])] == ["DELETED"]


def test_stream_ending_without_newline_leaves_the_last_event_in_tail() -> None:
    s = LineSplitter()
    assert s.feed(_event("ADDED", "a", 1)[:-1]) == []
    etype, obj = parse_event(s.tail())
    assert (etype, obj["metadata"]["name"]) == ("ADDED", "a")


def test_blank_lines_are_skipped() -> None:
    s = LineSplitter()
    assert len(s.feed(b"\n\n" + _event("ADDED", "a", 1) + b"\r\n")) == 1


def test_a_line_without_end_over_the_limit_is_an_error() -> None:
    s = LineSplitter(max_line=100)
    with pytest.raises(ValueError, match="longer than 100"):
        s.feed(b"x" * 101)


@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=30),
       st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=60))
def test_any_chunking_yields_the_same_events(rvs: list[int], cuts: list[int]) -> None:
    stream = b"".join(_event("MODIFIED", f"p{i}", rv) for i, rv in enumerate(rvs))
    s = LineSplitter()
    got = []
    pos = 0
    for n in cuts:
        got += s.feed(stream[pos:pos + n])
        pos += n
    got += s.feed(stream[pos:])
    assert [parse_event(x)[1]["metadata"]["resourceVersion"] for x in got] == \
        [str(rv) for rv in rvs]


def test_error_event_raises_the_status_as_api_error() -> None:
    line = json.dumps({"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "too old resource version: 5 (100)", "reason": "Expired", "code": 410}})
    with pytest.raises(ApiError) as e:
        parse_event(line.encode())
    assert (e.value.code, e.value.reason) == (410, "Expired")
    assert "too old" in e.value.message


@pytest.mark.parametrize("line", [b"not json", b'{"type":"ADDED"}', b"[1,2]",
                                  b'{"type":"ADDED","object":"x"}'])
def test_malformed_events_are_errors_naming_the_line(line: bytes) -> None:
    with pytest.raises(ApiError) as e:
        parse_event(line)
    assert e.value.code == 500


def test_status_round_trips_into_api_error() -> None:
    sent = conflict("pods", "web", "", "the object has been modified")
    got = error_from_body(json.dumps(sent.status()).encode(), 409)
    assert (got.code, got.reason, got.name, got.kind) == (409, "Conflict", "web", "pods")
    assert got.message == sent.message

    causes = [{"field": "spec.containers", "message": "Required value"}]
    got = error_from_status(invalid("Pod", "web", causes).status(), 422)
    assert got.reason == "Invalid" and got.causes == causes


def test_non_status_bodies_still_give_an_error_with_the_code() -> None:
    got = error_from_body(b"<html>bad gateway</html>", 502)
    assert got.code == 502 and "bad gateway" in got.message
    assert error_from_body(b"", 503).message.endswith("(empty body)")


def test_retry_after_header_wins_over_details() -> None:
    st_obj = ApiError(429, "slow down", retry_after=1).status()
    assert error_from_status(st_obj, 429, "7").retry_after == 7
    assert error_from_status(st_obj, 429).retry_after == 1
