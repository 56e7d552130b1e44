"""`timonel runtime` without a daemon: argument parsing, sizes, the root check, CRI log reading."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from timonel.cli import runtime_stream
from timonel.cli.failures import EXIT_PERMISSION, EXIT_UNAVAILABLE
from timonel.cli.main import build_parser, main


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["runtime", *argv])


def test_verbs_and_socket_in_either_place() -> None:
    args = parse("--socket", "/tmp/a.sock", "ps", "-a")
    assert (args.func.__name__, args.socket, args.all) == ("cmd_ps", "/tmp/a.sock", True)
    assert parse("ps", "--socket", "/tmp/b.sock").socket == "/tmp/b.sock"
    assert parse("pods").socket == "/run/timonel/runtime.sock"
    args = parse("run", "--memory", "32m", "--cpus", "0.5", "--user", "1000", "busybox", "--", "sh", "-c", "exit 3")
    assert (args.memory, args.cpus, args.user, args.image) == (32_000_000, 0.5, 1000, "busybox")
    assert runtime_stream._command(args.cmd) == ["sh", "-c", "exit 3"]
    args = parse("exec", "-it", "abc", "--", "ls", "-l")
    assert (args.interactive, args.tty, args.id, runtime_stream._command(args.cmd)) == (True, True, "abc", ["ls", "-l"])
    args = parse("--root", "/r", "--pod-cidr", "10.1.0.0/24")
    assert (args.func.__name__, args.root, args.pod_cidr) == ("run_daemon", "/r", "10.1.0.0/24")


@pytest.mark.parametrize(("text", "value"), [("32000000", 32_000_000), ("32m", 32_000_000), ("32Mi", 32 << 20),
                                             ("1g", 10**9), ("512k", 512_000), ("2GiB", 2 << 30)])
def test_sizes(text: str, value: int) -> None:
    assert runtime_stream.parse_bytes(text) == value


def test_bad_size() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a size"):
        runtime_stream.parse_bytes("lots")


def test_the_daemon_needs_root(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                               tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["runtime", "--root", str(tmp_path)]) == EXIT_PERMISSION
    err = capsys.readouterr().err
    assert "needs root" in err and "sudo timonel runtime" in err


def test_a_client_without_a_daemon(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["runtime", "ps", "--socket", str(tmp_path / "no.sock")]) == EXIT_UNAVAILABLE
    assert "no runtime socket" in capsys.readouterr().err


def cri(stream: str, tag: str, text: str) -> bytes:
    return f"2026-01-01T00:00:00.000000001Z {stream} {tag} {text}\n".encode()


def test_log_follower_reads_partial_lines_and_follows_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    path.write_bytes(cri("stdout", "F", "one") + cri("stderr", "P", "par") + cri("stderr", "F", "tial"))
    f = runtime_stream.LogFollower(str(path))
    assert list(f.read()) == [("stdout", b"one\n"), ("stderr", b"par"), ("stderr", b"tial\n")]
    with open(path, "ab") as out:
        out.write(cri("stdout", "F", "two")[:20])  # a line still being written
    assert list(f.read()) == []
    with open(path, "ab") as out:
        out.write(cri("stdout", "F", "two")[20:] + cri("stdout", "F", "three"))
    path.rename(tmp_path / "c.log.1")  # rotated; the writer starts a new file
    path.write_bytes(cri("stdout", "F", "four") + cri("stdout", "F", ""))
    assert list(f.read()) == [("stdout", b"two\n"), ("stdout", b"three\n"), ("stdout", b"four\n"), ("stdout", b"\n")]
    f.close()
