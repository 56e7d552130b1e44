"""Start-up hooks of long-running processes: small when idle, fewer pauses when busy.

`timonel up` idles as several processes (server with its scheduler and controllers, agent,
runtime); what each holds while nothing happens is the cluster's cost on the machine.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator, Callable

log = logging.getLogger(__name__)

# asyncio gives every TLS connection a read buffer of SSLProtocol.max_size (256 KiB), zero-filled,
# so resident for the connection's life. The server keeps one connection per watch on each side
# (its in-process controllers and scheduler watch it over TLS: ~70 watches, ~140 connections),
# 36 MB idle. A TLS record carries at most 16 KiB, so 32 KiB still takes two records per read;
# measured on loopback (200 MiB, best of 6): 32, 64 and 256 KiB all move ~400-500 MiB/s.
TLS_READ_BUFFER = 32 * 1024


def shrink_tls_read_buffers(size: int = TLS_READ_BUFFER) -> None:
    """Give TLS connections opened from now on in this process a read buffer of `size` bytes."""
    if size < 16 * 1024 + 256:  # below a full TLS record, every record would take two reads
        raise ValueError(f"a TLS read buffer of {size} bytes is smaller than one TLS record (16 KiB)")
    asyncio.sslproto.SSLProtocol.max_size = size


def freeze_start_up_objects() -> None:
    """Collect once, then keep every object alive now (modules, schemas, start-up state)
    out of all later collections. A full collection walks every tracked object: in a
    burst of 100 pod starts the agent and the runtime daemon each ran one (~28 ms on
    two CPUs), walking mostly what they had loaded at start; with these frozen, none ran.
    Frozen objects are freed by reference counting as usual, only cycles among them stay."""
    gc.collect()
    gc.freeze()


# glibc keeps freed C-heap pages (dict tables, strings, buffers over 512 bytes) mapped
# for reuse; malloc_trim hands the free ones back. Measured on an idle `timonel up`
# (gdb calling it once per process): server, agent and runtime ~1-2.4 MB each, ~6 MB
# in all; it takes ~1 ms on these heaps.
RELEASE_INTERVAL = 30.0


def release_free_heap() -> bool:
    """Return the C heap's free pages to the kernel; False where libc has no malloc_trim."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    import ctypes

    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None


async def release_free_heap_periodically(interval: float = RELEASE_INTERVAL) -> None:
    while True:
        await asyncio.sleep(interval)
        if not release_free_heap():
            return


@contextlib.asynccontextmanager
async def releasing_free_heap(interval: float = RELEASE_INTERVAL) -> AsyncIterator[None]:
    """Release free heap every `interval` s while the block runs: the life of an
    idle-heavy process (server, agent, runtime daemon)."""
    task = asyncio.create_task(release_free_heap_periodically(interval))
    try:
        yield
    finally:
        task.cancel()
