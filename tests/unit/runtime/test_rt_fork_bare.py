"""Syscalls.fork_bare: a fork whose child skips Python's after-fork hooks but runs Python,
threads and logging as usual. Real processes; no root needed. Each case forks from a
fresh single-threaded helper first: the test process may have threads of its own."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable

import pytest

from timonel.node_agent.runtime.linux import Syscalls


def _in_helper(fork: Callable[[], int]) -> dict[str, object]:
    """In a helper: register an after-fork hook, fork with `fork`, let the child run some
    Python (a thread, a log line); what the child and its hook reported."""
    r, w = os.pipe()
    helper = os.fork()
    if helper == 0:
        try:
            os.close(r)
            os.register_at_fork(after_in_child=lambda: os.write(w, b'{"hook": true}\n'))
            child = fork()
            if child == 0:
                try:
                    ran: list[int] = []
                    t = threading.Thread(target=lambda: ran.append(threading.get_native_id()))
                    t.start()
                    t.join()
                    log_r, log_w = os.pipe()
                    handler = logging.StreamHandler(os.fdopen(log_w, "w"))
                    logger = logging.getLogger("fork-bare-test")
                    logger.addHandler(handler)
                    logger.warning("hello from %d", os.getpid())
                    handler.flush()
                    tid = int(os.readlink("/proc/thread-self").rsplit("/", 1)[1])
                    report = {"pid": os.getpid(), "thread_ran": len(ran) == 1 and ran[0] != tid,
                              "native_id_is_ours": threading.get_native_id() == tid,
                              "log": os.read(log_r, 100).decode()}
                    os.write(w, (json.dumps(report) + "\n").encode())
                finally:
                    os._exit(0)
            _, status = os.waitpid(child, 0)
            os.write(w, (json.dumps({"child": child, "code": os.waitstatus_to_exitcode(status)}) + "\n").encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(helper, 0)
    out: dict[str, object] = {}
    with os.fdopen(r) as f:
        for line in f:
            out.update(json.loads(line))
    return out


def test_the_child_runs_python_threads_and_logging_without_the_hooks() -> None:
    got = _in_helper(Syscalls().fork_bare)
    assert "hook" not in got
    assert got["code"] == 0 and got["pid"] == got["child"]
    assert got["thread_ran"] and got["native_id_is_ours"]
    assert got["log"] == f"hello from {got['child']}\n"


def test_os_fork_runs_the_hooks_that_fork_bare_skips() -> None:
    got = _in_helper(os.fork)
    assert got["hook"] is True and got["code"] == 0 and got["thread_ran"]


def test_refused_while_other_threads_run() -> None:
    # A lock another thread holds at the fork would stay held in the child for ever.
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        with pytest.raises(RuntimeError, match="threads running"):
            Syscalls().fork_bare()
    finally:
        stop.set()
        t.join()
