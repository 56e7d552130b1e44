"""What comes back over the wire, decoded: Status errors and watch event lines.

Pure functions (no I/O) so the tricky parts — events split across chunks,
several events in one chunk, error bodies that are not Status objects — are
unit-tested without a server.
"""

from __future__ import annotations

import json
from typing import Any

from timonel.api import jsonutil
from timonel.api.errors import ApiError

Obj = dict[str, Any]

# A watch line longer than this is a broken stream, not an object (etcd
# itself refuses values over 1.5 MiB).
MAX_LINE = 16 * 1024 * 1024


class LineSplitter:
    """Splits a byte stream into newline-terminated lines, keeping the
    partial tail until the next chunk completes it."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buf = bytearray()
        self._max = max_line

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buf += chunk
        end = self._buf.rfind(b"\n")
        if end < 0:
            if len(self._buf) > self._max:
                raise ValueError(f"watch event longer than {self._max} bytes without a newline")
            return []
        complete = bytes(self._buf[:end])
        del self._buf[: end + 1]
        return [line for line in complete.split(b"\n") if line.strip()]

    def tail(self) -> bytes:
        """What is left after the stream ended (an event without its newline)."""
        return bytes(self._buf).strip()


def parse_event(line: bytes) -> tuple[str, Obj]:
    """One watch event line to (type, object); ERROR events raise ApiError."""
    try:
        ev = jsonutil.loads(line)
    except ValueError as e:
        raise ApiError(500, f"the server sent a watch event that is not JSON ({e}): "
                       f"{line[:200]!r}", "InternalError") from None
    if not isinstance(ev, dict) or not isinstance(ev.get("type"), str) \
            or not isinstance(ev.get("object"), dict):
        raise ApiError(500, f"the server sent a malformed watch event: {line[:200]!r}",
                       "InternalError")
    if ev["type"] == "ERROR":
        raise error_from_status(ev["object"], int(ev["object"].get("code") or 500))
    return ev["type"], ev["object"]


def error_from_status(status: Any, code: int, retry_after: str | None = None) -> ApiError:
    """An ApiError from a Status object (or whatever non-Status body came back)."""
    if not isinstance(status, dict) or status.get("kind") != "Status":
        text = status if isinstance(status, str) else json.dumps(status)[:500]
        return ApiError(code, f"the server answered {code}: {text.strip()[:500] or '(empty body)'}")
    details = status.get("details") or {}
    ra: int | None = details.get("retryAfterSeconds")
    if retry_after and retry_after.isdigit():
        ra = int(retry_after)
    return ApiError(
        int(status.get("code") or code),
        str(status.get("message") or f"the server answered {code}"),
        status.get("reason") or None,
        name=details.get("name"),
        group=details.get("group"),
        kind=details.get("kind"),
        causes=details.get("causes"),
        retry_after=ra,
    )


def error_from_body(body: bytes, code: int, retry_after: str | None = None) -> ApiError:
    try:
        doc: Any = json.loads(body) if body.strip() else ""
    except ValueError:
        doc = body.decode(errors="replace")
    return error_from_status(doc, code, retry_after)
