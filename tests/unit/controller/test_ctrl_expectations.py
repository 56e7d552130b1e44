"""Expectations: no second round of creates while the watch lags."""

from __future__ import annotations

from timonel.controller.expectations import ControllerExpectations, UIDTrackingExpectations


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_creations_block_until_observed() -> None:
    exp = ControllerExpectations(clock=Clock())
    assert exp.satisfied("ns/rs")  # no record: trust the cache
    exp.expect_creations("ns/rs", 3)
    assert not exp.satisfied("ns/rs")
    exp.creation_observed("ns/rs")
    exp.creation_observed("ns/rs")
    assert not exp.satisfied("ns/rs")
    exp.creation_observed("ns/rs")
    assert exp.satisfied("ns/rs")
    # Seeing more than expected (another writer) still counts as satisfied.
    exp.creation_observed("ns/rs")
    assert exp.satisfied("ns/rs")


def test_failed_creates_lower_the_expectation() -> None:
    exp = ControllerExpectations(clock=Clock())
    exp.expect_creations("k", 4)
    exp.lower("k", 2, 0)  # two creates were refused: never coming
    exp.creation_observed("k")
    assert not exp.satisfied("k")
    exp.creation_observed("k")
    assert exp.satisfied("k")


def test_expired_record_counts_as_satisfied() -> None:
    clock = Clock()
    exp = ControllerExpectations(ttl=300, clock=clock)
    exp.expect_creations("k", 1)
    clock.t += 299
    assert not exp.satisfied("k")
    clock.t += 2
    assert exp.satisfied("k")


def test_observations_for_unknown_keys_are_ignored() -> None:
    exp = ControllerExpectations(clock=Clock())
    exp.creation_observed("nobody")
    exp.deletion_observed("nobody")
    assert exp.get("nobody") is None and exp.satisfied("nobody")


def test_deletions_count_each_pod_once() -> None:
    exp = UIDTrackingExpectations(clock=Clock())
    exp.expect_deletions_of("ns/rs", ["ns/a", "ns/b"])
    assert not exp.satisfied("ns/rs")
    exp.deletion_observed_of("ns/rs", "ns/a")  # marked with deletionTimestamp
    exp.deletion_observed_of("ns/rs", "ns/a")  # ...and later removed: not twice
    exp.deletion_observed_of("ns/rs", "ns/other")
    assert not exp.satisfied("ns/rs")
    assert exp.deleting("ns/rs") == {"ns/b"}
    exp.deletion_observed_of("ns/rs", "ns/b")
    assert exp.satisfied("ns/rs")
    exp.delete("ns/rs")
    assert exp.deleting("ns/rs") == set()
