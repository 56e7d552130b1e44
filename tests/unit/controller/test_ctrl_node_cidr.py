"""The pod CIDR allocator: never the same subnet twice, released subnets
come back, existing allocations survive a restart, bad options explained."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from timonel.controller.node_lifecycle.cidr import CIDRExhaustedError, CIDRSet, parse_cluster_cidr


def make(cidr: str = "10.244.0.0/16", mask: int = 24) -> CIDRSet:
    return CIDRSet(parse_cluster_cidr(cidr, mask), mask)


def test_allocates_consecutive_subnets_of_the_mask_size() -> None:
    s = make()
    assert [s.allocate() for _ in range(3)] == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]


def test_exhaustion_and_release() -> None:
    s = make("10.0.0.0/30", 31)
    a, b = s.allocate(), s.allocate()
    assert {a, b} == {"10.0.0.0/31", "10.0.0.2/31"}
    with pytest.raises(CIDRExhaustedError, match="no free /31"):
        s.allocate()
    assert s.release(a)
    assert s.allocate() == a
    assert not s.release("192.168.0.0/31")  # not ours


def test_occupied_subnets_are_skipped_after_restart() -> None:
    s = make()
    assert s.occupy("10.244.0.0/24") and s.occupy("10.244.2.0/24")
    assert not s.occupy("10.245.0.0/24")  # outside the cluster CIDR
    assert not s.occupy("10.244.3.0/25")  # wrong size
    assert [s.allocate(), s.allocate()] == ["10.244.1.0/24", "10.244.3.0/24"]


def test_released_subnet_is_not_reused_before_the_others() -> None:
    # Round-robin like upstream: a just-released subnet is handed out last,
    # so a node's old routes do not immediately point at a new node.
    s = make("10.0.0.0/22", 24)
    first = s.allocate()
    s.release(first)
    assert s.allocate() == "10.0.1.0/24"


def test_ipv6() -> None:
    s = make("fd00::/104", 120)
    assert s.allocate() == "fd00::/120"
    assert s.allocate() == "fd00::100/120"


@pytest.mark.parametrize(("cidr", "mask", "message"), [
    ("10.244.0.0/33", 24, "not a valid CIDR"),
    ("nonsense", 24, "not a valid CIDR"),
    ("10.244.0.0/16", 8, "does not fit"),
    ("10.0.0.0/8", 33, "does not fit"),
    ("10.0.0.0/4", 30, r"more than 2\^24"),
])
def test_bad_options_say_what_to_do(cidr: str, mask: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_cluster_cidr(cidr, mask)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 40)), max_size=120))
def test_never_hands_out_a_subnet_in_use(ops: list[tuple[bool, int]]) -> None:
    s = make("10.1.0.0/26", 29)  # 8 subnets
    held: list[str] = []
    for alloc, pick in ops:
        if alloc:
            try:
                c = s.allocate()
            except CIDRExhaustedError:
                assert len(held) == 8
                continue
            assert c not in held
            assert ipaddress.IPv4Network(c).subnet_of(ipaddress.IPv4Network("10.1.0.0/26"))
            held.append(c)
        elif held:
            s.release(held.pop(pick % len(held)))
        assert len(s) == len(held)
