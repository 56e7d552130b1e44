"""A 1,000-replica Deployment on 100 fake nodes, then a rolling update of it,
against the API server's raw pod create throughput measured in the same run.

    .venv/bin/python bench/controller_perf.py [--replicas 1000] [--nodes 100]
        [--concurrency 32,100] [--embedded]

In one run:
1. one etcd, `timonel server --disable-scheduler --disable-controller-manager`
   on it, and `timonel scheduler` and `timonel controller-manager` (all
   controllers, default options) as separate processes. Separate so that
   step 4 can stop them and measure the very same API server alone, with
   nothing else writing. --embedded runs them inside `timonel server`, as
   users run it (one process, one GIL); step 4 then restarts that server on
   the same etcd and state without them.
2. --nodes fake nodes (tests/integration/fakenodes.py, kwok-like: Lease
   heartbeats, bound pods marked Running/Ready, deletions completed; each
   pod's writes in their own task, as separate kubelets would) in this
   process, and a pod watch that timestamps every pod's first ADDED, first
   event with spec.nodeName and first event with Ready=True.
3. a Deployment of --replicas pods: time from the create request to all pods
   created, bound and Ready; pods created/s and bound/s. Then a template
   change (default strategy: maxSurge 25%, maxUnavailable 25%) to
   completion: duration, new pods created/s, and at every watch event the
   invariants (at most replicas+maxSurge pods not terminating; at least
   replicas-maxUnavailable of them Ready) with the extremes seen.
   Each phase also prints the API server's write requests per pod (from its
   /metrics) and the Event objects written, by source and reason.
4. scheduler, controller manager and fake nodes stopped, bench/api_create.py's
   measurement (--replicas pods created through HTTPS by N concurrent
   clients, best of --raw-rounds) on the same server, and the ratios
   controller creates/s / raw creates/s.

CPU seconds of each process per phase are printed too: on a 2-core machine
they show which process is the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.api_create import bench_api  # noqa: E402
from tests.integration.fakenodes import FakeNodes  # noqa: E402
from timonel.api.auth.tokens import ensure_admin_token  # noqa: E402
from timonel.api.client import Client  # noqa: E402
from timonel.api.errors import ApiError  # noqa: E402
from timonel.api.storage.etcd_process import EtcdProcess, free_port  # noqa: E402

PODS = ("v1", "Pod")
DEPLOYMENTS = ("apps/v1", "Deployment")
NAMESPACES = ("v1", "Namespace")
NS = "bench"
HASH = "pod-template-hash"
Obj = dict[str, Any]


def deployment(name: str, replicas: int) -> Obj:
    labels = {"app": name}
    res = {"cpu": "10m", "memory": "16Mi"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                         "name": "main", "image": "registry.local/app:1",
                         "resources": {"requests": res, "limits": res}}]}}}}


def is_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


class PodTimes:
    """One pod watch on the namespace: first-seen times of created/bound/Ready
    per pod, and live counters per pod-template-hash kept incrementally so the
    rollout invariants can be checked at every event without a scan."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.added: dict[str, float] = {}
        self.bound: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.live: dict[str, tuple[str, bool, bool]] = {}  # name -> (hash, serving, ready)
        self.serving = 0
        self.serving_ready = 0
        self.live_by_hash: collections.Counter[str] = collections.Counter()
        self.ready_by_hash: collections.Counter[str] = collections.Counter()
        self.events = 0
        self.relists = 0
        self.bounds: tuple[int, int] | None = None  # (min available, max pods) while armed
        self.seen_max = 0
        self.seen_min = 10**9
        self.seen_max_all = 0  # terminating pods included
        self.violations: list[str] = []
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.synced = asyncio.Event()

    def arm(self, min_available: int, max_pods: int) -> None:
        self.bounds = (min_available, max_pods)
        self.seen_max, self.seen_min, self.seen_max_all = 0, 10**9, 0
        self.violations = []

    def _account(self, name: str, sign: int) -> None:
        state = self.live.get(name)
        if state is None:
            return
        h, serving, ready = state
        self.live_by_hash[h] += sign
        if serving:
            self.serving += sign
            if ready:
                self.serving_ready += sign
                self.ready_by_hash[h] += sign

    def apply(self, etype: str, pod: Obj, now: float) -> None:
        md = pod["metadata"]
        name = md["name"]
        self._account(name, -1)
        if etype == "DELETED":
            self.live.pop(name, None)
        else:
            ready = is_ready(pod)
            self.live[name] = ((md.get("labels") or {}).get(HASH, ""),
                               not md.get("deletionTimestamp"), ready)
            self._account(name, +1)
            self.added.setdefault(name, now)
            if (pod.get("spec") or {}).get("nodeName"):
                self.bound.setdefault(name, now)
            if ready:
                self.ready.setdefault(name, now)
        self.events += 1
        if self.bounds is not None:
            lo, hi = self.bounds
            self.seen_max = max(self.seen_max, self.serving)
            self.seen_min = min(self.seen_min, self.serving_ready)
            self.seen_max_all = max(self.seen_max_all, len(self.live))
            if self.serving > hi or self.serving_ready < lo:
                self.violations.append(f"after {etype} {name}: {self.serving} pods "
                                       f"(max {hi}), {self.serving_ready} available (min {lo})")
        self.changed.set()

    async def run(self) -> None:
        rv = ""
        while True:
            try:
                if not rv:
                    lst = await self.client.list(PODS, NS)
                    rv = lst["metadata"]["resourceVersion"]
                    now = time.perf_counter()
                    seen = {p["metadata"]["name"] for p in lst["items"]}
                    for name in [n for n in self.live if n not in seen]:
                        self.apply("DELETED", {"metadata": {"name": name}}, now)
                    for p in lst["items"]:
                        self.apply("MODIFIED", p, now)
                    self.synced.set()
                async for etype, obj in self.client.watch(PODS, NS, resource_version=rv,
                                                          timeout_seconds=600):
                    rv = obj["metadata"].get("resourceVersion") or rv
                    if etype in ("ADDED", "MODIFIED", "DELETED"):
                        self.apply(etype, obj, time.perf_counter())
            except ApiError as e:
                if e.code != 410:
                    raise
                rv = ""
                self.relists += 1
            except ConnectionError:
                await asyncio.sleep(0.2)

    async def until(self, done: Any, timeout: float, what: str) -> float:
        """Wait for done() to hold after some event; the time it first held."""
        deadline = time.perf_counter() + timeout
        while not done():
            self.changed.clear()
            left = deadline - time.perf_counter()
            if left <= 0:
                raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}: "
                                   f"{self.serving} pods, {self.serving_ready} Ready, "
                                   f"by hash {dict(self.live_by_hash)}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 1.0))
        return time.perf_counter()


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = self.sample()
        self.last: dict[str, float] = {}

    def sample(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def lap(self) -> str:
        now = self.sample()
        self.last = {n: now[n] - self.start[n] for n in self.pids}
        text = ", ".join(f"{n} {v:.1f}" for n, v in self.last.items())
        self.start = now
        return f"CPU s: {text}"


WRITES = {"CREATE", "POST", "UPDATE", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}


async def write_counts(client: Client) -> collections.Counter[str]:
    """The API server's own count of write requests, by verb and resource."""
    text = await client.request("GET", "/metrics", params={})
    counts: collections.Counter[str] = collections.Counter()
    for line in str(text).splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, value = line[len("apiserver_request_total{"):].rsplit("}", 1)
        labels = dict(re.findall(r'(\w+)="([^"]*)"', labels_text))
        if labels.get("verb", "").upper() in WRITES:
            sub = labels.get("subresource", "")
            counts[f"{labels['verb'].lower()} {labels.get('resource', '')}"
                   f"{'/' + sub if sub else ''}"] += int(float(value))
    return counts


def writes_line(before: collections.Counter[str], after: collections.Counter[str],
                pods: int) -> str:
    delta = after - before
    parts = ", ".join(f"{k} {n}" for k, n in delta.most_common(8))
    return f"API writes: {sum(delta.values())} = {sum(delta.values()) / pods:.1f} per pod ({parts})"


async def events_by_reason(client: Client) -> collections.Counter[str]:
    """Event objects in the namespace by source and reason: most of the
    controllers' writes beyond the pods themselves are these."""
    counts: collections.Counter[str] = collections.Counter()
    for e in (await client.list_all(("v1", "Event"), NS))["items"]:
        source = (e.get("source") or {}).get("component") or e.get("reportingComponent") or "?"
        counts[f"{source} {e.get('reason', '?')}"] += 1
    return counts


def events_line(before: collections.Counter[str], after: collections.Counter[str]) -> str:
    delta = after - before
    return "Event objects written: " + ", ".join(f"{k} {n}" for k, n in delta.most_common(6))


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else math.inf


def span(times: list[float]) -> float:
    return max(times) - min(times) if times else 0.0


async def wait_server(kubeconfig: str, server: subprocess.Popen[bytes]) -> Client:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"timonel server exited with code {server.returncode}")
        if os.path.exists(kubeconfig):
            client = Client.from_kubeconfig(kubeconfig)
            try:
                await client.get(NAMESPACES, "", "default")
                return client
            except (ApiError, ConnectionError):
                await client.close()
        await asyncio.sleep(0.3)
    raise RuntimeError("timonel server did not answer within 90 s")


async def warm_up(client: Client, watch: PodTimes) -> None:
    """A 10-replica Deployment to Ready and away: the scheduler and controller
    manager processes have synced their informers once it is Ready."""
    await client.create(DEPLOYMENTS, deployment("warmup", 10), namespace=NS)
    await watch.until(lambda: watch.serving_ready >= 10, 120, "the warm-up Deployment")
    await client.delete(DEPLOYMENTS, NS, "warmup", propagation_policy="Foreground")
    await watch.until(lambda: not watch.live, 120, "the warm-up pods to go")
    for d in (watch.added, watch.bound, watch.ready):
        d.clear()


async def controller_phase(client: Client, watch: PodTimes, replicas: int,
                           cpu: CpuMeter) -> tuple[float, float, float, float]:
    """Returns creates/s at scale-up and during the rollout, and the API
    server's CPU seconds per pod in each."""
    w0, e0 = await write_counts(client), await events_by_reason(client)
    t0 = time.perf_counter()
    await client.create(DEPLOYMENTS, deployment("web", replicas), namespace=NS)
    t_ready = await watch.until(lambda: watch.serving_ready >= replicas, 300,
                                f"{replicas} Ready pods")
    added, bound, ready = (list(d.values()) for d in (watch.added, watch.bound, watch.ready))
    up_rate = rate(len(added), max(added) - t0)
    print(f"\nscale-up: Deployment of {replicas} created -> all {len(added)} pods created in "
          f"{max(added) - t0:.2f} s, bound in {max(bound) - t0:.2f} s, Ready in {t_ready - t0:.2f} s")
    print(f"  pods created/s (ReplicaSet controller): {up_rate:.0f} from the Deployment create, "
          f"{rate(len(added), span(added)):.0f} first-to-last create")
    print(f"  pods bound/s (scheduler): {rate(len(bound), max(bound) - t0):.0f} from the "
          f"Deployment create, {rate(len(bound), span(bound)):.0f} first-to-last bind; "
          f"Ready/s (fake nodes): {rate(len(ready), span(ready)):.0f} first-to-last")
    w1, e1 = await write_counts(client), await events_by_reason(client)
    print(f"  {writes_line(w0, w1, replicas)}")
    print(f"  {events_line(e0, e1)}")
    print(f"  {cpu.lap()}", flush=True)
    up_cpu = cpu.last["server"] / replicas

    old_hashes = {h for h, n in watch.live_by_hash.items() if n}
    surge = math.ceil(replicas * 0.25)
    unavailable = math.floor(replicas * 0.25)
    watch.arm(min_available=replicas - unavailable, max_pods=replicas + surge)
    before = set(watch.added)
    t0 = time.perf_counter()
    await client.patch(DEPLOYMENTS, NS, "web", {"spec": {"template": {"spec": {"containers": [{
        "name": "main", "image": "registry.local/app:2"}]}}}}, patch_type="strategic")

    def rolled() -> bool:
        old = sum(watch.live_by_hash[h] for h in old_hashes)
        new_ready = sum(n for h, n in watch.ready_by_hash.items() if h not in old_hashes)
        return old == 0 and new_ready >= replicas

    t_done = await watch.until(rolled, 600, "the rolling update")
    watch.bounds = None
    new = [t for n, t in watch.added.items() if n not in before]
    roll_rate = rate(len(new), max(new) - t0) if new else 0.0
    print(f"\nrolling update (maxSurge {surge}, maxUnavailable {unavailable}): template patched "
          f"-> all {replicas} pods replaced and Ready, old ones gone, in {t_done - t0:.2f} s")
    print(f"  new pods created/s: {roll_rate:.0f} from the patch to the last create")
    print(f"  invariants at each of the rollout's watch events: at most {replicas + surge} pods "
          f"(seen {watch.seen_max}), at least {replicas - unavailable} available "
          f"(seen {watch.seen_min}): "
          + ("held" if not watch.violations else
             f"VIOLATED {len(watch.violations)} times, first: {watch.violations[0]}")
          + f"; terminating pods not counted, with them at most {watch.seen_max_all} pods")
    print(f"  {writes_line(w1, await write_counts(client), replicas)}")
    print(f"  {events_line(e1, await events_by_reason(client))}")
    print(f"  {cpu.lap()}; watch events {watch.events}, relists {watch.relists}", flush=True)
    return up_rate, roll_rate, up_cpu, cpu.last["server"] / replicas


def start_server(timonel: str, data: str, port: int, etcd: EtcdProcess,
                 embedded: bool) -> subprocess.Popen[bytes]:
    alone = [] if embedded else ["--disable-scheduler", "--disable-controller-manager"]
    return subprocess.Popen([timonel, "server", "--data-dir", data, "--port", str(port),
                             "--etcd-endpoints", etcd.endpoint, *alone],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(30)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def run(args: argparse.Namespace) -> None:
    work = tempfile.mkdtemp(prefix="timonel-ctrlbench-")
    etcd = EtcdProcess(os.path.join(work, "etcd"), free_port(), free_port())
    etcd.start()
    assert etcd.proc is not None
    port = free_port()
    data = os.path.join(work, "server")
    kubeconfig = os.path.join(data, "admin.kubeconfig")
    timonel = os.path.join(os.path.dirname(sys.executable), "timonel")
    procs = [start_server(timonel, data, port, etcd, args.embedded)]
    try:
        client = await wait_server(kubeconfig, procs[0])
        async with client:
            pids = {"etcd": etcd.proc.pid, "server": procs[0].pid}
            if args.embedded:
                shape = ("etcd and `timonel server` (scheduler and controller manager in its "
                         "process, as users run it)")
            else:
                for cmd in ("scheduler", "controller-manager"):
                    procs.append(subprocess.Popen([timonel, cmd, "--kubeconfig", kubeconfig],
                                                  stdout=subprocess.DEVNULL,
                                                  stderr=subprocess.DEVNULL))
                pids.update(scheduler=procs[1].pid, controllers=procs[2].pid)
                shape = ("etcd, `timonel server --disable-scheduler --disable-controller-manager`"
                         ", `timonel scheduler` and `timonel controller-manager` as separate "
                         "processes")
            cpu = CpuMeter({**pids, "bench": os.getpid()})
            await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": NS}})
            print(f"controller benchmark: {args.replicas} replicas on {args.nodes} fake nodes; "
                  f"{os.cpu_count()} CPUs; {shape}; fake nodes and the pod watch in this one",
                  flush=True)
            print(f"load before: {load()}")
            watch = PodTimes(client)
            watch.task = asyncio.create_task(watch.run())
            nodes = FakeNodes(client, [f"node-{i}" for i in range(args.nodes)],
                              cpu="32", memory="128Gi", pods="110",
                              heartbeat_seconds=args.heartbeat, parallel=True)
            async with nodes:
                await asyncio.wait_for(watch.synced.wait(), 60)
                await warm_up(client, watch)
                cpu.lap()
                up_rate, roll_rate, up_cpu, roll_cpu = await controller_phase(
                    client, watch, args.replicas, cpu)
            watch.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch.task
        if args.embedded:
            # The same server on the same etcd and state, restarted without the
            # loops: in its process they would bind and count the raw pods too.
            stop(procs)
            procs = [start_server(timonel, data, port, etcd, False)]
            await (await wait_server(kubeconfig, procs[0])).close()
            cpu = CpuMeter({"etcd": etcd.proc.pid, "server": procs[0].pid, "bench": os.getpid()})
            how = "restarted on the same etcd and state without scheduler and controllers"
        else:
            stop(procs[1:])
            cpu.lap()
            how = "scheduler, controllers and fake nodes stopped"
        await raw_phase(args, data, port, kubeconfig, how, cpu, (up_rate, roll_rate),
                        (up_cpu, roll_cpu))
        print(f"load after: {load()}")
    finally:
        stop(procs)
        etcd.stop()
        shutil.rmtree(work, ignore_errors=True)


async def raw_phase(args: argparse.Namespace, data: str, port: int, kubeconfig: str, how: str,
                    cpu: CpuMeter, rates_ctl: tuple[float, float],
                    cpu_ctl: tuple[float, float]) -> None:
    token = ensure_admin_token(data)
    ca = os.path.join(data, "tls", "ca.crt")
    url = f"https://127.0.0.1:{port}"
    up_rate, roll_rate = rates_ctl
    print(f"\nraw pod creates through the same API server (bench/api_create.py; {how}; "
          f"{args.replicas} pods per level):")
    async with Client.from_kubeconfig(kubeconfig) as client:
        rates: dict[int, list[float]] = {c: [] for c in args.levels}
        # Rounds alternate the levels: load from elsewhere on the machine
        # comes and goes, and the best round is the one it disturbed least.
        for r in range(args.raw_rounds):
            for c in args.levels:
                ns = f"raw-{r}-{c}"
                await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": ns}})
                seconds, _ = await bench_api(url, token, ca, ns, args.replicas, c)
                rates[c].append(args.replicas / seconds)
        for c in args.levels:
            raw = max(rates[c])
            rounds = " ".join(f"{x:.0f}" for x in rates[c])
            print(f"  {c:>3} clients: best {raw:6.0f} creates/s (rounds: {rounds}) -> "
                  f"controller/raw: scale-up {up_rate / raw:.2f}, rollout {roll_rate / raw:.2f}")
    print(f"  {cpu.lap()}")
    raw_creates = sum(args.raw_rounds * (args.replicas + min(c, 8) * 4) for c in args.levels)
    raw_cpu = cpu.last["server"] / raw_creates
    up_cpu, roll_cpu = cpu_ctl
    what = ("server process (in the controller phases with scheduler and controllers)"
            if args.embedded else "API server")
    print(f"  {what} CPU per pod: raw create {raw_cpu * 1e3:.2f} ms; scale-up "
          f"{up_cpu * 1e3:.2f} ms ({up_cpu / raw_cpu:.1f}x), rollout {roll_cpu * 1e3:.2f} ms "
          f"({roll_cpu / raw_cpu:.1f}x) (CPU time: less distorted by the machine's load "
          "than rates)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicas", type=int, default=1000)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--concurrency", default="32,100",
                    help="client concurrencies of the raw create measurement (the controller "
                         "manager's client pools 100 connections; its create batches double "
                         "up to 256)")
    ap.add_argument("--embedded", action="store_true",
                    help="scheduler and controller manager inside `timonel server`, as users "
                         "run it (default: separate processes)")
    ap.add_argument("--raw-rounds", type=int, default=2,
                    help="rounds of the raw create measurement (the best is compared)")
    ap.add_argument("--heartbeat", type=float, default=10.0,
                    help="fake node Lease renewal period in seconds (kubelet's default is 10)")
    args = ap.parse_args()
    args.levels = [int(x) for x in args.concurrency.split(",")]
    if args.replicas < 10 or args.nodes < 1:
        ap.error("--replicas must be at least 10 and --nodes at least 1")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
