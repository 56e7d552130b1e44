"""Reading HTTP bodies (aiohttp streams) on either side of a connection."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a type only: the runtime loads aiohttp at its first pull, not before
    import aiohttp


async def read_at_most(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """The body up to its end or `limit` bytes, whichever comes first.

    One `stream.read(n)` returns only what has arrived so far: a body split over
    several TLS records (kubectl writes headers and body separately) came back
    cut short."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
