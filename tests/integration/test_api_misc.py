"""Health, version, metrics, OpenAPI, deletecollection, eviction, and the
streaming subresources that wait for node agents."""

from __future__ import annotations

import requests

from tests.integration.conftest import ApiServer


def test_public_endpoints(api_server: ApiServer) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        r = requests.get(api_server.url + path, verify=api_server.ca_file)
        assert r.status_code == 200 and r.text == "ok"
    v = requests.get(api_server.url + "/version", verify=api_server.ca_file).json()
    assert v["major"] == "1" and v["minor"] == "37" and v["gitVersion"].startswith("v1.37.0")


def test_metrics_count_requests_and_watches(api_server: ApiServer, http: requests.Session,
                                           namespace: str) -> None:
    http.get(f"{api_server.url}/api/v1/namespaces/{namespace}/configmaps")
    text = http.get(f"{api_server.url}/metrics").text
    assert 'apiserver_request_total{' in text and 'resource="configmaps"' in text
    assert "apiserver_request_duration_seconds_bucket" in text
    assert "etcd_request_duration_seconds_bucket" in text
    assert "apiserver_longrunning_requests" in text


def test_openapi_index_and_documents(api_server: ApiServer, http: requests.Session) -> None:
    index = http.get(f"{api_server.url}/openapi/v3").json()
    url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    r = http.get(api_server.url + url)
    assert r.status_code == 200 and r.headers["ETag"]
    doc = r.json()
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert any(p.get("name") == "fieldValidation" for p in patch.get("parameters", []) +
               doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"].get("parameters", []))
    assert http.get(f"{api_server.url}/openapi/v3/apis/nope/v1").status_code == 404


def test_delete_collection_with_selector(api_server: ApiServer, http: requests.Session,
                                         namespace: str) -> None:
    base = f"{api_server.url}/api/v1/namespaces/{namespace}/configmaps"
    for name, tier in (("a", "x"), ("b", "x"), ("c", "y")):
        http.post(base, json={"metadata": {"name": name, "labels": {"tier": tier}}, "data": {}})
    r = http.delete(base, params={"labelSelector": "tier=x"})
    assert r.status_code == 200, r.text
    assert sorted(i["metadata"]["name"] for i in r.json()["items"]) == ["a", "b"]
    assert [i["metadata"]["name"] for i in http.get(base).json()["items"]] == ["c"]


def test_eviction_deletes_pod(api_server: ApiServer, http: requests.Session, namespace: str) -> None:
    base = f"{api_server.url}/api/v1/namespaces/{namespace}/pods"
    http.post(base, json={"metadata": {"name": "ev"}, "spec": {"containers": [{"name": "c", "image": "x"}]}})
    r = http.post(f"{base}/ev/eviction", json={"apiVersion": "policy/v1", "kind": "Eviction",
                                               "metadata": {"name": "ev", "namespace": namespace}})
    assert r.status_code == 201, r.text
    assert http.get(f"{base}/ev").status_code == 404


def test_logs_and_exec_need_a_node_agent(api_server: ApiServer, http: requests.Session,
                                         namespace: str) -> None:
    base = f"{api_server.url}/api/v1/namespaces/{namespace}/pods"
    http.post(base, json={"metadata": {"name": "l"}, "spec": {"containers": [{"name": "c", "image": "x"}]}})
    # Not scheduled yet: an empty log (as upstream), and nothing to exec in.
    r = http.get(f"{base}/l/log")
    assert r.status_code == 200 and r.text == ""
    r = http.get(f"{base}/l/exec", params={"command": "ls", "stdout": "true"})
    assert r.status_code == 400 and r.json()["message"] == "pod l does not have a host assigned"
    # On a node that has no agent (no Node object): 503, saying so.
    http.post(base, json={"metadata": {"name": "g"}, "spec": {"nodeName": "ghost",
                                                              "containers": [{"name": "c", "image": "x"}]}})
    for sub, params in (("log", {"container": "c"}), ("exec", {"command": "ls", "stdout": "true"})):
        r = http.get(f"{base}/g/{sub}", params=params)
        assert r.status_code == 503, r.text
        assert r.json()["reason"] == "ServiceUnavailable" and '"ghost"' in r.json()["message"]
    assert http.get(f"{base}/missing/log").status_code == 404


def test_namespace_deletion_is_marked_terminating(api_server: ApiServer, http: requests.Session) -> None:
    http.post(f"{api_server.url}/api/v1/namespaces", json={"metadata": {"name": "to-delete"}})
    r = http.delete(f"{api_server.url}/api/v1/namespaces/to-delete")
    assert r.status_code == 202
    ns = http.get(f"{api_server.url}/api/v1/namespaces/to-delete").json()
    assert ns["status"]["phase"] == "Terminating" and ns["metadata"]["deletionTimestamp"]
    # Nothing new may be created in it.
    r = http.post(f"{api_server.url}/api/v1/namespaces/to-delete/configmaps",
                  json={"metadata": {"name": "x"}, "data": {}})
    assert r.status_code == 403
    # The namespace controller finalizes it; system namespaces cannot be deleted.
    r = http.put(f"{api_server.url}/api/v1/namespaces/to-delete/finalize",
                 json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "to-delete"},
                       "spec": {"finalizers": []}})
    assert r.status_code == 200, r.text
    assert http.get(f"{api_server.url}/api/v1/namespaces/to-delete").status_code == 404
    assert http.delete(f"{api_server.url}/api/v1/namespaces/kube-system").status_code == 403


def test_lists_larger_than_a_grpc_message(api_server: ApiServer, http: requests.Session,
                                          namespace: str) -> None:
    """More than gRPC's default 4 MiB of objects: list and deletecollection page
    through etcd instead of asking for one huge range."""
    import asyncio

    import aiohttp

    base = f"{api_server.url}/api/v1/namespaces/{namespace}/configmaps"
    payload = "x" * 6000

    async def create_all() -> None:
        import ssl

        ctx = ssl.create_default_context(cafile=api_server.ca_file)
        headers = {"Authorization": f"Bearer {api_server.token}"}
        async with aiohttp.ClientSession(headers=headers,
                                         connector=aiohttp.TCPConnector(ssl=ctx, limit=16)) as s:
            async def one(i: int) -> None:
                async with s.post(base, json={"metadata": {"name": f"big-{i}"},
                                              "data": {"v": payload}}) as r:
                    assert r.status == 201, await r.text()

            await asyncio.gather(*(one(i) for i in range(900)))

    asyncio.run(create_all())
    r = http.get(base)
    assert r.status_code == 200 and len(r.json()["items"]) == 900
    r = http.delete(base)
    assert r.status_code == 200, r.text
    assert http.get(base).json()["items"] == []
