"""Pod start-up on `timonel up`: 100 pods created at once, create-to-Ready seen through a watch.

    sudo .venv/bin/python bench/pod_startup.py [--pods 100] [--docker-runs 100] [--idle-seconds 60]

In one run:
1. `timonel up` in a temp dir (its own port, bridge, pod CIDR and runtime
   socket; the offline busybox image in DIR/images), exactly as a user starts it;
2. after --idle-seconds of idling, the resident memory of its processes: `up`
   itself, the API server, etcd, the runtime (daemon, fork server, janitor) and
   the agent (RSS, and PSS, which counts shared pages once; an address space
   two processes share, a vfork child's, once);
3. --pods pods (one busybox `sleep` container, no probes: Ready once it runs)
   created at once by as many client threads, already connected (like
   Kubernetes' pod start-up SLI, which starts at the pod's creation, not at
   the client's TLS handshake), each pod's time from its create request to
   the first watch event that shows it Ready (p50, p99, max), the CPU seconds
   each part used meanwhile and the API writes per pod (from /metrics);
4. when Docker is installed: a private `dockerd` (its own data root and socket;
   no bridge and no iptables, so the host's firewall is untouched) if none
   answers, the same image `docker load`ed, and `docker run --rm --network none
   busybox true` --docker-runs times one after another and then all at once.
   Docker's runs get no network, timonel's pods a veth and an address each:
   the ratio favours Docker. Prints timonel/docker ratios.

Targets (issue 4): p99 create-to-Ready under 2 s; idle RSS under 300 MB in total.
Needs root; traffic stays on loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib.util
import json
import os
import platform
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from timonel.api.kubeconfig import load_kubeconfig  # noqa: E402
from timonel.api.storage.etcd_process import free_port  # noqa: E402

Obj = dict[str, Any]
NAMESPACE = "bench"


def busybox_archive(dest: Path) -> Path:
    spec = importlib.util.spec_from_file_location("timonel_bench_busybox", REPO / "deploy" / "images" / "busybox.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return Path(mod.write_busybox_image(dest)["docker_archive"])


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


# -- timonel up --

class Up:
    def __init__(self, base: Path) -> None:
        self.data = base / "up"
        (self.data / "images").mkdir(parents=True)
        shutil.copy(busybox_archive(base / "image"), self.data / "images" / "busybox.tar")
        tag = uuid.uuid4().hex[:6]
        self.port = free_port()
        self.node = f"bench-{tag}"
        self.log = self.data / "up.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "timonel.cli.main", "up", "--data-dir", str(self.data),
                 "--port", str(self.port), "--node-name", self.node,
                 "--pod-cidr", f"10.244.{random.randint(128, 250)}.0/24",
                 "--runtime-socket", str(self.data / "rt.sock"), "--bridge", f"tmnb{tag}", "--agent-port", "0"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 300
        while "timonel is up" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"timonel up did not come up:\n{self.log.read_text(errors='replace')[-4000:]}")
            time.sleep(0.3)
        cfg = load_kubeconfig(str(self.data / "admin.kubeconfig"))
        self.url = cfg.server
        self.token = cfg.token
        self.http = self.session(pool_maxsize=128)

    def session(self, pool_maxsize: int = 1) -> requests.Session:
        http = requests.Session()
        http.trust_env = False
        http.verify = str(self.data / "tls" / "ca.crt")
        http.headers["Authorization"] = f"Bearer {self.token}"
        http.mount("https://", requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_maxsize))
        return http

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(180)
            except subprocess.TimeoutExpired:
                print("warning: timonel up did not stop within 180 s", file=sys.stderr)
                return None
        return self.proc.returncode


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{entry}/stat") as f:
                out.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    return out


def _tree(pid: int, children: dict[int, list[int]]) -> list[int]:
    out, todo = [pid], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes."""
    rss = pss = 0
    with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    return rss, pss


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def parts(up: Up) -> dict[str, list[int]]:
    """The processes of each part: `up` itself, its children, etcd apart from the server."""
    children = _children()
    out: dict[str, list[int]] = {"up": [up.proc.pid]}
    for child in children.get(up.proc.pid, []):
        cmd = _cmdline(child)
        name = "runtime" if "runtime_cmd" in cmd or " runtime " in cmd else \
            next((n for n in ("server", "agent") if f" {n} " in cmd), f"pid {child}")
        tree = _tree(child, children)
        if name == "server":
            etcd = [p for p in tree if "etcd" in _cmdline(p).split(" ")[0]]
            out["etcd"] = [q for p in etcd for q in _tree(p, children)]
            tree = [p for p in tree if p not in out["etcd"]]
        out[name] = tree
    return out


_KCMP = {"x86_64": 312, "aarch64": 272}
_KCMP_VM = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


def _same_address_space(a: int, b: int) -> bool:
    """kcmp(KCMP_VM): do two processes share one memory (a vfork child before its execve)?"""
    nr = _KCMP.get(platform.machine())
    return nr is not None and _LIBC.syscall(nr, a, b, _KCMP_VM, 0, 0) == 0


def idle_memory(up: Up) -> dict[str, tuple[int, int, int]]:
    """Per part: (processes, RSS, PSS), each address space counted once: a spare container
    init shares its helper's memory (shim._spawn_pid1), and /proc shows that memory's RSS,
    and PSS, for both processes, as it would for two threads of one process."""
    out = {}
    for name, pids in parts(up).items():
        spaces: list[int] = []
        for pid in pids:
            if not any(_same_address_space(pid, other) for other in spaces):
                spaces.append(pid)
        mem = [_memory(p) for p in spaces]
        out[name] = (len(pids), sum(m[0] for m in mem), sum(m[1] for m in mem))
    return out


def cpu_seconds(up: Up) -> dict[str, float]:
    """Per part: CPU seconds used so far by its live processes and the children they reaped
    (the runtime's shims and containers count as the runtime's)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pids in parts(up).items():
        total = 0
        for pid in pids:
            with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
                total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        out[name] = total / tick
    return out


def machine_cpu() -> tuple[float, float, float]:
    """(busy, total, of busy: interrupts) CPU seconds of the whole machine so far, from
    /proc/stat: what the per-part figures leave out shows in the gap. Time the hypervisor
    took (steal) is neither busy nor counted."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq = ticks[:7]
    busy = user + nice + system + irq + softirq
    return busy / tick, (busy + idle + iowait) / tick, (irq + softirq) / tick


def kernel_threads_cpu() -> float:
    """CPU seconds used so far by the kernel's threads (children of kthreadd): network
    namespace set-up and clean-up, RCU callbacks, writeback."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
                if fields[1] in ("0", "2"):  # ppid: kthreadd's children (and kthreadd)
                    total += int(fields[11]) + int(fields[12])
    return total / tick


def own_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def pod_manifest(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "startup"}},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                "name": "sleep", "image": "busybox:latest", "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"]}]}}


@dataclass
class Startup:
    ready: list[float]  # seconds from each create request to the watch event showing it Ready
    bound: list[float]  # ... to the first event showing it bound to the node
    wall: float  # from the first create to the last pod Ready


def api_requests(up: Up) -> dict[str, float]:
    """apiserver_request_total by verb and resource (subresource), from the server's /metrics."""
    out: dict[str, float] = {}
    for line in up.http.get(f"{up.url}/metrics").text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(kv.split("=", 1) for kv in line[line.index("{") + 1:line.rindex("}")].split(","))
        what = labels["verb"].strip('"') + " " + labels.get("resource", '""').strip('"')
        if labels.get("subresource", '""').strip('"'):
            what += "/" + labels["subresource"].strip('"')
        out[what] = out.get(what, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def startup(up: Up, pods: int, at_start: Callable[[], None]) -> Startup:
    base = f"{up.url}/api/v1/namespaces/{NAMESPACE}/pods"
    r = up.http.post(f"{up.url}/api/v1/namespaces", json={
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    assert r.status_code in (201, 409), r.text
    rv = up.http.get(base).json()["metadata"]["resourceVersion"]
    sent: dict[str, float] = {}
    ready_at: dict[str, float] = {}
    bound_at: dict[str, float] = {}
    done = threading.Event()
    names = [f"p{i:03d}" for i in range(pods)]

    def watch() -> None:
        with up.http.get(base, params={"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "false"},
                         stream=True, timeout=(10, 300)) as resp:
            for line in resp.iter_lines():
                now = time.perf_counter()
                if not line:
                    continue
                ev = json.loads(line)
                obj = ev.get("object") or {}
                name = (obj.get("metadata") or {}).get("name", "")
                if name not in bound_at and (obj.get("spec") or {}).get("nodeName"):
                    bound_at[name] = now
                conds = (obj.get("status") or {}).get("conditions") or []
                if name not in ready_at and any(c.get("type") == "Ready" and c.get("status") == "True"
                                                for c in conds):
                    ready_at[name] = now
                    if len(ready_at) == pods:
                        done.set()
                        return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(0.5)  # the watch is open before the first create
    go = threading.Barrier(min(pods, 100) + 1)
    sessions = {name: up.session() for name in names}

    def create(name: str) -> None:
        # Every client connects first, on a connection of its own: the time measured is the
        # pod's start-up, not the client's TLS handshake, and the handshakes' CPU does not
        # compete with the pods' start. (One shared pool did not do it: clients that had
        # connected handed their connection on to others, and ~25 handshakes were left for
        # the burst.) They are closed once every pod is Ready, not in the middle of it.
        http = sessions[name]
        http.get(base, params={"limit": "1"}).raise_for_status()
        go.wait()
        sent[name] = time.perf_counter()
        resp = http.post(base, json=pod_manifest(name))
        assert resp.status_code == 201, resp.text

    t0 = time.perf_counter()
    with ThreadPoolExecutor(min(pods, 100)) as pool:
        futures = [pool.submit(create, n) for n in names]
        go.wait()
        t0 = time.perf_counter()
        at_start()
        for f in futures:
            f.result()
    ready = done.wait(600)
    for http in sessions.values():
        http.close()
    if not ready:
        raise SystemExit(f"only {len(ready_at)}/{pods} pods Ready after 10 minutes")
    wall = max(ready_at.values()) - t0
    return Startup([ready_at[n] - sent[n] for n in names], [bound_at[n] - sent[n] for n in names], wall)


def delete_pods(up: Up, pods: int) -> float:
    t0 = time.perf_counter()
    base = f"{up.url}/api/v1/namespaces/{NAMESPACE}/pods"
    up.http.delete(base, params={"gracePeriodSeconds": "0", "labelSelector": "bench=startup"})
    deadline = time.monotonic() + 300
    while up.http.get(base).json()["items"]:
        if time.monotonic() > deadline:
            print("warning: pods still there after 300 s", file=sys.stderr)
            break
        time.sleep(0.5)
    return time.perf_counter() - t0


# -- docker --

class Docker:
    def __init__(self, base: Path) -> None:
        self.dockerd: subprocess.Popen[bytes] | None = None
        self.host: list[str] = []
        if self._answers([]):
            return
        d = base / "docker"
        d.mkdir()
        sock = d / "docker.sock"
        self.log = d / "dockerd.log"
        with open(self.log, "wb") as out:
            self.dockerd = subprocess.Popen(
                ["dockerd", "--data-root", str(d / "root"), "--exec-root", str(d / "exec"),
                 "--host", f"unix://{sock}", "--pidfile", str(d / "docker.pid"), "--bridge", "none",
                 "--iptables=false", "--ip6tables=false"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.host = ["-H", f"unix://{sock}"]
        deadline = time.monotonic() + 60
        while not self._answers(self.host):
            if self.dockerd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start: {self.log.read_text(errors='replace')[-800:]}")
            time.sleep(0.5)

    @staticmethod
    def _answers(host: list[str]) -> bool:
        return subprocess.run(["docker", *host, "info"], capture_output=True).returncode == 0

    def docker(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["docker", *self.host, *args], capture_output=True)

    def load(self, archive: Path) -> None:
        r = self.docker("load", "-i", str(archive))
        if r.returncode != 0:
            raise RuntimeError(f"docker load: {r.stderr.decode(errors='replace')[:400]}")

    def run_once(self) -> float:
        t0 = time.perf_counter()
        r = self.docker("run", "--rm", "--network", "none", "busybox:latest", "true")
        took = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(f"docker run: {r.stderr.decode(errors='replace')[:400]}")
        return took

    def stop(self) -> None:
        if self.dockerd is not None:
            self.dockerd.send_signal(signal.SIGTERM)
            try:
                self.dockerd.wait(60)
            except subprocess.TimeoutExpired:
                self.dockerd.kill()
                self.dockerd.wait()


def measure_docker(base: Path, runs: int) -> tuple[list[float], list[float], float] | str:
    """(one-at-a-time samples, all-at-once samples, all-at-once wall time), or why not measured."""
    if not shutil.which("docker") or not shutil.which("dockerd"):
        return "docker is not installed"
    try:
        docker = Docker(base)
    except RuntimeError as e:
        return str(e)
    try:
        docker.load(busybox_archive(base / "docker-image"))
        docker.run_once()  # warm-up
        serial = [docker.run_once() for _ in range(runs)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(runs) as pool:
            burst = list(pool.map(lambda _: docker.run_once(), range(runs)))
        return serial, burst, time.perf_counter() - t0
    except RuntimeError as e:
        return str(e)
    finally:
        docker.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pods", type=int, default=100, help="pods created at once (default: %(default)s)")
    p.add_argument("--docker-runs", type=int, default=100, help="docker runs (default: %(default)s; 0: none)")
    p.add_argument("--idle-seconds", type=float, default=60.0,
                   help="idle time before memory is measured (default: %(default)s)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("error: the benchmark needs root (timonel up runs the runtime); run it with sudo", file=sys.stderr)
        return 4
    base = Path(tempfile.mkdtemp(prefix="tmnl-bench-"))
    up: Up | None = None
    try:
        up = Up(base)
        time.sleep(args.idle_seconds)
        memory = idle_memory(up)
        before: dict[str, dict[str, float]] = {}
        window: dict[str, tuple[float, ...]] = {}

        running = up
        before["requests"] = api_requests(up)

        def at_start() -> None:  # the clients are connected; the creates are under way
            before["cpu"] = cpu_seconds(running)
            window["machine"] = machine_cpu()
            window["own"] = (own_cpu(), kernel_threads_cpu())

        result = startup(up, args.pods, at_start)
        cpu = {name: used - before["cpu"].get(name, 0.0) for name, used in cpu_seconds(up).items()}
        machine = tuple(now - then for now, then in zip((*machine_cpu(), own_cpu(), kernel_threads_cpu()),
                                                          window["machine"] + window["own"], strict=True))
        requests_now = api_requests(up)
        per_pod = {k: (n - before["requests"].get(k, 0.0)) / args.pods for k, n in requests_now.items()
                   if k.split()[0] in ("CREATE", "UPDATE", "PATCH", "DELETE")}  # not the bench's own reads
        samples, wall = result.ready, result.wall
        removed = delete_pods(up, args.pods)
        code = up.stop()
        up = None
        docker = measure_docker(base, args.docker_runs) if args.docker_runs else "--docker-runs 0"
    finally:
        if up is not None:
            up.stop()
        shutil.rmtree(base, ignore_errors=True)

    load = os.getloadavg()[0]
    print(f"host: {platform.node()} {platform.release()}, {os.cpu_count()} CPUs, load at the end {load:.2f}")
    print(f"\nidle memory of timonel up's processes after {args.idle_seconds:.0f} s (target: < 300 MB RSS in total)")
    for name, (n, rss, pss) in memory.items():
        print(f"  {name:<8} {n:2d} process(es)  RSS {rss / 2**20:7.1f} MiB  PSS {pss / 2**20:7.1f} MiB")
    total_rss = sum(m[1] for m in memory.values())
    total_pss = sum(m[2] for m in memory.values())
    print(f"  {'total':<8}                RSS {total_rss / 2**20:7.1f} MiB  PSS {total_pss / 2**20:7.1f} MiB")

    p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
    print(f"\n{args.pods} pods created at once, create request -> Ready in a watch (target: p99 < 2 s)")
    print(f"  p50 {p50 * 1000:7.0f} ms   p99 {p99 * 1000:7.0f} ms   max {max(samples) * 1000:7.0f} ms   "
          f"all Ready after {wall:.2f} s ({args.pods / wall:.0f} pods/s)")
    print(f"  of which create -> bound by the scheduler: p50 {percentile(result.bound, 0.5) * 1000:7.0f} ms   "
          f"p99 {percentile(result.bound, 0.99) * 1000:7.0f} ms")
    print(f"  CPU seconds from the first create to the last Ready ({os.cpu_count() or 1} CPUs x {wall:.1f} s "
          f"= {(os.cpu_count() or 1) * wall:.1f}): " + ", ".join(f"{n} {used:.1f}" for n, used in cpu.items()))
    print(f"  the whole machine meanwhile: {machine[0]:.1f} CPU-s busy of {machine[1]:.1f} "
          f"({100 * machine[0] / max(machine[1], 1e-9):.0f}%), of which interrupts {machine[2]:.1f}, "
          f"the kernel's threads {machine[4]:.1f}, this benchmark's own clients and watch {machine[3]:.1f}")
    busy = sorted(((n, k) for k, n in per_pod.items() if n >= 0.05), reverse=True)
    print(f"  API writes per pod meanwhile ({sum(n for n, _ in busy):.1f}): "
          + ", ".join(f"{k} {n:.2f}" for n, k in busy))
    print(f"  deleted through the API (grace 0) in {removed:.1f} s; timonel up then exited {code}")
    if isinstance(docker, str):
        print(f"\ndocker: not measured ({docker})")
        return 0
    serial, burst, burst_wall = docker
    print(f"\ndocker run --rm --network none busybox true, {len(serial)} runs")
    print(f"  one at a time: p50 {percentile(serial, 0.5) * 1000:7.0f} ms   p99 {percentile(serial, 0.99) * 1000:7.0f} ms")
    print(f"  all at once:   p50 {percentile(burst, 0.5) * 1000:7.0f} ms   p99 {percentile(burst, 0.99) * 1000:7.0f} ms"
          f"   all done after {burst_wall:.2f} s")
    print(f"\nratios timonel/docker, {args.pods} at once each (below 1: timonel is faster)")
    print(f"  p50 {p50 / percentile(burst, 0.5):.2f}   p99 {p99 / percentile(burst, 0.99):.2f}   "
          f"wall time {wall / burst_wall:.2f}")
    print(f"  (one pod alone vs one docker run alone is another question: bench/runtime_start.py; here a "
          f"pod's p50 is {p50 / percentile(serial, 0.5):.1f}x a lone docker run's)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
