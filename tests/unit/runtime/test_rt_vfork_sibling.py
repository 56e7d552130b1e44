"""Syscalls.vfork_sibling: the container's PID 1 starts sharing its helper's memory and is
the shim's child (shim._spawn_pid1). Real processes; no root needed."""

from __future__ import annotations

import os

from timonel.node_agent.runtime.linux import Syscalls


def _from_helper(child_code: str) -> tuple[int, str]:
    """Fork a helper that starts a sibling running `child_code` (a shell command, exec'd after
    the sibling has recorded its pid in a list); returns the sibling's pid and what the
    helper saw in that list afterwards."""
    r, w = os.pipe()
    helper = os.fork()
    if helper == 0:
        os.close(r)
        seen: list[int] = []

        def child() -> None:
            seen.append(os.getpid())  # in the helper's memory, if it is one memory
            if child_code == "raise":
                raise RuntimeError("no exec for this one")
            os.execv("/bin/sh", ["sh", "-c", child_code])

        try:
            pid = Syscalls().vfork_sibling(child)
            os.write(w, f"{pid} {seen}".encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(helper, 0)
    with os.fdopen(r) as f:
        pid_text, seen_text = f.read().split(" ", 1)
    return int(pid_text), seen_text


def test_the_sibling_shares_the_callers_memory_and_is_its_parents_child() -> None:
    pid, seen = _from_helper("exit 7")
    assert seen == f"[{pid}]"  # its write landed in the helper's memory
    _, status = os.waitpid(pid, 0)  # ours to reap (CLONE_PARENT), not the helper's
    assert os.waitstatus_to_exitcode(status) == 7


def test_a_sibling_whose_code_raises_exits_127_and_frees_the_caller() -> None:
    pid, _ = _from_helper("raise")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 127
