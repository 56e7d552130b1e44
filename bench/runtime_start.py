"""Start-to-exit latency of a container running a static `true`: timonel against runc and crun.

    sudo .venv/bin/python bench/runtime_start.py [--runs 100]

One sample is create + start + wait + remove of a container running busybox
`true`, measured for, interleaved in one run (each round in a shuffled order):
- timonel through its gRPC API: CreateContainer, StartContainer,
  WaitContainer, RemoveContainer against a `timonel runtime` daemon
  subprocess, in a pod sandbox it made;
- timonel through its Python API: ContainerManager in this process, forking
  from its own fork server (which keeps a shim and its init forked ahead of
  the next container); with --baseline also a fork server that forks them on
  demand, as before that change;
- `runc run` and `crun run` (Debian packages) of a bundle on the same rootfs
  (the busybox layer as timonel unpacked it, read-only).
Every runtime makes new mount, PID and cgroup namespaces and joins existing
network, IPC and UTS namespaces (a pod's), sets no_new_privs, no seccomp
filter. timonel does more: an overlay rootfs with a writable upper dir,
a CRI log file, a state dir. Prints medians, p90 and the ratios
timonel/runc and timonel/crun, the median of each of the four calls for
both timonel paths (their difference is what the gRPC service adds), and
the round trip of an empty gRPC call (Version) back to back and after
50 ms idle: the per-call floor of the gRPC path.

crun 1.8 refuses hybrid cgroup hosts whose cgroup2 mount holds a controller;
there this process runs the OCI runtimes in a private mount namespace where
that controller list reads empty (bench/oci_peers.py), so crun uses cgroup
v1 like runc. The host is not changed. Needs root; nothing is sent anywhere.

cgroups are on equal terms (checked with strace on the hybrid v1 host): runc,
crun and timonel each make the container's cgroup in every v1 hierarchy and
in the cgroup2 mount and move the container's first process into each by a
write to cgroup.procs (a migration: the first after a quiet spell waits for
an RCU grace period), none uses clone3's CLONE_INTO_CGROUP there, and none
sets a limit (the bundles' only cgroup rule is crun's and runc's default
"deny all devices").

The first migration after a quiet spell waits for an RCU grace period
(cgroup_threadgroup_rwsem's rcu_sync; 4-16 ms here). Mounting any cgroup
hierarchy with `favordynmods` (cgroup2, and v1 named hierarchies on kernel
6.x) switches that global lock to writer-friendly mode: first writes take
~0.2 ms, for every runtime on the host. On this 6.18 kernel the switch
outlived the unmount of a private named hierarchy (still in effect long
after), i.e. it is a host-wide change: timonel does not make it; a host that
wants it can mount its cgroup2 with favordynmods.

The gRPC path's own cost (measured 2026-11-26, interleaved A/B runs, load
1-6): an empty call costs 0.45-0.7 ms back to back and 1.1-1.8 ms after
50 ms idle (a Python unix-socket ping-pong: 0.012 / 0.08 ms), CPU-bound in
grpc's Python call path and threads (client 0.2 ms, grpc.aio server 0.4 ms
of CPU per call). In the bench the four calls' transport adds ~4 ms; Create's
CRI work (records, sandbox spec, /etc files, log path) ~1.8 ms; Remove's
thread hand-off ~0.6 ms. No measurable change (within 0.05 ms) from:
grpc.http2.bdp_probe=0, grpc.minimal_stack, grpc.enable_retries=0, no
deadline, grpc.optimization_target=latency, GRPC_POLL_STRATEGY=poll,
GRPC_EXPERIMENTS=-event_engine_client/-listener/-callback_cq (the legacy
poller does take the client's thread hops out), a 0.5 ms GIL switch
interval, a grpc.aio client (a to_thread hop costs 0.1-0.2 ms more). A
sync grpc.server saves ~0.1 ms of server CPU per call, not worth
rewriting the async servicer; uvloop cannot run pyroute2's netlink sockets.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from oci_peers import (
    hide_v2_controllers,
    hybrid_with_v2_controllers,
    installed,
    oci_bundle,
    oci_once,
    summary,
)

from timonel.node_agent.runtime.cgroups import detect
from timonel.node_agent.runtime.container import (
    ContainerManager,
    ContainerSpec,
    Seccomp,
    start_fork_server,
)
from timonel.node_agent.runtime.container.spec import SECCOMP_UNCONFINED
from timonel.node_agent.runtime.linux import Syscalls

REPO = Path(__file__).resolve().parents[1]
BASELINE = "timonel (Python, no spare)"
POD_CIDR = "10.231.0.0/24"  # inside a network namespace of this benchmark only


def busybox_archive(dest: Path) -> Path:
    spec = importlib.util.spec_from_file_location("timonel_bench_busybox", REPO / "deploy" / "images" / "busybox.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return Path(mod.write_busybox_image(dest)["docker_archive"])


def holder(*kinds: str) -> subprocess.Popen[bytes]:
    """A sleeping process in new namespaces of `kinds`, joinable as /proc/<pid>/ns/<kind>."""
    proc = subprocess.Popen(["unshare", *(f"--{k}" for k in kinds), "sleep", "infinity"])
    deadline = time.monotonic() + 10
    while os.readlink(f"/proc/{proc.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
        if time.monotonic() > deadline:
            raise RuntimeError("unshare did not create the namespaces in 10s")
        time.sleep(0.001)
    return proc


def timed(fn: Callable[[str], None]) -> Callable[[str], float]:
    def run(name: str) -> float:
        t0 = time.perf_counter()
        fn(name)
        return time.perf_counter() - t0
    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=100, help="samples per runtime (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=5, help="unmeasured runs first (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="seed of the per-round order (default: %(default)s)")
    p.add_argument("--baseline", action="store_true",
                   help="also measure the Python API with shims forked on demand (no spare shim)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("error: the benchmark needs root (namespaces, cgroups, mounts); run it with sudo", file=sys.stderr)
        return 4
    tmp = Path(tempfile.mkdtemp(prefix="timonel-bench-"))
    parent = f"timonel-bench-{uuid.uuid4().hex[:8]}"
    sysc, cgroups = Syscalls(), detect()
    # The fork server first, while this process has no threads (gRPC starts some) and has
    # loaded little: children of a big process fork and start slower (copy-on-write faults).
    forkserver = start_fork_server(sysc, cgroups)
    procs: list[subprocess.Popen[bytes]] = []
    notes: list[str] = [
        "same work in cgroups for all: a cgroup in every v1 hierarchy and the cgroup2 mount, the first "
        "process moved in by cgroup.procs writes, no limits, no CLONE_INTO_CGROUP (crun/runc checked with strace)",
        "timonel does more: an overlay rootfs with a writable upper dir (runc/crun: the layer read-only), "
        "a shim copying output into a CRI log, a state dir"]
    try:
        pod = holder("net", "ipc", "uts")
        node = holder("net")
        procs += [pod, node]
        from timonel.node_agent.runtime.images import (  # after the fork server
            ImageStore,
            import_image,
        )

        archive = busybox_archive(tmp / "image")
        store = ImageStore(tmp / "store")
        ref = import_image(store, archive)[0].id
        rootfs = store.rootfs_layers(ref)[0]
        sock = str(tmp / "rt.sock")
        with open(tmp / "daemon.log", "wb") as log:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "timonel.cli.main", "runtime", "--root", str(tmp / "daemon"),
                 "--socket", sock, "--pod-cidr", POD_CIDR, "--node-netns", f"/proc/{node.pid}/ns/net",
                 "--cgroup-parent", f"{parent}/grpc", "--bridge", "tbench0"], stdout=log, stderr=subprocess.STDOUT)
        procs.append(daemon)
        peers = installed()
        if "crun" in peers and hybrid_with_v2_controllers():
            hide_v2_controllers(tmp)
            notes.append("crun: run in a private mount namespace that hides the cgroup2 controller list "
                         "(crun 1.8 refuses this hybrid host otherwise)")
        return measure(args, tmp, parent, sysc, cgroups, forkserver, pod, sock, archive, rootfs, peers,
                       notes)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
        forkserver.close()
        if cgroups.exists(parent):
            cgroups.kill(parent)
            cgroups.remove(parent)
        shutil.rmtree(tmp, ignore_errors=True)


def measure(args: argparse.Namespace, tmp: Path, parent: str, sysc: Syscalls, cgroups: object,
            forkserver: object, pod: subprocess.Popen[bytes], sock: str, archive: Path,
            rootfs: str, peers: list[str], notes: list[str]) -> int:
    from timonel.node_agent.runtime.api import runtime_pb2 as pb
    from timonel.node_agent.runtime.client import RuntimeClient

    join = {kind: f"/proc/{pod.pid}/ns/{kind}" for kind in ("net", "ipc", "uts")}
    client = RuntimeClient(sock)
    client.wait_ready(60)
    client.import_image(str(archive))
    sandbox = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="bench", namespace="bench", uid="1"))
    sid = client.run_sandbox(sandbox)
    config = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="true"), image=pb.ImageSpec(image="busybox"), command=["/bin/true"],
        linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(no_new_privs=True)))
    # State on a tmpfs, as the daemon keeps it (statefs); the writable layers on disk.
    # /dev/shm, not a mount of our own: this process may be in a private mount namespace
    # (hide_v2_controllers) that the fork server, in the host's, would not see.
    state = tempfile.mkdtemp(prefix="timonel-bench-state-", dir="/dev/shm" if os.path.isdir("/dev/shm") else tmp)
    manager = ContainerManager(str(tmp / "python"), cgroups, forkserver, sysc,  # type: ignore[arg-type]
                               state_root=state)
    managers = [manager]
    attempt = iter(range(1 << 30))
    steps: dict[str, list[list[float]]] = {"timonel (gRPC API)": [], "timonel (Python API)": []}

    def grpc_once(_: str) -> None:
        config.metadata.attempt = next(attempt)
        t = [time.perf_counter()]
        cid = client.create_container(sid, config)
        t.append(time.perf_counter())
        client.start_container(cid)
        t.append(time.perf_counter())
        st = client.wait_container(cid)
        t.append(time.perf_counter())
        client.remove_container(cid)
        t.append(time.perf_counter())
        assert st.exit_code == 0, st
        steps["timonel (gRPC API)"].append(t)

    def python_once(name: str, manager: ContainerManager = manager, sub: str = "python") -> None:
        t = [time.perf_counter()]
        manager.create(ContainerSpec(id=name, args=["/bin/true"], rootfs_layers=[rootfs], namespaces=join,
                                     cgroup_parent=f"{parent}/{sub}", seccomp=Seccomp(type=SECCOMP_UNCONFINED)))
        t.append(time.perf_counter())
        manager.start(name)
        t.append(time.perf_counter())
        st = manager.wait(name, 30)
        t.append(time.perf_counter())
        manager.remove(name)
        t.append(time.perf_counter())
        assert st.exit_code == 0, st
        if manager is managers[0]:
            steps["timonel (Python API)"].append(t)

    runners: dict[str, Callable[[str], float]] = {
        "timonel (gRPC API)": timed(grpc_once), "timonel (Python API)": timed(python_once)}
    if args.baseline:
        managers.append(ContainerManager(str(tmp / "on-demand"), cgroups, forkserver, sysc,  # type: ignore[arg-type]
                                         spare_shims=False))
        runners[BASELINE] = timed(lambda name: python_once(name, managers[-1], "on-demand"))
    oci_join = {"network": join["net"], "ipc": join["ipc"], "uts": join["uts"]}
    for peer in peers:
        oci_bundle(peer, rootfs, tmp / peer, ["/bin/true"], oci_join)
        first = oci_once(peer, tmp / peer, f"bench-{peer}-probe")
        if isinstance(first, str):
            notes.append(f"{peer}: cannot run here ({first})")
            continue

        def peer_once(name: str, peer: str = peer) -> float:
            took = oci_once(peer, tmp / peer, name)
            if isinstance(took, str):
                raise RuntimeError(f"{peer} failed: {took}")
            return took

        runners[peer] = peer_once
    for name in set(peers) - set(runners):
        notes.append(f"{name}: not measured")
    try:
        for i in range(args.warmup):
            for label, run in runners.items():
                run(f"warm-{label.split()[0]}-{i}")
        for kept in steps.values():
            kept.clear()
        samples: dict[str, list[float]] = {label: [] for label in runners}
        order = list(runners)
        rng = random.Random(args.seed)
        for i in range(args.runs):
            rng.shuffle(order)  # interleaved: load bursts hit every runtime alike
            for label in order:
                samples[label].append(runners[label](f"b{i}-{label.split()[0].strip('()')}-{len(samples[label])}"))
        round_trips = version_round_trips(client)
    finally:
        client.stop_sandbox(sid)
        client.remove_sandbox(sid)
        client.close()
        for m in managers:
            m.close()
        shutil.rmtree(state, ignore_errors=True)
    report(samples, args.runs, notes)
    report_steps(steps, round_trips)
    return 0


def version_round_trips(client: object, back_to_back: int = 200, idle: int = 40) -> dict[str, list[float]]:
    """Seconds per empty Version call: back to back, and each after 50 ms without a call (the
    bench's calls come after the container's work left both processes' threads asleep)."""
    from timonel.node_agent.runtime.client import RuntimeClient

    assert isinstance(client, RuntimeClient)
    out: dict[str, list[float]] = {"back to back": [], "after 50 ms idle": []}
    for kind, n, pause in (("back to back", back_to_back, 0.0), ("after 50 ms idle", idle, 0.05)):
        for _ in range(n):
            if pause:
                time.sleep(pause)
            t0 = time.perf_counter()
            client.version()
            out[kind].append(time.perf_counter() - t0)
    return out


def report_steps(steps: dict[str, list[list[float]]], round_trips: dict[str, list[float]]) -> None:
    calls = ("create", "start", "wait", "remove")
    print("per call (medians, ms):      " + "".join(f"{c:>9}" for c in calls))
    for label, runs in steps.items():
        if runs:
            cells = [summary([t[i + 1] - t[i] for t in runs])[0] for i in range(len(calls))]
            print(f"  {label:<26} " + "".join(f"{c:9.2f}" for c in cells))
    for kind, took in round_trips.items():
        median, p90 = summary(took)
        print(f"  empty gRPC call (Version), {kind}: median {median:.2f} ms, p90 {p90:.2f} ms")


def report(samples: dict[str, list[float]], runs: int, notes: list[str]) -> None:
    load = os.getloadavg()[0]
    print(f"start-to-exit latency of busybox `true` (create+start+wait+remove), {runs} runs each, interleaved")
    print(f"host: {platform.node()} {platform.release()}, {os.cpu_count()} CPUs, load {load:.2f}")
    stats = {label: summary(s) for label, s in samples.items()}
    for label, (median, p90) in stats.items():
        print(f"  {label:<26} median {median:7.2f} ms   p90 {p90:7.2f} ms")
    for ours in ("timonel (gRPC API)", "timonel (Python API)", BASELINE):
        for peer in ("runc", "crun"):
            if peer in stats and ours in stats:
                print(f"  {ours}/{peer} = {stats[ours][0] / stats[peer][0]:.2f}  (medians; p90 "
                      f"{stats[ours][1] / stats[peer][1]:.2f})")
    for note in notes:
        print(f"  note: {note}")


if __name__ == "__main__":
    sys.exit(main())
