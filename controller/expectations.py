"""Expectations: what a controller has asked for and not yet seen come back
through its watch (upstream's ControllerExpectations).

A ReplicaSet that created 3 pods must not count pods again until its
informer has seen those 3 arrive, or a second sync in between would create
3 more. So before creating it records "expect 3 creations"; the pod
informer's add handler lowers the count; syncs that would create or delete
wait until the count is back to zero. A record older than `ttl` counts as
satisfied, so a lost event (or a create that failed without our knowing)
stalls a controller for minutes, never for ever.

Deletions are tracked by pod key (`UIDTrackingExpectations`): a pod is first
marked deleted (deletionTimestamp) and only later removed, and each of
those must lower the count only once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Upstream's ExpectationsTimeout.
EXPECTATIONS_TTL = 300.0


@dataclass
class Expectation:
    add: int
    delete: int
    timestamp: float

    def fulfilled(self) -> bool:
        # Counts can go below zero when more was seen than expected.
        return self.add <= 0 and self.delete <= 0


class ControllerExpectations:
    def __init__(self, ttl: float = EXPECTATIONS_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._store: dict[str, Expectation] = {}

    def get(self, key: str) -> Expectation | None:
        return self._store.get(key)

    def satisfied(self, key: str) -> bool:
        """True when `key` may act again: nothing pending, the record expired,
        or there was never a record (a new or restarted controller trusts
        its freshly synced cache)."""
        exp = self._store.get(key)
        if exp is None:
            return True
        if exp.fulfilled():
            return True
        if self._clock() - exp.timestamp > self.ttl:
            log.info("expectations expired key=%s add=%d del=%d", key, exp.add, exp.delete)
            return True
        return False

    def set(self, key: str, add: int, delete: int) -> None:
        self._store[key] = Expectation(add, delete, self._clock())

    def expect_creations(self, key: str, count: int) -> None:
        self.set(key, count, 0)

    def expect_deletions(self, key: str, count: int) -> None:
        self.set(key, 0, count)

    def lower(self, key: str, add: int, delete: int) -> None:
        exp = self._store.get(key)
        if exp is not None:
            exp.add -= add
            exp.delete -= delete

    def raise_(self, key: str, add: int, delete: int) -> None:
        exp = self._store.get(key)
        if exp is not None:
            exp.add += add
            exp.delete += delete

    def creation_observed(self, key: str) -> None:
        self.lower(key, 1, 0)

    def deletion_observed(self, key: str) -> None:
        self.lower(key, 0, 1)

    def delete(self, key: str) -> None:
        self._store.pop(key, None)


class UIDTrackingExpectations(ControllerExpectations):
    """Expectations whose deletions are tracked per pod key, so the mark
    (deletionTimestamp) and the final removal of one pod count once."""

    def __init__(self, ttl: float = EXPECTATIONS_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(ttl, clock)
        self._deleting: dict[str, set[str]] = {}

    def expect_deletions_of(self, key: str, pod_keys: Iterable[str]) -> None:
        keys = set(pod_keys)
        self._deleting[key] = keys
        self.expect_deletions(key, len(keys))

    def deleting(self, key: str) -> set[str]:
        return set(self._deleting.get(key, ()))

    def deletion_observed_of(self, key: str, pod_key: str) -> None:
        keys = self._deleting.get(key)
        if keys is not None and pod_key in keys:
            keys.discard(pod_key)
            self.deletion_observed(key)

    def delete(self, key: str) -> None:
        super().delete(key)
        self._deleting.pop(key, None)
