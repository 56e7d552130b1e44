"""Reading CRI logs as `kubectl logs` shows them: options, filtering, tail,
follow across a rotation, and which container a request means."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from timonel.node_agent.agent.streaming import logs
from timonel.node_agent.agent.streaming.logs import LogOptions, OptionError
from timonel.node_agent.agent.streaming.server import LogError, container_for_logs
from timonel.node_agent.runtime.container.logs import format_line

T0 = 1_700_000_000 * 1_000_000_000  # 2023-11-14T22:13:20Z


def write_log(path: Path, lines: list[tuple[int, str, bytes, bytes]]) -> None:
    path.write_bytes(b"".join(format_line(stream, tag, content, T0 + ns)
                              for ns, stream, tag, content in lines))


def read_all(path: Path, opts: LogOptions) -> bytes:
    async def go() -> bytes:
        return b"".join([chunk async for chunk in logs.read_log(str(path), opts)])
    return asyncio.run(go())


SAMPLE = [(0, "stdout", b"F", b"one"), (1_000_000_000, "stderr", b"F", b"two"),
          (2_000_000_000, "stdout", b"P", b"thr"), (2_000_000_001, "stdout", b"F", b"ee"),
          (3_500_000_000, "stdout", b"F", b"four")]


def test_parse_options() -> None:
    now = T0 + 10_000_000_000
    o = logs.parse_options({"follow": "true", "tailLines": "3", "limitBytes": "5",
                            "sinceSeconds": "4", "timestamps": "1"}, now)
    assert o == LogOptions(follow=True, tail_lines=3, limit_bytes=5, since_ns=now - 4_000_000_000,
                           timestamps=True)
    assert logs.parse_options({"sinceTime": "2023-11-14T22:13:21Z"}).since_ns == T0 + 1_000_000_000
    assert logs.parse_options({"sinceTime": "2023-11-14T23:13:21.5+01:00"}).since_ns == T0 + 1_500_000_000
    for bad in ({"tailLines": "-1"}, {"limitBytes": "0"}, {"sinceSeconds": "x"},
                {"follow": "maybe"}, {"sinceTime": "yesterday"},
                {"sinceSeconds": "1", "sinceTime": "2023-11-14T22:13:21Z"}):
        with pytest.raises(OptionError):
            logs.parse_options(bad)


def test_format_time_like_go() -> None:
    assert logs.format_time(T0) == "2023-11-14T22:13:20Z"
    assert logs.format_time(T0 + 120_000_000) == "2023-11-14T22:13:20.12Z"
    assert logs.format_time(T0 + 1) == "2023-11-14T22:13:20.000000001Z"


def test_read_plain_joins_pieces_and_merges_streams(tmp_path: Path) -> None:
    p = tmp_path / "0.log"
    write_log(p, SAMPLE)
    assert read_all(p, LogOptions()) == b"one\ntwo\nthree\nfour\n"


def test_timestamps_once_per_line(tmp_path: Path) -> None:
    p = tmp_path / "0.log"
    write_log(p, SAMPLE)
    assert read_all(p, LogOptions(timestamps=True)).decode().splitlines() == [
        "2023-11-14T22:13:20Z one", "2023-11-14T22:13:21Z two", "2023-11-14T22:13:22Z three",
        "2023-11-14T22:13:23.5Z four"]


def test_tail_counts_file_lines(tmp_path: Path) -> None:
    p = tmp_path / "0.log"
    write_log(p, SAMPLE)
    assert read_all(p, LogOptions(tail_lines=1)) == b"four\n"
    assert read_all(p, LogOptions(tail_lines=2)) == b"ee\nfour\n"  # as upstream: a piece is a line
    assert read_all(p, LogOptions(tail_lines=0)) == b""
    assert read_all(p, LogOptions(tail_lines=100)) == b"one\ntwo\nthree\nfour\n"


def test_tail_over_many_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "READ_SIZE", 7)
    p = tmp_path / "0.log"
    write_log(p, [(i, "stdout", b"F", b"line %d" % i) for i in range(50)])
    assert read_all(p, LogOptions(tail_lines=3)) == b"line 47\nline 48\nline 49\n"
    assert read_all(p, LogOptions()).count(b"\n") == 50


def test_since_and_limit(tmp_path: Path) -> None:
    p = tmp_path / "0.log"
    write_log(p, SAMPLE)
    assert read_all(p, LogOptions(since_ns=T0 + 1_000_000_000)) == b"two\nthree\nfour\n"
    assert read_all(p, LogOptions(since_ns=T0 + 9_000_000_000)) == b""
    assert read_all(p, LogOptions(limit_bytes=6)) == b"one\ntw"
    assert read_all(p, LogOptions(limit_bytes=6, timestamps=True)) == b"2023-1"


def test_one_stream(tmp_path: Path) -> None:
    p = tmp_path / "0.log"
    write_log(p, SAMPLE)
    assert read_all(p, logs.parse_options({"stream": "Stderr"})) == b"two\n"
    assert read_all(p, logs.parse_options({"stream": "Stdout"})) == b"one\nthree\nfour\n"
    assert read_all(p, logs.parse_options({"stream": "All"})) == b"one\ntwo\nthree\nfour\n"
    with pytest.raises(OptionError, match="Unsupported value"):
        logs.parse_options({"stream": "stdout"})


def test_follow_reads_new_lines_and_a_rotation_until_the_end(tmp_path: Path) -> None:
    p = tmp_path / "0.log"
    write_log(p, SAMPLE[:1])
    state = {"alive": True}

    async def alive() -> bool:
        return state["alive"]

    async def go() -> list[bytes]:
        got: list[bytes] = []

        async def writer() -> None:
            await asyncio.sleep(0.3)
            with open(p, "ab") as f:
                f.write(format_line("stdout", b"F", b"later", T0))
            await asyncio.sleep(0.3)
            os.rename(p, str(p) + ".1")  # the runtime's rotation
            write_log(p, [(5, "stdout", b"F", b"rotated")])
            await asyncio.sleep(0.3)
            state["alive"] = False

        task = asyncio.create_task(writer())
        async for chunk in logs.read_log(str(p), LogOptions(follow=True), alive):
            got.append(chunk)
        await task
        return got

    got = asyncio.run(asyncio.wait_for(go(), 30))
    assert b"".join(got) == b"one\nlater\nrotated\n"


def status_pod(cs: dict[str, object]) -> dict[str, object]:
    return {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]},
            "status": {"containerStatuses": [{"name": "c", **cs}]}}


def test_container_for_logs_follows_the_kubelets_rules() -> None:
    running = status_pod({"containerID": "timonel://new", "state": {"running": {}},
                          "lastState": {"terminated": {"containerID": "timonel://old"}}})
    assert container_for_logs(running, "c", False) == "new"
    assert container_for_logs(running, "c", True) == "old"
    backoff = status_pod({"state": {"waiting": {"reason": "CrashLoopBackOff"}},
                          "lastState": {"terminated": {"containerID": "timonel://old"}}})
    assert container_for_logs(backoff, "c", False) == "old"
    fresh = status_pod({"state": {"running": {}}, "containerID": "timonel://a", "lastState": {}})
    with pytest.raises(LogError, match='previous terminated container "c" in pod "p" not found'):
        container_for_logs(fresh, "c", True)
    pulling = status_pod({"state": {"waiting": {"reason": "ErrImagePull"}}, "lastState": {}})
    with pytest.raises(LogError, match="is waiting to start: image can't be pulled"):
        container_for_logs(pulling, "c", False)
    creating = status_pod({"state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}})
    with pytest.raises(LogError, match='container "c" in pod "p" is waiting to start: ContainerCreating'):
        container_for_logs(creating, "c", False)
    with pytest.raises(LogError, match="is not available"):
        container_for_logs(status_pod({}), "other", False)
