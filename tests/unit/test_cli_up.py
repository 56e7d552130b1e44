"""`timonel up` and `timonel image import` without root: their refusals and the supervisor's
bookkeeping of children it did not start itself (after the hand-over exec)."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from timonel.cli import up_supervisor
from timonel.cli.main import main
from timonel.cli.up_steps import (
    Interrupted,
    StepError,
    UpOptions,
    UpState,
    _node_cidrs,
    _prepare,
    _time,
    _wait,
)
from timonel.cli.up_supervisor import Child


def test_up_without_root_says_what_is_needed(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert main(["up", "--data-dir", str(tmp_path / "d")]) == 4
    err = capsys.readouterr().err
    assert "error [UP_ROOT]: timonel up needs root" in err
    assert f"sudo timonel up --data-dir {tmp_path / 'd'}" in err
    assert not (tmp_path / "d").exists()  # nothing started, nothing written


def test_image_import_refuses_a_missing_file_and_a_missing_runtime(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["image", "import", str(tmp_path / "nope.tar")]) == 3
    assert "error [IMAGE_FILE]: no such file" in capsys.readouterr().err
    archive = tmp_path / "a.tar"
    archive.write_bytes(b"")
    assert main(["image", "import", str(archive), "--runtime-socket", str(tmp_path / "rt.sock")]) == 5
    err = capsys.readouterr().err
    assert f"error [NO_RUNTIME]: no runtime socket at {tmp_path / 'rt.sock'}" in err
    assert "timonel up" in err


def test_node_cidrs_prefers_the_list() -> None:
    assert _node_cidrs({"spec": {"podCIDR": "10.0.0.0/24", "podCIDRs": ["10.0.0.0/24", "fd00::/64"]}}) == \
        ["10.0.0.0/24", "fd00::/64"]
    assert _node_cidrs({"spec": {"podCIDR": "10.0.1.0/24"}}) == ["10.0.1.0/24"]
    assert _node_cidrs({"spec": {}}) == []


def _state(tmp_path: Path) -> UpState:
    return UpState(UpOptions(str(tmp_path), 1, "n", "", str(tmp_path / "rt.sock"), "b"))


def test_wait_ends_on_a_dead_child_with_its_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "x.log"
    child = Child("runtime", [], str(log))
    log.parent.mkdir()
    log.write_text("line 1\nthe reason it died\n")
    child.proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    child.pid = child.proc.pid
    with pytest.raises(StepError) as e:
        _wait(_state(tmp_path), "something", lambda: None, timeout=30, watch=child)
    assert "the runtime exited with code 3" in str(e.value)
    assert "the reason it died" in str(e.value)


def test_wait_ends_on_a_signal_and_on_its_timeout(tmp_path: Path) -> None:
    state = _state(tmp_path)
    state.stop_requested = 15
    with pytest.raises(Interrupted):
        _wait(state, "something", lambda: None)
    state.stop_requested = 0
    with pytest.raises(StepError, match="timed out after 0s waiting for the answer"):
        _wait(state, "the answer", lambda: None, timeout=0.2)
    assert _wait(state, "the answer", lambda: 42) == 42


def test_child_known_only_by_pid_is_stopped_and_its_end_read(tmp_path: Path) -> None:
    # As after the hand-over: no Popen object, only the PID of a child of this process.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child = Child("agent", [], str(tmp_path / "agent.log"), proc.pid)
    assert child.running() and child.exit_code() is None
    assert child.stop(grace=10) == -15
    assert child.describe_exit() == "was killed by signal 15"
    assert not child.running()
    proc.returncode = -15  # reaped by the Child: keep Popen from waiting again


def test_child_ignoring_sigterm_is_killed_after_its_grace(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c",
                             "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                             "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    child = Child("server", [], str(tmp_path / "server.log"), proc.pid)
    t0 = time.monotonic()
    assert child.stop(grace=0.5) == -9
    assert time.monotonic() - t0 < 10
    proc.returncode = -9
    proc.stdout.close()


def test_supervise_returns_the_child_that_died(tmp_path: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", code]) for code in
             ("import time; time.sleep(60)", "raise SystemExit(7)")]
    children = {name: Child(name, [], str(tmp_path / f"{name}.log"), p.pid)
                for name, p in zip(("server", "agent"), procs, strict=True)}
    try:
        dead = up_supervisor.supervise(children, [])
        assert dead is children["agent"] and dead.returncode == 7
        assert dead.describe_exit() == "exited with code 7"
        assert up_supervisor.supervise(children, [15]) is None  # a signal: no one died
    finally:
        children["server"].stop(5)
        for p in procs:
            p.returncode = 0


def test_a_second_up_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    _prepare(_state(tmp_path))  # this process holds the lock from now on (as `up` does)
    with pytest.raises(StepError) as e:
        _prepare(_state(tmp_path))
    assert f"another timonel up (pid {os.getpid()}) is using {tmp_path}" in str(e.value)
    assert "another --data-dir" in e.value.advice
    assert (tmp_path / "logs").is_dir() and (tmp_path / "images").is_dir()


def test_heartbeat_times_parse_and_garbage_is_oldest() -> None:
    assert _time("2026-11-26T15:04:05Z") == datetime.datetime(2026, 11, 26, 15, 4, 5, tzinfo=datetime.UTC)
    assert _time(None) < _time("1970-01-01T00:00:00Z")
