"""A watch that never ends on its own: resumes, follows bookmarks, relists on 410.

One watch request ends for ordinary reasons (its timeout, a server restart, a
dropped connection). `watch_forever` opens the next one from the last
resourceVersion it saw, so no event is lost or repeated; bookmarks move that
version forward on quiet resources so a resume after a long quiet spell is not
too old. When the version is too old anyway (410 Expired: the server no longer
has the events since then), the caller relists and says where to go on from.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing

from timonel.api.client.backoff import Backoff
from timonel.api.client.rest import ApiConnectionError, Client, RType, resolve
from timonel.api.client.wire import Obj
from timonel.api.errors import ApiError

log = logging.getLogger(__name__)

# Errors that mean "this request is wrong", not "the server is unwell":
# retrying cannot help, the caller must hear about it.
FATAL_CODES = (400, 404, 405, 422)

# client-go's reflector picks a watch timeout between 5 and 10 minutes, so
# the watches of many clients do not all reconnect at the same moment.
MIN_WATCH_TIMEOUT = 300


def watch_timeout(minimum: int = MIN_WATCH_TIMEOUT, rng: random.Random | None = None) -> int:
    return int(minimum * (1 + (rng or random).random()))


async def watch_forever(
    client: Client,
    rtype: RType,
    namespace: str = "",
    *,
    resource_version: str = "",
    label_selector: str = "",
    field_selector: str = "",
    on_expired: Callable[[], Awaitable[str]] | None = None,
    backoff: Backoff | None = None,
    min_timeout: int = MIN_WATCH_TIMEOUT,
    bookmarks: bool = False,
) -> AsyncGenerator[tuple[str, Obj], None]:
    """Watch events as `(type, object)` until the consumer stops iterating
    (break, or cancel its task).

    Starts after `resource_version` (empty: the current objects come first
    as ADDED). On 410 Expired it awaits `on_expired()`, which relists and
    returns the resourceVersion to go on from; without it the watch restarts
    with no version, so the server sends the current objects as ADDED again
    (deletions missed meanwhile are then not seen: an Informer handles those).
    BOOKMARK events are yielded only if `bookmarks` is true. Connection
    failures and server errors are retried forever with `backoff`; requests
    the server rejects as wrong (400, 404, 422) raise ApiError.
    """
    rt = resolve(rtype)
    b = backoff.fresh() if backoff is not None else Backoff(initial=0.2, factor=2.0, cap=30.0)
    rv = resource_version
    expired = False
    while True:
        if expired:
            if on_expired is None:
                rv, expired = "", False
            else:
                try:
                    rv = await on_expired()
                    expired = False
                except (ApiConnectionError, ApiError) as e:
                    if isinstance(e, ApiError) and e.code in FATAL_CODES:
                        raise
                    delay = b.next()
                    log.warning("relist failed rtype=%s ns=%s err=%s retry_in=%.1fs", rt.plural,
                                namespace or "*", e, delay)
                    await asyncio.sleep(delay)
                    continue
        got_events = False
        try:
            stream = client.watch(rt, namespace, resource_version=rv,
                                  label_selector=label_selector, field_selector=field_selector,
                                  allow_bookmarks=True,
                                  timeout_seconds=watch_timeout(min_timeout))
            async with aclosing(stream) as events:
                async for etype, obj in events:
                    got_events = True
                    new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if new_rv:
                        rv = str(new_rv)
                    if etype == "BOOKMARK" and not bookmarks:
                        continue
                    yield etype, obj
                    b.reset()
            # The server ended the watch (its timeout): resume at once.
            b.reset()
            continue
        except ApiError as e:
            if e.code == 410:
                log.info("watch expired, relisting rtype=%s ns=%s rv=%s msg=%s", rt.plural,
                         namespace or "*", rv, e.message)
                expired = True
                continue
            if e.code in FATAL_CODES:
                raise
            err: Exception = e
        except ApiConnectionError as e:
            err = e
        if got_events:
            # The stream worked for a while before it broke: start the backoff over.
            b.reset()
        delay = b.next()
        log.warning("watch broke rtype=%s ns=%s rv=%s err=%s retry_in=%.1fs", rt.plural,
                    namespace or "*", rv, err, delay)
        await asyncio.sleep(delay)
