"""CRI log format and rotation; state files; spec validation."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from timonel.node_agent.runtime.container.logs import MAX_LINE, LogWriter, parse_line, timestamp
from timonel.node_agent.runtime.container.spec import ContainerSpec, Mount, Seccomp, SpecError
from timonel.node_agent.runtime.container.state import (
    CREATED,
    EXITED,
    RUNNING,
    UNKNOWN,
    ContainerStatus,
    load_known,
    proc_start_time,
    status_of,
    write_json,
)

RFC3339NANO = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def lines(path: Path) -> list[tuple[str, str, bool, bytes]]:
    return [parse_line(ln) for ln in path.read_bytes().splitlines(keepends=True)]


def test_timestamp_is_rfc3339_nano_utc() -> None:
    assert timestamp(1_700_000_000_123_456_789) == b"2023-11-14T22:13:20.123456789Z"
    assert RFC3339NANO.match(timestamp())


def test_lines_streams_and_partial_tags(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    w = LogWriter(str(log))
    w.write("stdout", b"hello\nwor")
    w.write("stderr", b"oops\n")
    w.write("stdout", b"ld\n")
    w.write("stdout", b"x" * (MAX_LINE + 10) + b"\n")
    w.write("stdout", b"no newline at end")
    w.close()
    got = [(s, full, c) for _, s, full, c in lines(log)]
    assert got == [("stdout", True, b"hello"), ("stderr", True, b"oops"), ("stdout", True, b"world"),
                   ("stdout", False, b"x" * MAX_LINE), ("stdout", True, b"x" * 10),
                   ("stdout", True, b"no newline at end")]
    raw = log.read_bytes().splitlines()[0]
    assert re.match(rb"^\S+ stdout F hello$", raw)
    assert RFC3339NANO.match(raw.split()[0])


def test_rotation_by_size_keeps_max_files(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    w = LogWriter(str(log), max_size=200, max_files=3)
    for i in range(40):
        w.write("stdout", f"line {i:03d}\n".encode())
    w.close()
    files = sorted(os.listdir(tmp_path))
    assert files == ["c.log", "c.log.1", "c.log.2"]
    assert all(p.stat().st_size <= 200 for p in tmp_path.iterdir())
    assert lines(log)[-1][3] == b"line 039"
    newest_old = lines(tmp_path / "c.log.1")[-1][3]
    assert int(newest_old[5:]) == int(lines(log)[0][3][5:]) - 1  # no line lost between files


def test_reopen_after_the_file_was_moved_away(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    w = LogWriter(str(log))
    w.write("stdout", b"before\n")
    os.rename(log, tmp_path / "moved.log")
    w.write("stdout", b"still old\n")
    w.reopen()
    w.write("stdout", b"after\n")
    w.close()
    assert [c for *_, c in lines(tmp_path / "moved.log")] == [b"before", b"still old"]
    assert [c for *_, c in lines(log)] == [b"after"]


def status_from_files(state_dir: str) -> ContainerStatus | None:
    k = load_known(state_dir)
    return None if k is None else status_of(k)


def spec_dict(**kw: object) -> dict:
    return ContainerSpec(id="c1", args=["true"], rootfs_layers=["/l"], **kw).to_dict()  # type: ignore[arg-type]


def test_status_from_files(tmp_path: Path) -> None:
    d = tmp_path / "c1"
    d.mkdir()
    assert status_from_files(str(d)) is None
    write_json(str(d / "spec.json"), spec_dict(labels={"a": "b"}))
    write_json(str(d / "meta.json"), {"created_at": 5, "started_at": None, "cgroup": "x"})
    assert status_from_files(str(d)).state == UNKNOWN  # type: ignore[union-attr]
    me = os.getpid()
    write_json(str(d / "shim.json"), {"shim_pid": me, "shim_start": proc_start_time(me),
                                      "pid": me, "pid_start": proc_start_time(me)})
    st = status_from_files(str(d))
    assert st is not None and st.state == CREATED and st.pid == me and st.labels == {"a": "b"}
    write_json(str(d / "meta.json"), {"created_at": 5, "started_at": 6, "cgroup": "x"})
    assert status_from_files(str(d)).state == RUNNING  # type: ignore[union-attr]
    write_json(str(d / "exit.json"), {"exit_code": 137, "reason": "OOMKilled", "finished_at": 9})
    st = status_from_files(str(d))
    assert st is not None and (st.state, st.exit_code, st.reason, st.pid) == (EXITED, 137, "OOMKilled", None)


def test_a_dead_shim_without_exit_record_is_reported(tmp_path: Path) -> None:
    d = tmp_path / "c1"
    d.mkdir()
    write_json(str(d / "spec.json"), spec_dict())
    write_json(str(d / "meta.json"), {"created_at": 5, "started_at": 6, "cgroup": "x"})
    # a pid whose start time does not match is someone else (or no one)
    write_json(str(d / "shim.json"), {"shim_pid": os.getpid(), "shim_start": -1, "pid": 1, "pid_start": -1})
    st = status_from_files(str(d))
    assert st is not None and (st.state, st.exit_code, st.reason) == (EXITED, 255, "Unknown")


def test_known_state_reads_only_what_can_still_change(tmp_path: Path) -> None:
    d = tmp_path / "c1"
    d.mkdir()
    write_json(str(d / "spec.json"), spec_dict())
    write_json(str(d / "meta.json"), {"created_at": 5, "started_at": 6, "cgroup": "x"})
    k = load_known(str(d))
    assert k is not None
    shim_up = {"up": True}
    assert status_of(k, lambda shim: shim_up["up"]).state == UNKNOWN
    me = os.getpid()
    write_json(str(d / "shim.json"), {"shim_pid": me, "shim_start": 1, "pid": 7, "pid_start": 1})
    st = status_of(k, lambda shim: shim_up["up"])
    assert (st.state, st.pid) == (RUNNING, 7)  # shim.json is read once it is there
    (d / "spec.json").unlink()  # spec and meta are not read again: they cannot change
    assert status_of(k, lambda shim: shim_up["up"]).state == RUNNING
    write_json(str(d / "exit.json"), {"exit_code": 3, "reason": "Error", "finished_at": 9})
    st = status_of(k, lambda shim: shim_up["up"])
    assert (st.state, st.exit_code, st.pid) == (EXITED, 3, None)  # the shim may linger, draining output


def test_a_caller_that_saw_the_exit_pipe_open_spares_the_checks(tmp_path: Path) -> None:
    d = tmp_path / "c1"
    d.mkdir()
    write_json(str(d / "spec.json"), spec_dict())
    write_json(str(d / "meta.json"), {"created_at": 5, "started_at": 6, "cgroup": "x"})
    write_json(str(d / "shim.json"), {"shim_pid": os.getpid(), "shim_start": 1, "pid": 7, "pid_start": 1})
    k = load_known(str(d))
    assert k is not None

    def not_asked(shim: dict[str, object]) -> bool:
        raise AssertionError("the shim's liveness was checked")

    write_json(str(d / "exit.json"), {"exit_code": 3, "reason": "Error", "finished_at": 9})  # not looked for
    st = status_of(k, not_asked, running_without_exit=True)
    assert (st.state, st.pid, st.exit_code) == (RUNNING, 7, None)
    st = status_of(k, lambda shim: True)  # without the hint: exit.json is read
    assert (st.state, st.exit_code) == (EXITED, 3)
    st = status_of(k, not_asked, running_without_exit=True)  # an exit once seen is kept
    assert st.state == EXITED


def test_meta_written_after_a_first_status_is_still_read(tmp_path: Path) -> None:
    d = tmp_path / "c1"
    d.mkdir()
    write_json(str(d / "spec.json"), spec_dict())  # a status asked between the create's writes
    k = load_known(str(d))
    assert k is not None and status_of(k).created_at == 0
    write_json(str(d / "meta.json"), {"created_at": 5, "started_at": None, "cgroup": "x"})
    assert status_of(k).created_at == 5


def test_an_exit_written_just_before_the_shim_ended_is_not_a_dead_shim(tmp_path: Path) -> None:
    d = tmp_path / "c1"
    d.mkdir()
    write_json(str(d / "spec.json"), spec_dict())
    write_json(str(d / "meta.json"), {"created_at": 5, "started_at": 6, "cgroup": "x"})
    write_json(str(d / "shim.json"), {"shim_pid": 1, "shim_start": 1, "pid": 7, "pid_start": 1})
    k = load_known(str(d))
    assert k is not None

    def ended_after_writing(shim: dict) -> bool:  # exit.json lands between the two checks
        write_json(str(d / "exit.json"), {"exit_code": 0, "reason": "Completed", "finished_at": 9})
        return False

    st = status_of(k, ended_after_writing)
    assert (st.state, st.exit_code, st.reason) == (EXITED, 0, "Completed")


def test_spec_round_trips_through_json() -> None:
    spec = ContainerSpec(id="c1", args=["sh"], rootfs_layers=["/l"], mounts=[Mount("/a", "/b", True)],
                         seccomp=Seccomp("Localhost", "/p.json"))
    again = ContainerSpec.from_dict(spec.to_dict())
    assert again == spec


@pytest.mark.parametrize(("kw", "message"), [
    ({"id": "bad/id"}, "container id 'bad/id'"),
    ({"args": []}, "args is empty"),
    ({"rootfs_layers": []}, "rootfs_layers is empty"),
    ({"mounts": [Mount("/a", "rel")]}, r"mounts\[0\].destination 'rel'"),
    ({"working_dir": "tmp"}, "working_dir 'tmp' must be absolute"),
    ({"seccomp": Seccomp("Strict")}, "seccomp.type 'Strict'"),
    ({"seccomp": Seccomp("Localhost")}, "needs localhost_path"),
    ({"namespaces": {"pid": "/x"}}, "only net, ipc and uts"),
])
def test_spec_validation_says_what_and_where(kw: dict, message: str) -> None:
    base: dict = {"id": "c1", "args": ["true"], "rootfs_layers": ["/l"]}
    base.update(kw)
    with pytest.raises(SpecError, match=message):
        ContainerSpec(**base).validate()
