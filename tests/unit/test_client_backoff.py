"""Backoff math, retry_on_conflict and the work queue's rate limiters."""

from __future__ import annotations

import random

import pytest

from timonel.api.client.backoff import Backoff, retry_on_conflict
from timonel.api.client.workqueue import (
    BucketRateLimiter,
    ItemExponentialRateLimiter,
    MaxOfRateLimiter,
)
from timonel.api.errors import ApiError, already_exists, conflict


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    b = Backoff(initial=0.2, factor=2.0, cap=1.0, jitter=0)
    assert [b.next() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    b.reset()
    assert b.next() == 0.2


def test_backoff_jitter_stays_between_base_and_cap() -> None:
    b = Backoff(initial=1.0, factor=2.0, cap=5.0, jitter=0.5, rng=random.Random(1))
    for expected_base in (1.0, 2.0, 4.0, 5.0, 5.0):
        d = b.next()
        assert expected_base <= d <= min(5.0, expected_base * 1.5)


def test_backoff_huge_attempt_counts_do_not_overflow() -> None:
    b = Backoff(initial=0.1, cap=30.0, jitter=0, attempt=10_000)
    assert b.next() == 30.0


def test_fresh_copies_policy_not_state() -> None:
    b = Backoff(initial=0.5, factor=3.0, cap=9.0, jitter=0)
    b.next()
    f = b.fresh()
    assert (f.initial, f.factor, f.cap, f.attempt) == (0.5, 3.0, 9.0, 0)


async def test_retry_on_conflict_rereads_until_it_wins() -> None:
    calls = 0

    async def rmw() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise conflict("pods", "p")
        return "ok"

    assert await retry_on_conflict(rmw) == "ok"
    assert calls == 3


async def test_retry_on_conflict_gives_up_after_steps_with_the_conflict() -> None:
    calls = 0

    async def rmw() -> None:
        nonlocal calls
        calls += 1
        raise conflict("pods", "p")

    with pytest.raises(ApiError) as e:
        await retry_on_conflict(rmw, steps=4)
    assert e.value.code == 409 and calls == 4


@pytest.mark.parametrize("err", [already_exists("pods", "p"), ApiError(422, "invalid"),
                                 ApiError(500, "boom")])
async def test_retry_on_conflict_passes_other_errors_at_once(err: ApiError) -> None:
    calls = 0

    async def rmw() -> None:
        nonlocal calls
        calls += 1
        raise err

    with pytest.raises(ApiError):
        await retry_on_conflict(rmw)
    assert calls == 1


def test_item_exponential_limiter_5ms_to_1000s_per_item() -> None:
    rl = ItemExponentialRateLimiter()
    assert [rl.when("a") for _ in range(4)] == [0.005, 0.01, 0.02, 0.04]
    assert rl.when("b") == 0.005  # per item
    assert rl.num_requeues("a") == 4
    for _ in range(40):
        rl.when("a")
    assert rl.when("a") == 1000.0
    rl.forget("a")
    assert rl.num_requeues("a") == 0 and rl.when("a") == 0.005


def test_bucket_limiter_allows_burst_then_spaces_at_qps() -> None:
    now = [100.0]
    rl = BucketRateLimiter(qps=10, burst=3, clock=lambda: now[0])
    assert [rl.when(i) for i in range(3)] == [0, 0, 0]
    assert rl.when("x") == pytest.approx(0.1)
    assert rl.when("y") == pytest.approx(0.2)
    now[0] += 1.0  # refills, but never above burst
    assert rl.when("z") == 0


def test_max_of_takes_the_longest_wait() -> None:
    now = [0.0]
    rl = MaxOfRateLimiter(ItemExponentialRateLimiter(0.005, 1000),
                          BucketRateLimiter(qps=1, burst=1, clock=lambda: now[0]))
    assert rl.when("a") == 0.005
    assert rl.when("b") == pytest.approx(1.0)
    assert rl.num_requeues("a") == 1
    rl.forget("a")
    assert rl.num_requeues("a") == 0
