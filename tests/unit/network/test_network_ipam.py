"""IPAM on a temp dir: no root, no network."""

from __future__ import annotations

import ipaddress
import json
import multiprocessing
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from timonel.node_agent.runtime.network import ipam
from timonel.node_agent.runtime.network.config import NetworkError


def test_first_addresses_skip_network_and_gateway(tmp_path: Path) -> None:
    ips = [ipam.allocate(str(tmp_path), "10.88.0.0/24", f"pod-{i}").ip for i in range(3)]
    assert ips == ["10.88.0.2", "10.88.0.3", "10.88.0.4"]


def test_same_pod_gets_same_address(tmp_path: Path) -> None:
    a = ipam.allocate(str(tmp_path), "10.88.0.0/24", "p")
    b = ipam.allocate(str(tmp_path), "10.88.0.0/24", "p")
    assert a == b
    assert len(ipam.list_allocations(str(tmp_path))) == 1


def test_acquire_says_whether_the_address_is_new(tmp_path: Path) -> None:
    a, fresh = ipam.acquire(str(tmp_path), "10.88.0.0/24", "p")
    b, again = ipam.acquire(str(tmp_path), "10.88.0.0/24", "p")
    assert (a, fresh) == (b, True) and again is False


def test_a_torn_cursor_starts_the_search_at_the_beginning(tmp_path: Path) -> None:
    d = str(tmp_path)
    for i in range(3):
        ipam.allocate(d, "10.88.0.0/24", f"p{i}")
    assert (tmp_path / "ipam" / ".last").read_text() == "10.88.0.4"
    (tmp_path / "ipam" / ".last").write_text("10.88.0.40")
    assert ipam.allocate(d, "10.88.0.0/24", "p3").ip == "10.88.0.41"
    # What a crash between writing a shorter address and cutting the file leaves.
    (tmp_path / "ipam" / ".last").write_text("10.88.0.9x")
    assert ipam.allocate(d, "10.88.0.0/24", "p4").ip == "10.88.0.5"
    assert (tmp_path / "ipam" / ".last").read_text() == "10.88.0.5"


def test_exhaustion_never_hands_out_broadcast(tmp_path: Path) -> None:
    # /29: .0 network, .1 gateway, .7 broadcast -> 5 pods
    got = {ipam.allocate(str(tmp_path), "10.0.0.0/29", f"p{i}").ip for i in range(5)}
    assert got == {f"10.0.0.{i}" for i in range(2, 7)}
    with pytest.raises(NetworkError, match=r"no free IP address left in pod CIDR 10\.0\.0\.0/29"):
        ipam.allocate(str(tmp_path), "10.0.0.0/29", "one-too-many")


def test_release_frees_and_allocation_rotates(tmp_path: Path) -> None:
    d = str(tmp_path)
    first = ipam.allocate(d, "10.0.0.0/29", "a").ip
    ipam.allocate(d, "10.0.0.0/29", "b")
    assert [a.ip for a in ipam.release(d, "a")] == [first]
    assert ipam.release(d, "a") == []
    # The freed address is not handed out again right away...
    assert ipam.allocate(d, "10.0.0.0/29", "c").ip != first
    # ...but it is once the range wraps around.
    got = {ipam.allocate(d, "10.0.0.0/29", f"x{i}").ip for i in range(3)}
    assert first in got


def test_restart_does_not_reuse_live_addresses(tmp_path: Path) -> None:
    d = str(tmp_path)
    live = {ipam.allocate(d, "10.1.0.0/28", f"p{i}").ip for i in range(5)}
    # A new process has nothing but the files: simulate with a fresh child process.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        new = pool.apply(_allocate_many, (d, "10.1.0.0/28", "after-restart", 5))
    assert not live & set(new)
    assert len(ipam.list_allocations(d)) == 10


def test_list_and_lookup(tmp_path: Path) -> None:
    d = str(tmp_path)
    assert ipam.list_allocations(d) == []
    ipam.allocate(d, "10.0.0.0/24", "b")
    ipam.allocate(d, "10.0.0.0/24", "a")
    assert [(a.ip, a.pod_id) for a in ipam.list_allocations(d)] == [("10.0.0.2", "b"), ("10.0.0.3", "a")]
    found = ipam.lookup(d, "a")
    assert found is not None and found.ip == "10.0.0.3" and found.cidr == "10.0.0.0/24"
    assert ipam.lookup(d, "nope") is None


def test_record_is_json_named_by_address(tmp_path: Path) -> None:
    ipam.allocate(str(tmp_path), "10.0.0.0/24", "pod-x")
    rec = json.loads((tmp_path / "ipam" / "10.0.0.2").read_text())
    assert rec == {"ip": "10.0.0.2", "pod_id": "pod-x", "cidr": "10.0.0.0/24"}


def test_gc_frees_dead_pods_and_debris(tmp_path: Path) -> None:
    d = str(tmp_path)
    for p in ("live1", "dead1", "live2", "dead2"):
        ipam.allocate(d, "10.0.0.0/24", p)
    (tmp_path / "ipam" / ".tmp-123-1-10.0.0.99").write_text("{}")
    freed = ipam.gc(d, {"live1", "live2"})
    assert sorted(a.pod_id for a in freed) == ["dead1", "dead2"]
    assert sorted(a.pod_id for a in ipam.list_allocations(d)) == ["live1", "live2"]
    assert not [n for n in os.listdir(tmp_path / "ipam") if n.startswith(".tmp-")]


def test_corrupt_record_keeps_address_taken_until_gc(tmp_path: Path) -> None:
    d = str(tmp_path)
    (tmp_path / "ipam").mkdir()
    (tmp_path / "ipam" / "10.0.0.2").write_text("{not json")
    assert ipam.allocate(d, "10.0.0.0/24", "p").ip == "10.0.0.3"
    assert [a.ip for a in ipam.gc(d, {"p"})] == ["10.0.0.2"]


def test_pod_cidr_change_moves_the_pod(tmp_path: Path) -> None:
    d = str(tmp_path)
    assert ipam.allocate(d, "10.0.0.0/24", "p").ip == "10.0.0.2"
    assert ipam.allocate(d, "10.9.0.0/24", "p").ip == "10.9.0.2"
    assert [a.ip for a in ipam.list_allocations(d)] == ["10.9.0.2"]


@pytest.mark.parametrize("bad", ["10.0.0.1/24", "10.0.0.0/30", "nonsense", "fd00::/64"])
def test_bad_cidr_is_a_clear_error(tmp_path: Path, bad: str) -> None:
    with pytest.raises(NetworkError, match="pod CIDR"):
        ipam.allocate(str(tmp_path), bad, "p")


def test_threads_never_share_an_address(tmp_path: Path) -> None:
    d = str(tmp_path)
    start = threading.Barrier(16)

    def worker(i: int) -> list[str]:
        start.wait()
        return [ipam.allocate(d, "10.2.0.0/24", f"t{i}-{j}").ip for j in range(12)]

    with ThreadPoolExecutor(16) as ex:
        ips = [ip for chunk in ex.map(worker, range(16)) for ip in chunk]
    assert len(ips) == 192 == len(set(ips))
    assert all(ipaddress.IPv4Address(ip) in ipaddress.IPv4Network("10.2.0.0/24") for ip in ips)


def test_processes_never_share_an_address(tmp_path: Path) -> None:
    d = str(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        chunks = pool.starmap(_allocate_many, [(d, "10.3.0.0/24", f"proc{i}", 40) for i in range(6)])
    ips = [ip for c in chunks for ip in c]
    assert len(ips) == 240 == len(set(ips))
    # And the files agree with what the processes were told.
    assert [a.ip for a in ipam.list_allocations(d)] == sorted(ips, key=ipaddress.IPv4Address)


def test_processes_allocating_for_one_pod_agree(tmp_path: Path) -> None:
    d = str(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        got = pool.starmap(ipam.allocate, [(d, "10.4.0.0/24", "same-pod")] * 8)
    assert len({a.ip for a in got}) == 1
    assert len(ipam.list_allocations(d)) == 1


def _allocate_many(d: str, cidr: str, prefix: str, n: int) -> list[str]:
    return [ipam.allocate(d, cidr, f"{prefix}-{i}").ip for i in range(n)]


def test_records_read_once_are_not_opened_or_parsed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        ipam.allocate(str(tmp_path), "10.9.0.0/24", f"p{i}")
    assert ipam.lookup(str(tmp_path), "p4") is not None  # every record read (once)
    parsed: list[object] = []
    real = ipaddress.IPv4Address

    def counting(value: object) -> ipaddress.IPv4Address:
        parsed.append(value)
        return real(value)  # type: ignore[arg-type]

    monkeypatch.setattr(ipam.ipaddress, "IPv4Address", counting)
    opened: list[str] = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k))
    assert ipam.lookup(str(tmp_path), "p2") is not None
    assert parsed == [] and opened == []
