"""Scheduler throughput, modelled on Kubernetes' scheduler_perf.

    .venv/bin/python bench/scheduler_perf.py [--quick] [--skip-memory] [--skip-e2e]
        [--e2e-nodes 100] [--e2e-pods 1000]

(a) In memory, no API server: the scheduling core on a snapshot, exactly as
    the scheduler runs it (filter, score, assume). Workloads as upstream's
    SchedulingBasic (nodes 4 cpu / 32Gi / 110 pods; pods 100m / 500Mi) at
    500, 1000 and 5000 nodes, TopologySpreading (zone spread, maxSkew 5,
    DoNotSchedule) and NodeAffinity (required zone In [zone1, zone2]).
    Prints pods/s and attempt latency p50/p99 against the issue's targets.

(b) End to end through `timonel server` and etcd with fake nodes (Node
    objects only, no agents). In the same run: the API server's raw
    binding-write throughput (pre-created pods bound by plain clients, 64 at
    a time), then the scheduler binding the same number of pre-created
    pods, then pods created while the scheduler runs (create-to-bound
    latency). Prints the ratio scheduler/binding-limit and how long the
    scheduling decisions themselves took per pod.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from timonel.api.client import Client, Informer
from timonel.api.storage.etcd_process import EtcdProcess, free_port
from timonel.scheduler import Scheduler, SchedulerConfiguration, algorithm
from timonel.scheduler.cache import Cache
from timonel.scheduler.config import default_profile
from timonel.scheduler.sampling import RoundRobin

ZONE = "topology.kubernetes.io/zone"


def node(i: int, zone: str = "") -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": f"node-{i}", "kubernetes.io/os": "linux"}
    if zone:
        labels[ZONE] = zone
    cap = {"cpu": "4", "memory": "32Gi", "pods": "110"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": f"node-{i}", "labels": labels},
            "spec": {}, "status": {"capacity": cap, "allocatable": cap,
                                   "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(name: str, extra: dict[str, Any] | None = None, labels: dict[str, str] | None = None,
        scheduler: str = "default-scheduler") -> dict[str, Any]:
    res = {"cpu": "100m", "memory": "500Mi"}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "bench", "uid": f"uid-{name}",
                         "labels": labels or {}},
            "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
                                     "ports": [{"containerPort": 80}],
                                     "resources": {"requests": res, "limits": res}}],
                     "schedulerName": scheduler, "priority": 0, **(extra or {})}}


SPREAD = {"topologySpreadConstraints": [{
    "maxSkew": 5, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
    "labelSelector": {"matchLabels": {"color": "blue"}}}]}
AFFINITY = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
    "nodeSelectorTerms": [{"matchExpressions": [
        {"key": ZONE, "operator": "In", "values": ["zone1", "zone2"]}]}]}}}}


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else 0.0


# -- (a) in memory ---------------------------------------------------------------

def workloads(quick: bool) -> list[tuple[str, int, int, int, Callable[[int], dict[str, Any]],
                                         Callable[[int], dict[str, Any]], float]]:
    scale = 10 if quick else 1
    zones3 = lambda i: node(i, f"zone{i % 3}")  # noqa: E731
    zone1 = lambda i: node(i, "zone1")  # noqa: E731
    basic = lambda i: pod(f"p{i}")  # noqa: E731
    spread = lambda i: pod(f"s{i}", SPREAD, {"color": "blue"})  # noqa: E731
    affine = lambda i: pod(f"a{i}", AFFINITY)  # noqa: E731
    return [
        # name, nodes, existing pods, measured pods, node, pod, target pods/s
        ("SchedulingBasic/500Nodes", 500, 500, 1000 // scale, node, basic, 0),
        ("SchedulingBasic/1000Nodes", 1000, 1000, 2000 // scale, node, basic, 0),
        ("SchedulingBasic/5000Nodes", 5000, 1000, 10000 // scale, node, basic, 1000),
        ("TopologySpreading/5000Nodes", 5000, 1000, 5000 // scale, zones3, spread, 460),
        ("NodeAffinity/5000Nodes", 5000, 1000, 5000 // scale, zone1, affine, 220),
    ]


def run_in_memory(quick: bool) -> None:
    print("(a) in memory: the scheduling core on a snapshot (filter, score, assume), no API server")
    print("  pods/CPU-s: pods per second of this process's CPU time, which load from other "
          "processes on the machine does not distort")
    print(f"{'workload':<28} {'nodes':>5} {'pods':>6} | {'pods/s':>7} {'pods/CPU-s':>10} "
          f"{'p50 ms':>7} {'p99 ms':>7} | {'target':>6}")
    for name, n_nodes, n_init, n_measured, mk_node, mk_pod, target in workloads(quick):
        cache = Cache()
        for i in range(n_nodes):
            cache.set_node(mk_node(i))
        profile, rr, rng = default_profile(), RoundRobin(), random.Random(1)
        for i in range(n_init):
            p = cache.pod_info(pod(f"init{i}"))
            cache.assume(p, algorithm.schedule(profile, cache.snapshot, p, rr, rng).node)
        gc.collect()
        lat: list[float] = []
        c0 = time.process_time()
        t0 = time.perf_counter()
        for i in range(n_measured):
            t = time.perf_counter()
            p = cache.pod_info(mk_pod(i))
            cache.assume(p, algorithm.schedule(profile, cache.snapshot, p, rr, rng).node)
            lat.append(time.perf_counter() - t)
        rate = n_measured / (time.perf_counter() - t0)
        cpu_rate = n_measured / max(1e-9, time.process_time() - c0)
        verdict = "" if not target else ("ok" if rate >= target else "MISSED")
        print(f"{name:<28} {n_nodes:>5} {n_measured:>6} | {rate:>7.0f} {cpu_rate:>10.0f} "
              f"{percentile(lat, 50) * 1e3:>7.3f} {percentile(lat, 99) * 1e3:>7.3f} | "
              f"{target or '':>6} {verdict}", flush=True)


# -- (b) end to end ----------------------------------------------------------------

async def create_all(client: Client, objs: list[dict[str, Any]], concurrency: int = 32,
                     on_done: Callable[[str], None] | None = None) -> None:
    it = iter(objs)

    async def worker() -> None:
        for o in it:
            await client.create(("v1", o["kind"]), o, namespace=o["metadata"].get("namespace", ""))
            if on_done is not None:
                on_done(o["metadata"]["name"])

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def bare(p: dict[str, Any]) -> dict[str, Any]:
    p = {**p, "metadata": {k: v for k, v in p["metadata"].items() if k != "uid"}}
    return p


async def clear(client: Client) -> None:
    """Remove the measured pods, so every round starts from empty nodes."""
    names = [p["metadata"]["name"] for p in (await client.list_all(("v1", "Pod"), "bench"))["items"]]
    it = iter(names)

    async def worker() -> None:
        for n in it:
            with contextlib.suppress(Exception):
                await client.delete(("v1", "Pod"), "bench", n, grace_period_seconds=0)

    # One by one: a deletecollection of thousands of pods is one oversized etcd reply.
    await asyncio.gather(*(worker() for _ in range(32)))


async def raw_binding_rate(client: Client, n_pods: int, n_nodes: int, prefix: str,
                           watched: bool = False) -> float:
    """Binds/s of plain clients; `watched`: while one informer watches all
    pods, as any scheduler must (the server then also streams every bind)."""
    pods = [bare(pod(f"{prefix}{i}", scheduler="nobody")) for i in range(n_pods)]
    await create_all(client, pods)
    informer = None
    if watched:
        informer = Informer(client, ("v1", "Pod"))
        informer.start()
        await informer.wait_synced(60)
    it = iter(range(n_pods))

    async def worker() -> None:
        for i in it:
            await client.post_subresource(("v1", "Pod"), "bench", f"{prefix}{i}", "binding", {
                "apiVersion": "v1", "kind": "Binding", "metadata": {"name": f"{prefix}{i}"},
                "target": {"kind": "Node", "name": f"node-{i % n_nodes}"}})

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(64)))
    rate = n_pods / (time.perf_counter() - t0)
    if informer is not None:
        await informer.stop()
    return rate


async def paced_create(client: Client, objs: list[dict[str, Any]], qps: float,
                       on_done: Callable[[str], None]) -> None:
    async def one(o: dict[str, Any]) -> None:
        await client.create(("v1", "Pod"), o, namespace="bench")
        on_done(o["metadata"]["name"])

    t0 = time.perf_counter()
    tasks = []
    for i, o in enumerate(objs):
        delay = t0 + i / qps - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(o)))
    await asyncio.gather(*tasks)


async def scheduled(client: Client, n_pods: int, prefix: str, precreate: bool,
                    qps: float = 0.0) -> tuple[float, list[float], list[float]]:
    """(pods/s, create-to-bound latencies, attempt durations)."""
    config = SchedulerConfiguration()
    sched = Scheduler(client, config, seed=1)
    sched.attempt_samples = []
    created: dict[str, float] = {}
    bound: dict[str, float] = {}
    done = asyncio.Event()

    def on_update(old: dict[str, Any], new: dict[str, Any]) -> None:
        # Bound as the watch reports it (also covers binds retried after a timeout).
        name = new["metadata"]["name"]
        if name.startswith(prefix) and new["spec"].get("nodeName") and name not in bound:
            bound[name] = time.perf_counter()
            if len(bound) >= n_pods:
                done.set()

    sched.pods.add_handler(on_update=on_update)
    pods = [bare(pod(f"{prefix}{i}")) for i in range(n_pods)]
    if precreate:
        await create_all(client, pods)
    sent: collections.Counter[str] = collections.Counter()
    plain_request = client.request

    async def counting(method: str, path: str, **kw: Any) -> Any:
        sent[f"{method} {path.rsplit('/', 1)[-1] if 'binding' in path else path.split('/')[-1]}"] += 1
        return await plain_request(method, path, **kw)

    client.request = counting  # type: ignore[method-assign]
    task = asyncio.create_task(sched.run())
    await sched.informers.wait_synced(120)
    t0 = time.perf_counter()
    c0 = time.process_time()
    if not precreate:
        def mark(n: str) -> None:
            created[n] = time.perf_counter()
        if qps:
            await paced_create(client, pods, qps, mark)
        else:
            await create_all(client, pods, on_done=mark)
    try:
        await asyncio.wait_for(done.wait(), 600)
    except TimeoutError:
        raise RuntimeError(f"only {len(bound)} of {n_pods} pods bound in 600 s; queue: "
                           f"{sched.queue.counts()}") from None
    elapsed = max(bound.values()) - t0
    cpu = time.process_time() - c0
    if precreate:
        print(f"    (this process: {cpu / (time.perf_counter() - t0):.0%} of a CPU while binding, "
              f"{cpu / n_pods * 1e3:.2f} ms CPU per pod; requests {dict(sent)})")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    client.request = plain_request  # type: ignore[method-assign]
    lat = [bound[n] - created[n] for n in created if n in bound]
    return n_pods / elapsed, lat, sched.attempt_samples


async def run_e2e(n_nodes: int, n_pods: int, qps: float, rounds: int = 2) -> None:
    work = tempfile.mkdtemp(prefix="timonel-schedbench-")
    etcd = EtcdProcess(os.path.join(work, "etcd"), free_port(), free_port())
    etcd.start()
    port = free_port()
    timonel = os.path.join(os.path.dirname(sys.executable), "timonel")
    # Only the scheduler measured here may schedule: the server's own is off.
    server = subprocess.Popen([timonel, "server", "--data-dir", os.path.join(work, "server"),
                               "--port", str(port), "--etcd-endpoints", etcd.endpoint,
                               "--disable-scheduler", "--disable-controller-manager"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kubeconfig = os.path.join(work, "server", "admin.kubeconfig")
    try:
        client = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if os.path.exists(kubeconfig):
                try:
                    client = Client.from_kubeconfig(kubeconfig)
                    await client.get(("v1", "Namespace"), "", "default")
                    break
                except Exception:
                    if client is not None:
                        await client.close()
                    client = None
            await asyncio.sleep(0.3)
        if client is None:
            raise RuntimeError("timonel server did not start")
        async with client:
            await client.create(("v1", "Namespace"), {"apiVersion": "v1", "kind": "Namespace",
                                                      "metadata": {"name": "bench"}})
            await create_all(client, [node(i) for i in range(n_nodes)])
            print(f"\n(b) end to end: timonel server + etcd, {n_nodes} fake nodes, {n_pods} pods "
                  f"per measurement, {os.cpu_count()} CPUs")
            # Alternate the two measurements and keep the best of each: other
            # load on the machine comes and goes, and the best run is the one
            # it disturbed least.
            raws, watched, rates, decisions = [], [], [], []
            for r in range(rounds):
                raws.append(await raw_binding_rate(client, n_pods, n_nodes, f"raw{r}-"))
                await clear(client)
                watched.append(await raw_binding_rate(client, n_pods, n_nodes, f"watched{r}-",
                                                      watched=True))
                await clear(client)
                rate, _, attempts = await scheduled(client, n_pods, f"batch{r}-", precreate=True)
                rates.append(rate)
                decisions.extend(attempts)
                await clear(client)
                print(f"  round {r + 1}: binding writes by 64 clients {raws[-1]:5.0f}/s, the same "
                      f"with a pod watch open {watched[-1]:5.0f}/s; scheduler {rate:5.0f} pods/s",
                      flush=True)
            raw, w, rate = max(raws), max(watched), max(rates)
            print(f"  best of {rounds}: scheduler {rate:.0f} pods/s = {rate / raw:.0%} of the raw "
                  f"binding limit ({raw:.0f}/s), {rate / w:.0%} of the limit with a pod watch "
                  f"open ({w:.0f}/s)")
            print(f"  scheduling decisions (filter+score+assume) per pod: mean "
                  f"{statistics.mean(decisions) * 1e3:.3f} ms, p50 "
                  f"{percentile(decisions, 50) * 1e3:.3f} ms, p99 "
                  f"{percentile(decisions, 99) * 1e3:.3f} ms (= {1 / statistics.mean(decisions):.0f}"
                  " pods/s of scheduler CPU)")
            rate, lat, _ = await scheduled(client, n_pods, "live-", precreate=False)
            print(f"  pods created while scheduling (32 creators):              {rate:7.0f} pods/s"
                  f"  create->bound p50 {percentile(lat, 50) * 1e3:.1f} ms, "
                  f"p99 {percentile(lat, 99) * 1e3:.1f} ms (API server saturated by "
                  "creates and binds)")
            await clear(client)
            rate, lat, _ = await scheduled(client, n_pods // 2, "paced-", False, qps)
            print(f"  pods created at {qps:.0f}/s while scheduling:                  "
                  f"{rate:7.0f} pods/s  create->bound p50 {percentile(lat, 50) * 1e3:.1f} ms, "
                  f"p99 {percentile(lat, 99) * 1e3:.1f} ms")
    finally:
        server.terminate()
        server.wait(20)
        etcd.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a tenth of the measured pods")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--e2e-nodes", type=int, default=100)
    ap.add_argument("--e2e-pods", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2,
                    help="alternating binding-limit/scheduler rounds (best of each is compared)")
    ap.add_argument("--live-qps", type=float, default=100.0,
                    help="create rate for the create-to-bound latency measurement")
    args = ap.parse_args()
    if not args.skip_memory:
        run_in_memory(args.quick)
    if not args.skip_e2e:
        asyncio.run(run_e2e(args.e2e_nodes, args.e2e_pods, args.live_qps, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
