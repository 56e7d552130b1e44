"""1,000 client watches cost one etcd watch: the watch cache fans out."""

from __future__ import annotations

import asyncio
import json
import ssl

import aiohttp
import requests

from tests.integration.conftest import ApiServer

WATCHERS = 1000


def etcd_watchers(endpoint: str) -> int:
    text = requests.get(f"{endpoint}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith("etcd_debugging_mvcc_watcher_total "):
            return int(float(line.split()[1]))
    raise AssertionError("etcd does not report etcd_debugging_mvcc_watcher_total")


async def fan_out(server: ApiServer, namespace: str) -> tuple[int, int, int]:
    ctx = ssl.create_default_context(cafile=server.ca_file)
    headers = {"Authorization": f"Bearer {server.token}"}
    # Secrets: a resource no other test watches, so its cache starts here.
    base = f"{server.url}/api/v1/namespaces/{namespace}/secrets"
    conn = aiohttp.TCPConnector(ssl=ctx, limit=0)
    async with aiohttp.ClientSession(connector=conn, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=120)) as s:
        async with s.get(base) as r:
            rv = (await r.json())["metadata"]["resourceVersion"]
        before = etcd_watchers(server.etcd_endpoint)
        responses = []
        sem = asyncio.Semaphore(50)

        async def open_one() -> aiohttp.ClientResponse:
            async with sem:
                return await s.get(base, params={"watch": "true", "resourceVersion": rv,
                                                 "timeoutSeconds": "60"})

        responses = await asyncio.gather(*(open_one() for _ in range(WATCHERS)))
        assert all(r.status == 200 for r in responses)
        during = etcd_watchers(server.etcd_endpoint)
        async with s.post(base, json={"apiVersion": "v1", "kind": "Secret",
                                      "metadata": {"name": "fan"}, "stringData": {"k": "v"}}) as r:
            assert r.status == 201, await r.text()

        async def first_event(resp: aiohttp.ClientResponse) -> str:
            line = await asyncio.wait_for(resp.content.readline(), 60)
            resp.close()
            return str(json.loads(line)["object"]["metadata"]["name"])

        names = await asyncio.gather(*(first_event(r) for r in responses))
        return before, during, sum(1 for n in names if n == "fan")


def test_thousand_watchers_one_etcd_watch(api_server: ApiServer, namespace: str) -> None:
    before, during, received = asyncio.run(fan_out(api_server, namespace))
    assert received == WATCHERS
    # The secrets cache adds one etcd watcher, whatever the number of clients.
    assert during - before <= 1, (before, during)
