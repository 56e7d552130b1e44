"""The running half of `timonel up`: its children, their supervision and the orderly stop.

Once the cluster is up, `up` re-executes itself as this module (same PID, so
the children stay its children): a supervisor that holds only the standard
library while idle, instead of the tens of MB of modules the start steps
needed. It waits for a signal or a dead child; then it stops the agent,
removes every pod's containers and sandbox through the runtime, and stops the
runtime and the server.

Each child runs in its own session, so a Ctrl-C in the terminal reaches only
`up`, which then stops the children in its own order instead of all at once.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger(__name__)

EXIT_CHILD_DIED = 5  # failures.EXIT_UNAVAILABLE, without importing the CLI here
# Stop requests; SIGHUP too: a closed terminal must not leave the children running on their own.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Child:
    name: str  # "server", "runtime", "agent": what the user reads in messages
    args: list[str]  # after `timonel -v`
    log_path: str
    pid: int = 0
    returncode: int | None = None
    # Kept while this process started it: a dropped Popen may reap the child behind our back.
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "timonel.cli.main", "-v", *self.args]

    def start(self) -> None:
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        with open(self.log_path, "ab") as out:
            out.write(f"--- timonel up: starting {' '.join(self.argv())}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.argv(), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.proc.pid
        log.info("child started name=%s pid=%d log=%s", self.name, self.pid, self.log_path)

    def exit_code(self) -> int | None:
        """None while running (or never started); a negative code is the killing signal."""
        if self.returncode is not None or not self.pid:
            return self.returncode
        if self.proc is not None:
            self.returncode = self.proc.poll()
            return self.returncode
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            self.returncode = -255  # reaped elsewhere: gone, code unknown
            return self.returncode
        if pid:
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def running(self) -> bool:
        return bool(self.pid) and self.exit_code() is None

    def stop(self, grace: float) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; the exit code (None if never started)."""
        if not self.pid:
            return None
        if self.exit_code() is None:
            self._signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            while self.exit_code() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.exit_code() is None:
                log.warning("child did not stop in time, killing name=%s pid=%d grace=%.0fs",
                            self.name, self.pid, grace)
                self._signal(signal.SIGKILL)
                while self.exit_code() is None:
                    time.sleep(0.05)
        log.info("child stopped name=%s code=%s", self.name, self.returncode)
        return self.returncode

    def _signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 16384))
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def describe_exit(self) -> str:
        code = self.returncode
        if code is None:
            return "is running"
        return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "args": self.args, "log_path": self.log_path, "pid": self.pid}


# -- stopping --

def remove_all_pods(socket_path: str) -> int:
    """Stop (10 s grace) and remove every container and sandbox of the runtime; how many sandboxes."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    from timonel.node_agent.runtime.client import RuntimeClient

    with RuntimeClient(socket_path, timeout=120) as rt:
        def container(cid: str) -> None:
            try:
                rt.stop_container(cid, timeout=10)
                rt.remove_container(cid)
            except grpc.RpcError as e:
                log.warning("container not removed id=%s err=%s", cid, e.details())  # type: ignore[attr-defined]

        def sandbox(sid: str) -> None:
            try:
                rt.stop_sandbox(sid)
                rt.remove_sandbox(sid)
            except grpc.RpcError as e:
                log.warning("sandbox not removed id=%s err=%s", sid, e.details())  # type: ignore[attr-defined]

        # All at once: a container ignoring SIGTERM holds its call for the whole grace
        # period (the runtime waits in a pool of 256), so a narrow pool would add them up.
        ids = [c.id for c in rt.list_containers()]
        with ThreadPoolExecutor(min(128, max(1, len(ids)))) as pool:
            list(pool.map(container, ids))
            sandboxes = [s.id for s in rt.list_sandboxes()]
            list(pool.map(sandbox, sandboxes))
    return len(sandboxes)


def unmount_under(root: str) -> None:
    """Unmount what the agent mounted below `root` (memory emptyDirs), deepest first."""
    prefix = os.path.realpath(root) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def shutdown(children: dict[str, Child], runtime_socket: str, data_dir: str, bridge: str = "") -> None:
    """Agent, then the pods through the runtime, then the runtime, then the server."""
    if "agent" in children:
        children["agent"].stop(30)
    runtime = children.get("runtime")
    pods_removed = False
    if runtime is not None and runtime.running():
        try:
            n = remove_all_pods(runtime_socket)
            log.info("pods removed sandboxes=%d", n)
            pods_removed = True
        except Exception as e:  # the runtime must still be stopped
            log.warning("could not remove the pods err=%r", e)
            print(f"warning: could not remove every pod through the runtime: {e}", file=sys.stderr,
                  flush=True)
    if "agent" in children:  # only what our own agent mounted (a refused second `up` has none)
        unmount_under(os.path.join(data_dir, "agent", "pods"))
    if runtime is not None:
        runtime.stop(30)
    if pods_removed and bridge:
        # The runtime leaves its bridge for containers it may adopt; with none left, it
        # is ours to remove (the next start makes it again).
        r = subprocess.run(["ip", "link", "delete", bridge], capture_output=True, text=True, check=False)
        log.info("bridge removed name=%s rc=%d %s", bridge, r.returncode, r.stderr.strip())
    if "server" in children:
        children["server"].stop(60)


# -- the supervisor process --

def handoff(children: list[Child], runtime_socket: str, data_dir: str, bridge: str) -> None:
    """Become the supervisor (never returns). Stop signals stay blocked over the exec, so
    one arriving now is handled by the supervisor, not lost and not fatal."""
    signal.pthread_sigmask(signal.SIG_BLOCK, set(STOP_SIGNALS))
    state = {"children": [c.to_json() for c in children], "runtime_socket": runtime_socket,
             "data_dir": data_dir, "bridge": bridge, "log_level": logging.getLogger().getEffectiveLevel()}
    sys.stdout.flush()
    sys.stderr.flush()
    # The data dir first: what `ps` shows names the cluster.
    os.execv(sys.executable, [sys.executable, "-m", "timonel.cli.up_supervisor", data_dir, json.dumps(state)])


def supervise(children: dict[str, Child], stop: list[int]) -> Child | None:
    """Wait for a signal (None) or a dead child (that child)."""
    while not stop:
        for child in children.values():
            if child.exit_code() is not None:
                log.error("child exited name=%s code=%s", child.name, child.returncode)
                return child
        time.sleep(0.5)
    return None


def main(state_json: str) -> int:
    state = json.loads(state_json)
    logging.basicConfig(level=state["log_level"], format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.append(signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, set(STOP_SIGNALS))
    children = {c["name"]: Child(c["name"], c["args"], c["log_path"], c["pid"]) for c in state["children"]}
    dead = supervise(children, stop)
    data_dir = state["data_dir"]
    if dead is None:
        print("stopping: agent, pods, runtime, server", flush=True)
        shutdown(children, state["runtime_socket"], data_dir, state["bridge"])
        print("stopped", flush=True)
        return 0
    print(f"error [UP_CHILD_EXITED]: the {dead.name} {dead.describe_exit()}; the last lines of its log "
          f"({dead.log_path}):\n{dead.tail()}\nstopping everything", file=sys.stderr, flush=True)
    shutdown(children, state["runtime_socket"], data_dir, state["bridge"])
    print(f"  advice: fix the cause shown in {dead.log_path} and run timonel up --data-dir {data_dir} "
          "again", file=sys.stderr, flush=True)
    return EXIT_CHILD_DIED


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[2]))
    except OSError as e:
        print(f"error [UP_SUPERVISOR]: {e}", file=sys.stderr)
        sys.exit(EXIT_CHILD_DIED)
