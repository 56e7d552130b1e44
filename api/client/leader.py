"""Leader election through a coordination.k8s.io/v1 Lease, as client-go does it.

Candidates race to write their identity into one Lease. Every write is a
compare-and-swap on the Lease's resourceVersion, so two candidates can never
both believe they won. The leader renews the Lease every `retry_period`; a
candidate takes over only when it has seen the Lease unchanged for
`lease_duration` — measured on its own clock from when it last saw a change,
so clock skew between machines does not matter. A leader that cannot renew
within `renew_deadline` stops leading (its work is cancelled) before anyone
else may take over, since renew_deadline < lease_duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from timonel.api import meta
from timonel.api.client.rest import ApiConnectionError, Client
from timonel.api.client.wire import Obj
from timonel.api.errors import ApiError

log = logging.getLogger(__name__)

LEASE = ("coordination.k8s.io/v1", "Lease")


class LeaderElector:
    def __init__(self, client: Client, name: str, namespace: str, identity: str, *,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0,
                 retry_period: float = 2.0, release_on_cancel: bool = True,
                 on_new_leader: Callable[[str], Any] | None = None) -> None:
        if not identity:
            raise ValueError("leader election needs a non-empty identity")
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("leader election needs lease_duration > renew_deadline > "
                             f"retry_period > 0; got {lease_duration}, {renew_deadline}, "
                             f"{retry_period}")
        self.client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        self.on_new_leader = on_new_leader
        self._observed: Obj | None = None  # the Lease as last read or written
        self._observed_time = 0.0  # loop time when it last changed

    # -- what this candidate knows ------------------------------------------------

    def leader(self) -> str:
        """The holder of the Lease as last observed ("" if none)."""
        return _spec(self._observed).get("holderIdentity") or ""

    def is_leader(self) -> bool:
        return self.leader() == self.identity

    def _observe(self, lease: Obj) -> None:
        before = self.leader()
        changed = self._observed is None or \
            meta.resource_version(self._observed) != meta.resource_version(lease)
        self._observed = lease
        if changed:
            self._observed_time = asyncio.get_running_loop().time()
        after = self.leader()
        if after != before and after:
            log.info("new leader lease=%s/%s leader=%s", self.namespace, self.name, after)
            if self.on_new_leader is not None:
                self.on_new_leader(after)

    # -- one attempt ----------------------------------------------------------------

    def _record(self, old: Obj | None) -> dict[str, Any]:
        now = meta.now_micro()
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": 0,
        }
        old_spec = _spec(old)
        if old is not None:
            if old_spec.get("holderIdentity") == self.identity:
                spec["acquireTime"] = old_spec.get("acquireTime") or now
                spec["leaseTransitions"] = int(old_spec.get("leaseTransitions") or 0)
            else:
                spec["leaseTransitions"] = int(old_spec.get("leaseTransitions") or 0) + 1
        return spec

    async def try_acquire_or_renew(self) -> bool:
        """One round of client-go's tryAcquireOrRenew: True when this
        candidate holds the Lease afterwards."""
        try:
            try:
                lease = await self.client.get(LEASE, self.namespace, self.name)
            except ApiError as e:
                if e.code != 404:
                    raise
                created = await self.client.create(LEASE, {
                    "apiVersion": LEASE[0], "kind": LEASE[1],
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._record(None),
                })
                self._observe(created)
                return True
            self._observe(lease)
            spec = _spec(lease)
            holder = spec.get("holderIdentity") or ""
            duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
            now = asyncio.get_running_loop().time()
            if holder and holder != self.identity and self._observed_time + duration > now:
                return False
            updated = dict(lease)
            updated["spec"] = {**spec, **self._record(lease)}
            # The resourceVersion read above makes this a compare-and-swap.
            written = await self.client.update(LEASE, updated)
            self._observe(written)
            return True
        except ApiError as e:
            if e.code != 409:
                log.warning("lease update failed lease=%s/%s identity=%s err=%s",
                            self.namespace, self.name, self.identity, e)
            return False
        except ApiConnectionError as e:
            log.warning("lease update failed lease=%s/%s identity=%s err=%s", self.namespace,
                        self.name, self.identity, e)
            return False

    async def release(self) -> bool:
        """Give the Lease up so another candidate takes over at once."""
        if not self.is_leader() or self._observed is None:
            return False
        lease = self._observed
        for _ in range(3):
            now = meta.now_micro()
            update = dict(lease)
            update["spec"] = {**_spec(lease), "holderIdentity": "", "leaseDurationSeconds": 1,
                              "acquireTime": now, "renewTime": now}
            try:
                self._observe(await self.client.update(LEASE, update))
            except ApiError as e:
                if e.code != 409:
                    log.warning("could not release lease=%s/%s identity=%s err=%s",
                                self.namespace, self.name, self.identity, e)
                    return False
                # A renewal cancelled in flight may still have landed: release
                # what is there now if it is still ours.
                try:
                    lease = await self.client.get(LEASE, self.namespace, self.name)
                except (ApiError, ApiConnectionError):
                    return False
                if _spec(lease).get("holderIdentity") != self.identity:
                    return False
                continue
            except ApiConnectionError as e:
                log.warning("could not release lease=%s/%s identity=%s err=%s", self.namespace,
                            self.name, self.identity, e)
                return False
            log.info("released lease=%s/%s identity=%s", self.namespace, self.name, self.identity)
            return True
        return False

    # -- the loops --------------------------------------------------------------------

    async def acquire(self) -> None:
        """Try every retry_period (jittered) until this candidate leads."""
        while not await self._attempt(self.retry_period):
            await asyncio.sleep(self.retry_period * (1 + 1.2 * random.random()))
        log.info("became leader lease=%s/%s identity=%s", self.namespace, self.name,
                 self.identity)

    async def _attempt(self, timeout: float) -> bool:
        try:
            return await asyncio.wait_for(self.try_acquire_or_renew(), max(timeout, 0.05))
        except TimeoutError:
            return False

    async def renew(self) -> None:
        """Renew every retry_period; returns when a renewal could not be done
        within renew_deadline (leadership is lost)."""
        loop = asyncio.get_running_loop()
        while True:
            deadline = loop.time() + self.renew_deadline
            while not await self._attempt(deadline - loop.time()):
                left = deadline - loop.time()
                if left <= 0 or (self._observed is not None and not self.is_leader()
                                 and self.leader()):
                    log.warning("lost leadership lease=%s/%s identity=%s holder=%s",
                                self.namespace, self.name, self.identity, self.leader())
                    return
                await asyncio.sleep(min(self.retry_period, left))
            await asyncio.sleep(self.retry_period)

    async def run(self, on_started: Callable[[], Awaitable[Any]],
                  on_stopped: Callable[[], Any] | None = None) -> None:
        """Campaign, then run `on_started()` while leading. Returns when
        leadership is lost (`on_started` is cancelled first) or when
        `on_started` returns (the Lease is released); cancelling `run`
        cancels the work and, with release_on_cancel, releases the Lease.
        `on_stopped` runs whenever leading ends. An exception from the work
        is raised from here after the Lease is released."""
        await self.acquire()
        work = asyncio.create_task(_call(on_started), name=f"leader-work {self.name}")
        renewing = asyncio.create_task(self.renew(), name=f"leader-renew {self.name}")
        release = True
        try:
            await asyncio.wait({work, renewing}, return_when=asyncio.FIRST_COMPLETED)
            release = work.done()
        except asyncio.CancelledError:
            release = self.release_on_cancel
            raise
        finally:
            for t in (work, renewing):
                t.cancel()
            for t in (work, renewing):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            if release:
                await self.release()
            if on_stopped is not None:
                try:
                    await _call(on_stopped)
                except Exception:
                    log.exception("on_stopped failed lease=%s/%s", self.namespace, self.name)
        if work.done() and not work.cancelled() and work.exception() is not None:
            raise work.exception()  # type: ignore[misc]


async def run_with_leader_election(client: Client, name: str, namespace: str, identity: str,
                                   on_started: Callable[[], Awaitable[Any]],
                                   on_stopped: Callable[[], Any] | None = None,
                                   **options: Any) -> None:
    """Campaign for Lease `namespace/name` and run `on_started()` while
    leading; see LeaderElector.run. `options`: lease_duration (15 s),
    renew_deadline (10 s), retry_period (2 s), release_on_cancel (True),
    on_new_leader."""
    await LeaderElector(client, name, namespace, identity, **options).run(on_started, on_stopped)


def _spec(lease: Obj | None) -> dict[str, Any]:
    return (lease or {}).get("spec") or {}


async def _call(fn: Callable[[], Any]) -> Any:
    result = fn()
    if inspect.isawaitable(result):
        return await result
    return result
