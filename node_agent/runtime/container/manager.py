"""Containers as the runtime service sees them: create, start, stop, remove, exec, stats.

State lives in `<root>/containers/<id>/` (see state.py), so a new
ContainerManager over the same root finds containers started by an old one.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import functools
import logging
import os
import resource
import select
import signal
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..cgroups import Cgroups, Resources
from ..linux import SyscallsLike
from . import launch as launch_mod
from . import seccomp
from .exec import ExecProcess, ExecResult, collect
from .forkserver import ForkServer
from .janitor import Janitor, delete_now
from .spares import Spares
from .spec import ContainerSpec, SpecError
from .state import (
    CREATED,
    EXITED,
    RUNNING,
    ContainerStatus,
    Known,
    alive,
    known_meta,
    load_known,
    read_json,
    shim_alive,
    status_of,
    write_json,
)

log = logging.getLogger(__name__)


class ContainerError(RuntimeError):
    """An operation on a container failed; the message says which and why."""


class NotFoundError(ContainerError):
    pass


@dataclass
class ContainerStats:
    id: str
    timestamp_ns: int
    cpu_usage_ns: int
    memory_usage_bytes: int
    memory_working_set_bytes: int
    memory_limit_bytes: int | None
    pids_current: int
    oom_kills: int


class ContainerManager:
    def __init__(self, root: str, cgroups: Cgroups, forkserver: ForkServer, sys: SyscallsLike,
                 force_copy_rootfs: bool = False, create_timeout: float = 120.0, state_root: str | None = None,
                 spare_shims: bool = True):
        """Containers' writable layers go under `root`; their state (JSON files, fifo, /etc
        files, rootfs mount point) under `state_root` when given (the runtime's tmpfs).
        With `spare_shims`, a shim and its init are always forked ahead of the next
        container (two idle processes more; see spares.py)."""
        self.root = root
        self.dir = os.path.join(state_root or root, "containers")
        self.layers = os.path.join(root, "containers")
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs(self.layers, exist_ok=True)
        # Each writable layer in a block group of its own (ext4): on ext4 without a journal
        # every new inode skips the inodes of its group deleted in the last minute, one by
        # one, and each overlay mount makes and deletes a few; with every layer in one group,
        # a burst of 100 pod starts spent ~4% of its CPU in that scan (perf).
        sys.mark_top_directory(self.layers)
        self.cgroups = cgroups
        self.forkserver = forkserver
        self.sys = sys
        self.force_copy_rootfs = force_copy_rootfs
        self.create_timeout = create_timeout
        _raise_nofile_limit()
        self._shim_fds: dict[str, int] = {}  # pidfds of shims
        self._exited_fds: dict[str, int] = {}  # EOF once a shim we started recorded the exit
        self._locks: dict[str, threading.Lock] = {}
        self._known: dict[str, Known] = {}  # what state files said (see state.Known)
        self._guard = threading.Lock()
        self._primed_at = -1.0
        self._primer: threading.Thread | None = None
        self._prime_wanted = threading.Event()
        self._closed = False
        # Removed state dirs are renamed here and deleted by the janitor (see janitor.py).
        self.trash = os.path.join(state_root or root, "trash")
        self.layer_trash = os.path.join(root, "trash")
        self.janitor = Janitor(forkserver)
        self.spares = Spares(forkserver) if spare_shims else None
        for trash in {self.trash, self.layer_trash}:
            os.makedirs(trash, exist_ok=True)
            for name in os.listdir(trash):  # left by a runtime that died mid-removal
                self.janitor.discard(os.path.join(trash, name))
        if self.layers != self.dir:
            for name in set(os.listdir(self.layers)) - set(os.listdir(self.dir)):
                self._discard(os.path.join(self.layers, name), self.layer_trash, name, {})  # its state is gone

    # -- helpers --
    def state_dir(self, cid: str) -> str:
        return os.path.join(self.dir, cid)

    def layer_dir(self, cid: str) -> str:
        """The container's writable layer: the state dir itself unless a state root was given."""
        return os.path.join(self.layers, cid)

    def _lock(self, cid: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(cid, threading.Lock())

    def _known_for(self, cid: str) -> Known:
        k = self._known.get(cid)
        if k is None:
            k = load_known(self.state_dir(cid))
            if k is None:
                raise NotFoundError(f"container {cid} not found")
            self._known[cid] = k
        return k

    def _meta(self, cid: str) -> dict:
        """A copy of meta.json (start() writes a changed one back)."""
        meta = known_meta(self._known_for(cid))
        if not meta:
            raise NotFoundError(f"container {cid} not found")
        return dict(meta)

    def _shim(self, cid: str) -> dict:
        return read_json(os.path.join(self.state_dir(cid), "shim.json")) or {}

    def _shim_fd(self, cid: str) -> int | None:
        """A pidfd for the shim, reopened from shim.json after a runtime restart."""
        fd = self._shim_fds.get(cid)
        if fd is not None:
            return fd
        shim = self._shim(cid)
        if not alive(shim.get("shim_pid"), shim.get("shim_start")):
            return None
        try:
            fd = os.pidfd_open(int(shim["shim_pid"]))
        except OSError:
            return None
        if not alive(shim.get("shim_pid"), shim.get("shim_start")):  # reused meanwhile
            os.close(fd)
            return None
        self._shim_fds[cid] = fd
        return fd

    def _signal_init(self, cid: str, sig: int) -> None:
        shim = self._shim(cid)
        pid, start = int(shim.get("pid") or 0), shim.get("pid_start")
        if not alive(pid, start):
            return
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return
        try:
            if alive(pid, start):
                signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            pass
        finally:
            os.close(fd)

    def prime_cgroup_join(self) -> None:
        """Warm the kernel's cgroup migration lock for a container about to be created.

        Its init joins its cgroup a few ms later; the first migration after a quiet spell
        waits a whole RCU grace period (6-18 ms), which this starts now, in a thread (see
        cgroups.common.prime_attach). The wait holds the kernel's cgroup mutex, so the
        container's cgroups are made after it, while the init is being handed the container
        and builds its rootfs; then the init's join finds the lock warm. A call within 20 ms
        of the last one is a no-op.
        """
        now = time.monotonic()
        with self._guard:
            if now - self._primed_at < 0.02:
                return
            self._primed_at = now
            if self._primer is None:  # one thread for good: starting one per create cost ~0.3 ms
                self._primer = threading.Thread(target=self._prime_loop, name="timonel-cgroup-prime", daemon=True)
                self._primer.start()
        self._prime_wanted.set()

    def _prime_loop(self) -> None:
        while True:
            self._prime_wanted.wait()
            self._prime_wanted.clear()
            if self._closed:
                return
            self.cgroups.prime_attach()

    # -- lifecycle --
    def create(self, spec: ContainerSpec) -> ContainerStatus:
        spec.validate()
        for i, layer in enumerate(spec.rootfs_layers):
            if not os.path.isdir(layer):
                raise SpecError(f"container {spec.id}: rootfs_layers[{i}] {layer} is not a directory; "
                                "is the image unpacked?")
        for i, m in enumerate(spec.mounts):
            if not os.path.exists(m.source):
                raise SpecError(f"container {spec.id}: mounts[{i}].source {m.source} does not exist; "
                                "create it before the container")
        with self._lock(spec.id):
            d = self.state_dir(spec.id)
            try:
                os.mkdir(d)
            except FileExistsError:
                raise ContainerError(f"container {spec.id} already exists; remove it first or pick another id") \
                    from None
            os.mkdir(os.path.join(d, "rootfs"))
            layer = self.layer_dir(spec.id)
            for new in ([] if layer == d else [layer]) + [os.path.join(layer, "upper"), os.path.join(layer, "work")]:
                with contextlib.suppress(FileExistsError):  # left by a create that died half-way: reused
                    os.mkdir(new)
            cgroup = f"{spec.cgroup_parent.strip('/')}/{spec.id}"
            try:
                self._create(spec, d, cgroup)
            except BaseException:
                self._cleanup(spec.id, cgroup)
                raise
        return self.status(spec.id)

    def _create(self, spec: ContainerSpec, d: str, cgroup: str) -> None:
        self.prime_cgroup_join()
        plan, caps = launch_mod.build(spec, d, cgroup, self.cgroups.procs_files(cgroup), self.force_copy_rootfs,
                                      self.cgroups.mount_specs(), self.layer_dir(spec.id))
        if spec.log_path:
            os.makedirs(os.path.dirname(spec.log_path), exist_ok=True)
        bpf = seccomp.compile_for(spec.seccomp, caps, spec.privileged)
        if bpf is not None:
            with open(os.path.join(d, "seccomp.bpf"), "wb") as f:
                f.write(bpf)
        write_json(os.path.join(d, "launch.json"), plan)
        os.mkfifo(os.path.join(d, "start.fifo"), 0o600)
        # Held open until the init has answered: a FIFO keeps what is written to it only while
        # someone has it open, and the init may not have opened it yet when we write.
        fifo = os.open(os.path.join(d, "start.fifo"), os.O_RDWR | os.O_CLOEXEC)
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        exited_r, exited_w = os.pipe2(os.O_CLOEXEC)
        self._exited_fds[spec.id] = exited_r
        try:
            self._shim_fds[spec.id] = self._start_shim(spec, d, ready_w, exited_w)
            os.close(ready_w)
            os.close(exited_w)
            ready_w = exited_w = -1
            # The init builds the rootfs meanwhile and joins the cgroup when told it exists;
            # what only the runtime reads is written meanwhile too.
            write_json(os.path.join(d, "spec.json"), spec.to_dict())
            write_json(os.path.join(d, "meta.json"), {"created_at": time.time_ns(), "cgroup": cgroup,
                                                     "started_at": None})
            try:
                self.cgroups.create(cgroup, spec.resources)
            except BaseException:
                os.write(fifo, b"x")
                raise
            os.write(fifo, b"c")
            answer = _read_line(ready_r, self.create_timeout)
        finally:
            os.close(fifo)
            os.close(ready_r)
            for fd in (ready_w, exited_w):
                if fd >= 0:
                    os.close(fd)
        if answer != "ok":
            detail = answer[6:] if answer and answer.startswith("error ") else "init exited without a word"
            raise ContainerError(f"creating container {spec.id}: {detail or 'timed out'}")
        deadline = time.monotonic() + 5.0
        while not self._shim(spec.id).get("pid") and time.monotonic() < deadline:
            time.sleep(0.0005)

    def _start_shim(self, spec: ContainerSpec, d: str, ready_w: int, exited_w: int) -> int:
        """Hand the container to the spare shim and its init, else have one forked; the shim's pidfd."""
        spare = self.spares.take() if self.spares is not None else None
        if spare is not None and spare.hand_over(d, ready_w, exited_w, spec.stdin and not spec.tty):
            return spare.pidfd
        _, fds = self.forkserver.call("shim", {"state_dir": d}, [ready_w, exited_w])
        return fds[0]

    def start(self, cid: str) -> None:
        with self._lock(cid):
            st = self.status(cid)
            if st.state != CREATED:
                raise ContainerError(f"container {cid} is {st.state}; only a created container can start")
            d = self.state_dir(cid)
            meta = self._meta(cid)
            meta["started_at"] = time.time_ns()
            write_json(os.path.join(d, "meta.json"), meta)
            self._known_for(cid).meta = meta
            try:
                fd = os.open(os.path.join(d, "start.fifo"), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as e:
                if e.errno == errno.ENXIO:
                    raise ContainerError(f"container {cid}: its init is gone; remove and re-create it") from None
                raise
            try:
                os.write(fd, b"s")
            finally:
                os.close(fd)

    def wait(self, cid: str, timeout: float | None = None) -> ContainerStatus:
        """Block until the container has exited (or `timeout`); returns its status."""
        fd = self._exited_fds.get(cid)
        if fd is None:  # a container from before a restart: wait for its shim to end
            fd = self._shim_fd(cid)
        if fd is not None:
            select.select([fd], [], [], timeout)
        return self.status(cid)

    def exit_fd(self, cid: str) -> int | None:
        """A new descriptor that becomes readable once the container has exited (for an event
        loop's reader); the caller closes it. None if the container's shim is gone."""
        fd = self._exited_fds.get(cid)
        if fd is None:
            fd = self._shim_fd(cid)
        return None if fd is None else os.dup(fd)  # ours: a concurrent remove closes theirs

    def signal(self, cid: str, sig: int) -> None:
        """Send `sig` to the container's PID 1 (which ignores signals it has no handler for)."""
        st = self.status(cid)
        if st.state not in (RUNNING, CREATED):
            raise ContainerError(f"container {cid} is {st.state}; only a live container can be signalled")
        self._signal_init(cid, sig)

    def update_resources(self, cid: str, resources: Resources) -> None:
        """Change the limits of a container's cgroup (CRI UpdateContainerResources)."""
        self.cgroups.update(self._meta(cid)["cgroup"], resources)

    def stop(self, cid: str, timeout: float = 10.0) -> ContainerStatus:
        """SIGTERM, then SIGKILL after `timeout` seconds (PID 1 may ignore SIGTERM)."""
        with self._lock(cid):
            st = self.status(cid)
            if st.state == RUNNING and timeout > 0:
                self._signal_init(cid, signal.SIGTERM)
                st = self.wait(cid, timeout)
            if st.state in (RUNNING, CREATED):
                self._signal_init(cid, signal.SIGKILL)
                cgroup = self._meta(cid)["cgroup"]
                if self.cgroups.exists(cgroup):
                    self.cgroups.kill(cgroup)
                st = self.wait(cid, 10.0)
            if st.state != EXITED:
                raise ContainerError(f"container {cid} did not stop (state {st.state})")
            return st

    def remove(self, cid: str) -> None:
        """Stop if needed, then delete its cgroup and state; the mount namespace died with it."""
        meta = self._meta(cid)
        st = self.status(cid)
        if st.state in (RUNNING, CREATED):
            self.stop(cid, 0)
        with self._lock(cid):
            self._cleanup(cid, meta["cgroup"])
        with self._guard:
            self._locks.pop(cid, None)

    def _cleanup(self, cid: str, cgroup: str) -> None:
        self._known.pop(cid, None)
        fd = self._shim_fds.pop(cid, None)
        if fd is not None:
            os.close(fd)
        shim = self._shim(cid)
        if self.cgroups.exists(cgroup):
            self.cgroups.kill(cgroup)
        exited = self._exited_fds.pop(cid, None)
        if exited is not None:
            os.close(exited)
        if self.cgroups.exists(cgroup):
            self.cgroups.remove(cgroup)
        if self.layers != self.dir:
            self._discard(self.layer_dir(cid), self.layer_trash, cid, shim)
        self._discard(self.state_dir(cid), self.trash, cid, shim)

    def _discard(self, d: str, trash: str, cid: str, shim: dict) -> None:
        doomed = os.path.join(trash, f"{cid}.{time.monotonic_ns()}")
        try:
            os.rename(d, doomed)  # the id is free again at once
        except FileNotFoundError:
            return
        except OSError as e:
            log.warning("cannot move state dir to trash dir=%s err=%s; deleting in place", d, e)
            delete_now(d, shim.get("shim_pid"), shim.get("shim_start"))
            return
        self.janitor.discard(doomed, shim.get("shim_pid"), shim.get("shim_start"))

    # -- queries --
    def status(self, cid: str) -> ContainerStatus:
        return status_of(self._known_for(cid), functools.partial(self._shim_alive, cid))

    def statuses(self, cids: Iterable[str]) -> dict[str, ContainerStatus]:
        """The status of each container found (for a list): the running ones started by this
        runtime cost one poll of their exited pipes between them, not a check for exit.json
        and a poll of the shim each. On the event loop, every syscall lets the pool's threads
        take the interpreter lock, and a 100-container list made 200 of them."""
        known: dict[str, Known] = {}
        for cid in cids:
            with contextlib.suppress(NotFoundError):
                known[cid] = self._known_for(cid)
        watched: dict[int, str] = {}
        for cid, k in known.items():
            fd = self._exited_fds.get(cid)
            if fd is not None and k.exit is None and k.shim.get("pid"):
                watched[fd] = cid
        quiet = set(watched.values())
        if watched:
            poller = select.poll()
            for fd in watched:
                poller.register(fd, select.POLLIN)
            quiet.difference_update(watched[fd] for fd, _ in poller.poll(0))  # EOF: exit recorded, or shim gone
        return {cid: status_of(k, functools.partial(self._shim_alive, cid),
                               running_without_exit=cid in quiet)
                for cid, k in known.items()}

    def _shim_alive(self, cid: str, shim: dict) -> bool:
        fd = self._shim_fds.get(cid)  # a pidfd: no pid reuse to rule out, no /proc file to parse
        if fd is None:
            return shim_alive(shim)
        return not select.select([fd], [], [], 0)[0]

    def spec(self, cid: str) -> ContainerSpec:
        """The spec a container was created from (mounts, labels, image layers ...)."""
        data = read_json(os.path.join(self.state_dir(cid), "spec.json"))
        if data is None:
            raise NotFoundError(f"container {cid} not found")
        return ContainerSpec.from_dict(data)

    def list(self) -> builtins.list[ContainerStatus]:
        out = []
        for name in sorted(os.listdir(self.dir)):
            try:
                out.append(self.status(name))
            except NotFoundError:
                pass
        return out

    def stats(self, cid: str) -> ContainerStats:
        s = self.cgroups.stats(self._meta(cid)["cgroup"])
        return ContainerStats(cid, s.timestamp_ns, s.cpu_usage_ns, s.memory_usage_bytes,
                              s.memory_working_set_bytes, s.memory_limit_bytes, s.pids_current,
                              s.oom_kills)

    def reopen_log(self, cid: str) -> None:
        st = self.status(cid)
        if st.state != RUNNING:
            raise ContainerError(f"container {cid} is {st.state}; its log can be reopened only while running")
        shim = self._shim(cid)
        fd = self._shim_fd(cid)
        if fd is None:
            raise ContainerError(f"container {cid}: its shim is gone")
        signal.pidfd_send_signal(fd, signal.SIGUSR1)
        deadline = time.monotonic() + 5.0
        while not os.path.exists(st.log_path) and time.monotonic() < deadline:
            time.sleep(0.001)
        if not os.path.exists(st.log_path):
            raise ContainerError(f"container {cid}: shim pid={shim.get('shim_pid')} did not reopen {st.log_path}")

    # -- exec --
    def exec(self, cid: str, args: builtins.list[str], tty: bool = False, stdin: bool = False,
             env: dict[str, str] | None = None, tty_size: tuple[int, int] | None = None) -> ExecProcess:
        """Start `args` in the running container with its user, capabilities and seccomp.

        With `tty`, the process gets a pseudo-terminal (of `tty_size` rows and
        columns from the start) as its controlling terminal.
        """
        if not args:
            raise SpecError("exec: the command is empty")
        st = self.status(cid)
        if st.state != RUNNING:
            raise ContainerError(f"container {cid} is {st.state}; exec needs a running container")
        d = self.state_dir(cid)
        plan = read_json(os.path.join(d, "launch.json")) or {}
        init = plan["init"]
        shim = self._shim(cid)
        full_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    **init["extra_env"], **init["env"], **(env or {})}
        request = {
            "pid": shim["pid"], "pid_start": shim["pid_start"],
            "procs_files": self.cgroups.procs_files(plan["cgroup"]),
            "args": list(args), "env": full_env, "cwd": init["working_dir"], "tty": tty,
            "uid": init["cred"]["uid"], "gid": init["cred"]["gid"], "groups": init["cred"]["groups"],
            "caps": init["cred"]["caps"], "no_new_privs": init["cred"]["no_new_privs"],
            "rlimits": init["cred"]["rlimits"], "user_name": init.get("user_name"),
            "seccomp_path": os.path.join(d, "seccomp.bpf") if os.path.exists(os.path.join(d, "seccomp.bpf")) else None,
        }
        mine: builtins.list[int] = []
        theirs: builtins.list[int] = []
        in_w = out_r = err_r = None
        ours, helper_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if tty:  # the helper opens the pty inside the container and sends us the master
                request["tty_size"] = list(tty_size) if tty_size else None
            else:
                if stdin:
                    in_r, in_w = os.pipe2(os.O_CLOEXEC)
                    mine.append(in_w)
                    theirs.append(in_r)
                else:
                    theirs.append(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
                out_r, out_w = os.pipe2(os.O_CLOEXEC)
                err_r, err_w = os.pipe2(os.O_CLOEXEC)
                mine += [out_r, err_r]
                theirs += [out_w, err_w]
            self.forkserver.call("exec", request, [*theirs, helper_end.fileno()])
        except BaseException:
            for fd in mine:
                os.close(fd)
            ours.close()
            raise
        finally:
            for fd in theirs:
                os.close(fd)
            helper_end.close()
        return ExecProcess(ours, in_w, out_r, err_r, tty=tty)

    def exec_sync(self, cid: str, args: builtins.list[str], timeout: float = 60.0,
                  input: bytes | None = None) -> ExecResult:
        proc = self.exec(cid, args, stdin=input is not None)
        if input is not None and proc.stdin is not None:
            try:
                os.write(proc.stdin, input)
            except BrokenPipeError:
                pass
            os.close(proc.stdin)
            proc.stdin = None
        return collect(proc, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Close our descriptors; waits (up to `timeout`) until removed containers' state is deleted."""
        self._closed = True
        self._prime_wanted.set()
        if self.spares is not None:
            self.spares.close()
        self.janitor.close(timeout)
        for fd in [*self._shim_fds.values(), *self._exited_fds.values()]:
            os.close(fd)
        self._shim_fds.clear()
        self._exited_fds.clear()


def _raise_nofile_limit() -> None:
    # Two fds per live container (shim pidfd, exit pipe): the usual soft limit of
    # 1024 would cap a node at ~500 containers.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as e:
            log.warning("cannot raise RLIMIT_NOFILE soft=%s hard=%s err=%s", soft, hard, e)


def _read_line(fd: int, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n", 1)[0].decode(errors="replace") if buf else ""
