"""Malformed and hostile requests: always a 4xx Status, never a 5xx, never a
partial write."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import ApiServer
from timonel.api.storage.etcd import Store

SETTINGS = settings(max_examples=120, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
field_names = st.sampled_from(["metadata", "spec", "status", "kind", "apiVersion", "data", "containers",
                               "name", "namespace", "labels", "image", "replicas", "selector", "finalizers",
                               "resourceVersion", "uid", "generateName", "template", "ports"])
objectish = st.recursive(
    json_values,
    lambda children: st.dictionaries(field_names | st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


def count_keys(endpoint: str) -> int:
    async def run() -> int:
        store = Store(endpoint)
        await store.connect()
        try:
            return await store.count("/registry/")
        finally:
            await store.close()

    return asyncio.run(run())


def assert_client_error(r: requests.Response, allowed_ok: tuple[int, ...] = ()) -> None:
    if r.status_code in allowed_ok:
        return
    if r.status_code == 504:
        # Upstream's answer to a resourceVersion from the future, after
        # waiting for the watch cache: 504 Timeout with Retry-After.
        assert r.json()["reason"] == "Timeout" and "Too large resource version" in r.json()["message"]
        return
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    body = r.json()
    assert body["kind"] == "Status" and body["status"] == "Failure" and body["code"] == r.status_code
    assert "Traceback" not in r.text


@pytest.fixture(scope="module")
def target(api_server: ApiServer) -> tuple[ApiServer, requests.Session, str]:
    http = api_server.session()
    ns = "hostile"
    http.post(f"{api_server.url}/api/v1/namespaces",
              json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    return api_server, http, ns


@SETTINGS
@given(body=objectish)
def test_random_pod_bodies(target: tuple[ApiServer, requests.Session, str], body: object) -> None:
    server, http, ns = target
    before = count_keys(server.etcd_endpoint)
    r = http.post(f"{server.url}/api/v1/namespaces/{ns}/pods", data=json.dumps(body),
                  headers={"Content-Type": "application/json"})
    if r.status_code == 201:  # a random body that happens to be a valid pod
        http.delete(f"{server.url}/api/v1/namespaces/{ns}/pods/{r.json()['metadata']['name']}")
        return
    assert_client_error(r)
    assert count_keys(server.etcd_endpoint) == before


@SETTINGS
@given(raw=st.binary(max_size=300))
def test_random_bytes(target: tuple[ApiServer, requests.Session, str], raw: bytes) -> None:
    server, http, ns = target
    for method, path, ctype in (
        ("POST", f"/api/v1/namespaces/{ns}/configmaps", "application/json"),
        ("PUT", f"/api/v1/namespaces/{ns}/configmaps/x", "application/json"),
        ("PATCH", f"/api/v1/namespaces/{ns}/configmaps/x", "application/strategic-merge-patch+json"),
        ("PATCH", f"/api/v1/namespaces/{ns}/configmaps/x", "application/apply-patch+yaml"),
        ("PATCH", f"/api/v1/namespaces/{ns}/configmaps/x", "application/json-patch+json"),
    ):
        r = http.request(method, server.url + path, data=raw, headers={"Content-Type": ctype},
                         params={"fieldManager": "fuzz"})
        assert_client_error(r, allowed_ok=(200, 201))


@SETTINGS
@given(segments=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=7),
       method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]))
def test_random_paths(target: tuple[ApiServer, requests.Session, str], segments: list[str],
                      method: str) -> None:
    server, http, _ = target
    path = "/" + "/".join(quote(s, safe="") for s in segments)
    for prefix in ("/api/v1", "/apis/apps/v1", ""):
        r = http.request(method, server.url + prefix + path, data=b"{}",
                         headers={"Content-Type": "application/json"})
        assert r.status_code < 500, (method, prefix + path, r.status_code, r.text[:300])


@SETTINGS
@given(params=st.dictionaries(
    st.sampled_from(["labelSelector", "fieldSelector", "limit", "continue", "resourceVersion",
                     "resourceVersionMatch", "timeoutSeconds", "watch", "allowWatchBookmarks",
                     "dryRun", "fieldValidation", "propagationPolicy", "gracePeriodSeconds",
                     "sendInitialEvents", "includeObject"]),
    st.text(max_size=20), max_size=4))
def test_random_queries(target: tuple[ApiServer, requests.Session, str], params: dict[str, str]) -> None:
    server, http, ns = target
    if params.get("watch", "").lower() in ("true", "1"):
        params["timeoutSeconds"] = "1"
    r = http.get(f"{server.url}/api/v1/namespaces/{ns}/configmaps", params=params, timeout=30)
    assert_client_error(r, allowed_ok=(200,))
    r = http.delete(f"{server.url}/api/v1/namespaces/{ns}/configmaps/none", params=params)
    assert_client_error(r)
