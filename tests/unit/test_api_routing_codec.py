"""Routing of Kubernetes paths, content negotiation, continue tokens, discovery."""

from __future__ import annotations

import pytest

from timonel.api import resources
from timonel.api.errors import ApiError
from timonel.api.server import codec, discovery
from timonel.api.server.objects import decode_continue, encode_continue, key_of, prefix_of
from timonel.api.server.routing import resolve


@pytest.mark.parametrize(("method", "path", "watch", "want"), [
    ("GET", "/api/v1/pods", False, ("pods", "", "", "", "list")),
    ("GET", "/api/v1/namespaces/ns1/pods", True, ("pods", "ns1", "", "", "watch")),
    ("POST", "/api/v1/namespaces/ns1/pods", False, ("pods", "ns1", "", "", "create")),
    ("GET", "/api/v1/namespaces/ns1/pods/p", False, ("pods", "ns1", "p", "", "get")),
    ("PUT", "/api/v1/namespaces/ns1/pods/p/status", False, ("pods", "ns1", "p", "status", "update")),
    ("POST", "/api/v1/namespaces/ns1/pods/p/binding", False, ("pods", "ns1", "p", "binding", "create")),
    ("GET", "/api/v1/namespaces/ns1", False, ("namespaces", "", "ns1", "", "get")),
    ("PUT", "/api/v1/namespaces/ns1/finalize", False, ("namespaces", "", "ns1", "finalize", "update")),
    ("PATCH", "/api/v1/namespaces/ns1/status", False, ("namespaces", "", "ns1", "status", "patch")),
    ("DELETE", "/api/v1/nodes", False, ("nodes", "", "", "", "deletecollection")),
    ("PATCH", "/apis/apps/v1/namespaces/a/deployments/d/scale", False,
     ("deployments", "a", "d", "scale", "patch")),
    ("DELETE", "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin", False,
     ("clusterroles", "", "admin", "", "delete")),
])
def test_resolve(method: str, path: str, watch: bool, want: tuple) -> None:
    info = resolve(method, path, watch)
    assert (info.rtype.plural, info.namespace, info.name, info.subresource, info.verb) == want


@pytest.mark.parametrize("path", [
    "/api/v1/things", "/api/v1/namespaces/x/nodes", "/apis/apps/v1/namespaces/x/pods/p/exec",
    "/api/v1/namespaces/x/pods/p/status/extra", "/apis/apps", "/api", "/api/v1/namespaces/x/pods/p/nope",
])
def test_resolve_unknown_is_404(path: str) -> None:
    with pytest.raises(ApiError) as e:
        resolve("GET", path, False)
    assert e.value.code == 404


def test_put_on_collection_is_405() -> None:
    with pytest.raises(ApiError) as e:
        resolve("PUT", "/api/v1/namespaces/x/pods", False)
    assert e.value.code == 405


def test_table_negotiation() -> None:
    kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
    assert codec.table_version(kubectl) == "v1"
    assert codec.table_version("application/json;as=Table;v=v1beta1;g=meta.k8s.io") == "v1beta1"
    assert codec.table_version("application/json") is None
    assert codec.table_version("application/json, application/json;as=Table;v=v1;g=meta.k8s.io") is None
    assert codec.table_version("") is None


def test_parse_object_errors_say_where() -> None:
    with pytest.raises(ApiError) as e:
        codec.parse_object(b'{"a": 1,\n "b": }', "application/json")
    assert e.value.code == 400 and "line 2" in e.value.message
    with pytest.raises(ApiError) as e:
        codec.parse_object(b"[1, 2]", "")
    assert e.value.code == 400
    with pytest.raises(ApiError) as e:
        codec.parse_object(b"{}", "application/vnd.kubernetes.protobuf")
    assert e.value.code == 415
    assert codec.parse_object(b"a: 1\nb: [x]\n", "application/yaml") == {"a": 1, "b": ["x"]}
    assert codec.parse_object(b'{"x": true}', "") == {"x": True}


def test_continue_tokens_round_trip_and_reject_garbage() -> None:
    tok = encode_continue(42, "/registry/pods/ns/b\0")
    assert decode_continue(tok) == (42, "/registry/pods/ns/b\0")
    for bad in ("garbage", "e30", encode_continue(0, "x")):
        with pytest.raises(ApiError) as e:
            decode_continue(bad)
        assert e.value.code == 400


def test_storage_keys() -> None:
    pods = resources.lookup("", "v1", "pods")
    nodes = resources.lookup("", "v1", "nodes")
    deploy = resources.lookup("apps", "v1", "deployments")
    ev = resources.lookup("events.k8s.io", "v1", "events")
    assert pods and nodes and deploy and ev
    assert key_of(pods, "default", "p") == "/registry/pods/default/p"
    assert key_of(nodes, "", "n1") == "/registry/nodes/n1"
    assert key_of(deploy, "a", "d") == "/registry/deployments/a/d"
    assert prefix_of(pods) == "/registry/pods/" and prefix_of(pods, "x") == "/registry/pods/x/"
    # Two kinds named "events" never share keys.
    assert prefix_of(ev) != prefix_of(resources.lookup("", "v1", "events"))  # type: ignore[arg-type]


def test_aggregated_discovery_has_what_kubectl_needs() -> None:
    doc = discovery.aggregated(False, discovery.AGGREGATED_CONTENT_TYPE)
    assert doc["kind"] == "APIGroupDiscoveryList" and doc["apiVersion"] == "apidiscovery.k8s.io/v2"
    apps = next(g for g in doc["items"] if g["metadata"]["name"] == "apps")
    deploy = next(r for r in apps["versions"][0]["resources"] if r["resource"] == "deployments")
    assert deploy["shortNames"] == ["deploy"] and deploy["scope"] == "Namespaced"
    scale = next(s for s in deploy["subresources"] if s["subresource"] == "scale")
    assert scale["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    core = discovery.aggregated(True, discovery.AGGREGATED_CONTENT_TYPE)
    pods = next(r for r in core["items"][0]["versions"][0]["resources"] if r["resource"] == "pods")
    assert "po" in pods["shortNames"]
    assert discovery.wants_aggregated(
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json") \
        == discovery.AGGREGATED_CONTENT_TYPE


def test_legacy_discovery_lists_subresources() -> None:
    doc = discovery.resource_list("", "v1")
    assert doc is not None
    names = {r["name"] for r in doc["resources"]}
    assert {"pods", "pods/log", "pods/exec", "pods/binding", "nodes/status", "namespaces/finalize"} <= names
    assert discovery.resource_list("nope", "v1") is None
    assert discovery.version_info()["minor"] == "37"
