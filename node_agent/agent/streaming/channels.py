"""The Kubernetes WebSocket channel protocol (`*.channel.k8s.io`).

Every message carries one channel: 0 stdin, 1 stdout, 2 stderr, 3 status
(error), 4 resize. `channel.k8s.io` and `v4`/`v5` send binary messages whose
first byte is the channel; `base64.channel.k8s.io` sends text messages whose
first character is the channel digit, the rest base64. From v4 on the status
channel carries a Status object (before: a bare error text); v5 adds a close
message (channel 255, then the channel to close) so a client can end stdin.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V3 = "v3.channel.k8s.io"
V2 = "v2.channel.k8s.io"
V1 = "channel.k8s.io"
BASE64 = "base64.channel.k8s.io"
# Preference order when a client offers several (as the kubelet: newest first).
PROTOCOLS = (V5, V4, V3, V2, V1, BASE64)

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255


def negotiate(offered: list[str]) -> str | None:
    """The protocol to speak with a client offering `offered`, or None."""
    wanted = {p.strip() for p in offered if p.strip()}
    for p in PROTOCOLS:
        if p in wanted:
            return p
    return None


def split_header(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()]


def encode(protocol: str, channel: int, data: bytes) -> bytes | str:
    """One message: bytes to send as binary, str to send as text."""
    if protocol == BASE64:
        return str(channel) + base64.b64encode(data).decode()
    return bytes([channel]) + data


@dataclass
class Frame:
    channel: int
    data: bytes


def decode(protocol: str, message: bytes | str) -> Frame | None:
    """The channel and payload of a received message; None for an empty one."""
    if isinstance(message, str):
        if not message:
            return None
        if protocol == BASE64:
            try:
                return Frame(int(message[0]), base64.b64decode(message[1:], validate=True))
            except ValueError:
                return None
        message = message.encode()
    if not message:
        return None
    return Frame(message[0], bytes(message[1:]))


def closed_channel(protocol: str, frame: Frame) -> int | None:
    """The channel a v5 close message closes, else None."""
    if protocol == V5 and frame.channel == CLOSE and frame.data:
        return frame.data[0]
    return None


def parse_resize(data: bytes) -> tuple[int, int] | None:
    """(rows, cols) of a resize message `{"Width":..,"Height":..}`."""
    try:
        size = json.loads(data)
        return int(size["Height"]), int(size["Width"])
    except (ValueError, KeyError, TypeError):
        return None


def exit_status(exit_code: int | None, cmd: list[str], error: str = "") -> dict[str, Any]:
    """The v4+ status message at the end of an exec (the kubelet's wording)."""
    if error:
        return {"metadata": {}, "status": "Failure", "message": error,
                "reason": "InternalError", "code": 500}
    if exit_code == 0:
        return {"metadata": {}, "status": "Success"}
    code = -1 if exit_code is None else exit_code
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command "
                       f"[{' '.join(cmd)}], exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def status_payload(protocol: str, status: dict[str, Any]) -> bytes | None:
    """What goes on the error channel at the end: a Status (v4+), a bare
    message for failures in older versions, nothing for an old success."""
    if protocol in (V5, V4):
        return json.dumps(status).encode()
    if status.get("status") == "Success":
        return None
    return str(status.get("message", "")).encode()


def status_from_payload(protocol: str, data: bytes) -> dict[str, Any]:
    """The inverse of status_payload, for clients and tests."""
    if protocol in (V5, V4):
        out: dict[str, Any] = json.loads(data)
        return out
    return {"status": "Failure", "message": data.decode(errors="replace")}
