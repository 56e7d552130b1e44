"""A minimal protobuf wire-format writer (proto3 semantics).

Enough to encode a document whose message layout is known as field numbers:
we serve one protobuf document (the gnostic OpenAPI v2 form kubectl reads),
and pulling in generated code for its ~60 messages would be more to maintain
than these few functions. Proto3 leaves out fields at their default value
(empty string, 0, false), and so do the helpers here.

Each helper returns the bytes of one field (tag + payload); a message is the
concatenation of its fields, and embedding it is `message(number, body)`.
"""

from __future__ import annotations

import struct

VARINT = 0
FIXED64 = 1
LENGTH_DELIMITED = 2


def varint(n: int) -> bytes:
    """Base-128 varint; negative numbers as their 64-bit two's complement (as int64 does)."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def length_delimited(number: int, payload: bytes) -> bytes:
    """A length-delimited field, written even when empty (an embedded message that is present)."""
    return tag(number, LENGTH_DELIMITED) + varint(len(payload)) + payload


def message(number: int, body: bytes) -> bytes:
    return length_delimited(number, body)


def string(number: int, value: str) -> bytes:
    return length_delimited(number, value.encode()) if value else b""


def strings(number: int, values: list[str]) -> bytes:
    """A repeated string: one field per element, empty strings included (they are elements)."""
    return b"".join(length_delimited(number, v.encode()) for v in values)


def boolean(number: int, value: bool) -> bytes:
    return tag(number, VARINT) + b"\x01" if value else b""


def int64(number: int, value: int) -> bytes:
    return tag(number, VARINT) + varint(value) if value else b""


def double(number: int, value: float) -> bytes:
    return tag(number, FIXED64) + struct.pack("<d", value) if value else b""
