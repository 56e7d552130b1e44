"""Pod creates through the API server vs. the same JSON put straight into etcd.

    .venv/bin/python bench/api_create.py [--pods 2000] [--concurrency 1,8,32]

Starts one etcd and one `timonel server` on it, then for each concurrency
level creates pods through the API (HTTPS, bearer token, validation,
admission, compare-and-swap create) and, in the same run, puts the same
JSON into the same etcd with the same compare-and-swap transaction from the
same kind of async client. Prints creates/s, p50/p99 latency and the ratio
API/raw-etcd.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from timonel.api.storage.etcd import Store
from timonel.api.storage.etcd_process import EtcdProcess, free_port


def pod(name: str) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "web"}},
        "spec": {"containers": [{
            "name": "main", "image": "registry.local/app:1.2.3",
            "ports": [{"containerPort": 8080}],
            "env": [{"name": "MODE", "value": "bench"}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                          "limits": {"cpu": "200m", "memory": "128Mi"}},
        }]},
    }


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def run_workers(n: int, concurrency: int, one: callable) -> tuple[float, list[float]]:  # type: ignore[valid-type]
    latencies: list[float] = []
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            t0 = time.perf_counter()
            await one(i)
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0, latencies


async def bench_api(url: str, token: str, ca: str, ns: str, n: int, c: int) -> tuple[float, list[float]]:
    ctx = ssl.create_default_context(cafile=ca)
    conn = aiohttp.TCPConnector(ssl=ctx, limit=c)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=conn, headers=headers) as session:
        bodies = [json.dumps(pod(f"api-c{c}-{i}")).encode() for i in range(n)]

        async def one(i: int) -> None:
            async with session.post(f"{url}/api/v1/namespaces/{ns}/pods", data=bodies[i]) as r:
                await r.read()
                if r.status != 201:
                    raise RuntimeError(f"create failed: {r.status} {await r.text()}")

        await one_warmup(session, url, ns, c)
        return await run_workers(n, c, one)


async def one_warmup(session: aiohttp.ClientSession, url: str, ns: str, c: int) -> None:
    async def w(i: int) -> None:
        async with session.post(f"{url}/api/v1/namespaces/{ns}/pods",
                                data=json.dumps(pod(f"warm-c{c}-{i}")).encode()) as r:
            await r.read()

    await asyncio.gather(*(w(i) for i in range(min(c, 8) * 4)))


async def bench_etcd(endpoint: str, ns: str, n: int, c: int) -> tuple[float, list[float]]:
    store = Store(endpoint)
    await store.connect()
    try:
        # What the server stores: the defaulted object JSON.
        template = pod("x")
        async def one(i: int) -> None:
            obj = dict(template)
            obj["metadata"] = dict(template["metadata"], name=f"raw-c{c}-{i}", namespace=ns)
            await store.create(f"/registry/pods/{ns}/raw-c{c}-{i}",
                               json.dumps(obj, separators=(",", ":")).encode())

        return await run_workers(n, c, one)
    finally:
        await store.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=2000, help="creates per measurement")
    ap.add_argument("--concurrency", default="1,8,32")
    args = ap.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]

    work = tempfile.mkdtemp(prefix="timonel-bench-")
    etcd = EtcdProcess(os.path.join(work, "etcd"), free_port(), free_port())
    etcd.start()
    port = free_port()
    timonel = os.path.join(os.path.dirname(sys.executable), "timonel")
    server = subprocess.Popen([timonel, "server", "--data-dir", os.path.join(work, "server"),
                               "--port", str(port), "--etcd-endpoints", etcd.endpoint,
                               # The API server alone: a scheduler would answer
                               # every unschedulable pod with writes of its own.
                               "--disable-scheduler", "--disable-controller-manager"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        kubeconfig = os.path.join(work, "server", "admin.kubeconfig")
        ca = os.path.join(work, "server", "tls", "ca.crt")
        url = f"https://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        import requests

        while time.monotonic() < deadline:
            try:
                if os.path.exists(kubeconfig) and requests.get(f"{url}/readyz", verify=ca, timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        from timonel.api.auth.tokens import ensure_admin_token

        token = ensure_admin_token(os.path.join(work, "server"))
        ns = "bench"
        requests.post(f"{url}/api/v1/namespaces", verify=ca,
                      headers={"Authorization": f"Bearer {token}"},
                      json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

        print(f"pod creates: {args.pods} per run; etcd {etcd.endpoint}; server {url}; "
              f"{os.cpu_count()} CPUs")
        print(f"{'clients':>7} | {'API creates/s':>13} {'p50 ms':>7} {'p99 ms':>7} | "
              f"{'etcd puts/s':>11} {'p50 ms':>7} {'p99 ms':>7} | {'API/etcd':>8}")
        for c in levels:
            api_s, api_lat = asyncio.run(bench_api(url, token, ca, ns, args.pods, c))
            raw_s, raw_lat = asyncio.run(bench_etcd(etcd.endpoint, ns, args.pods, c))
            api_rate, raw_rate = args.pods / api_s, args.pods / raw_s
            print(f"{c:>7} | {api_rate:>13.0f} {statistics.median(api_lat) * 1000:>7.2f} "
                  f"{percentile(api_lat, 99) * 1000:>7.2f} | {raw_rate:>11.0f} "
                  f"{statistics.median(raw_lat) * 1000:>7.2f} {percentile(raw_lat, 99) * 1000:>7.2f} | "
                  f"{api_rate / raw_rate:>8.2f}", flush=True)
    finally:
        server.terminate()
        server.wait(20)
        etcd.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
