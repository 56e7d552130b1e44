"""The WebSocket channel protocol: framing per version, v5 close, resize, status."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from timonel.node_agent.agent.streaming import channels as ch


def test_negotiate_prefers_newest_offered() -> None:
    assert ch.negotiate(["v4.channel.k8s.io", "v5.channel.k8s.io"]) == ch.V5
    assert ch.negotiate(["v4.channel.k8s.io"]) == ch.V4
    assert ch.negotiate(["base64.channel.k8s.io", "channel.k8s.io"]) == ch.V1
    assert ch.negotiate(["x.example"]) is None
    assert ch.split_header("v5.channel.k8s.io, v4.channel.k8s.io,") == [ch.V5, ch.V4]


def test_binary_frames_carry_the_channel_byte() -> None:
    assert ch.encode(ch.V5, ch.STDOUT, b"hi") == b"\x01hi"
    assert ch.encode(ch.V4, ch.STDERR, b"") == b"\x02"
    f = ch.decode(ch.V4, b"\x00input")
    assert f is not None and (f.channel, f.data) == (ch.STDIN, b"input")
    assert ch.decode(ch.V4, b"") is None


def test_base64_frames_are_text() -> None:
    msg = ch.encode(ch.BASE64, ch.STDOUT, b"hello")
    assert msg == "1aGVsbG8="
    f = ch.decode(ch.BASE64, "0d29ybGQ=")
    assert f is not None and (f.channel, f.data) == (ch.STDIN, b"world")
    assert ch.decode(ch.BASE64, "0***") is None


@given(st.sampled_from([ch.V5, ch.V4, ch.V1, ch.BASE64]), st.integers(0, 4), st.binary(max_size=300))
def test_encode_decode_round_trip(protocol: str, channel: int, data: bytes) -> None:
    f = ch.decode(protocol, ch.encode(protocol, channel, data))
    assert f is not None and (f.channel, f.data) == (channel, data)


def test_v5_close_stdin_only_in_v5() -> None:
    close = ch.decode(ch.V5, b"\xff\x00")
    assert close is not None and ch.closed_channel(ch.V5, close) == ch.STDIN
    same = ch.decode(ch.V4, b"\xff\x00")
    assert same is not None and ch.closed_channel(ch.V4, same) is None


def test_resize() -> None:
    assert ch.parse_resize(b'{"Width":120,"Height":40}') == (40, 120)
    assert ch.parse_resize(b"{") is None and ch.parse_resize(b'{"Width":1}') is None


def test_exit_status_as_kubectl_reads_it() -> None:
    assert ch.exit_status(0, ["true"]) == {"metadata": {}, "status": "Success"}
    s = ch.exit_status(7, ["sh", "-c", "exit 7"])
    assert s["status"] == "Failure" and s["reason"] == "NonZeroExitCode"
    assert s["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}]
    assert "exit code 7" in s["message"]
    err = ch.exit_status(None, ["x"], "error executing command: boom")
    assert err["status"] == "Failure" and err["message"] == "error executing command: boom"


def test_status_payload_per_version() -> None:
    ok = ch.exit_status(0, ["true"])
    bad = ch.exit_status(3, ["false"])
    assert json.loads(ch.status_payload(ch.V4, ok) or b"") == ok
    assert ch.status_from_payload(ch.V5, ch.status_payload(ch.V5, bad) or b"") == bad
    # Before v4 a success says nothing and a failure is a bare message.
    assert ch.status_payload(ch.V1, ok) is None
    assert ch.status_payload(ch.V1, bad) == bad["message"].encode()
