"""Finalizers, graceful deletion, selectors, pagination, patches, restarts."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import requests

from tests.integration.conftest import ApiServer, start_server


def cm(name: str, labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}},
            "data": {"k": "v"}}


def deployment(name: str, image: str = "busybox:1", replicas: int = 1) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "main", "image": image},
                                                          {"name": "side", "image": "busybox:2"}]}}}}


def test_finalizers_hold_deletion(api_server: ApiServer, http: requests.Session, namespace: str) -> None:
    base = f"{api_server.url}/api/v1/namespaces/{namespace}/configmaps"
    body = cm("f")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    http.post(base, json=body)
    r = http.delete(f"{base}/f")
    assert r.status_code == 202, r.text
    obj = http.get(f"{base}/f").json()
    assert obj["metadata"]["deletionTimestamp"] and obj["metadata"]["finalizers"] == ["example.com/hold"]
    # No new finalizers once deletion started.
    obj["metadata"]["finalizers"] = ["example.com/hold", "example.com/more"]
    assert http.put(f"{base}/f", json=obj).status_code == 422
    # Removing the last finalizer deletes it.
    r = http.patch(f"{base}/f", data=json.dumps({"metadata": {"finalizers": None}}),
                   headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert http.get(f"{base}/f").status_code == 404


def test_foreground_and_orphan_are_recorded(api_server: ApiServer, http: requests.Session,
                                            namespace: str) -> None:
    base = f"{api_server.url}/api/v1/namespaces/{namespace}/configmaps"
    http.post(base, json=cm("fg"))
    http.delete(f"{base}/fg", json={"propagationPolicy": "Foreground"})
    assert http.get(f"{base}/fg").json()["metadata"]["finalizers"] == ["foregroundDeletion"]
    http.post(base, json=cm("or"))
    http.delete(f"{base}/or", params={"propagationPolicy": "Orphan"})
    assert http.get(f"{base}/or").json()["metadata"]["finalizers"] == ["orphan"]


def test_pod_graceful_deletion(api_server: ApiServer, http: requests.Session, namespace: str) -> None:
    base = f"{api_server.url}/api/v1/namespaces/{namespace}/pods"
    spec = {"containers": [{"name": "c", "image": "busybox"}], "terminationGracePeriodSeconds": 45}
    for name in ("bound", "unbound"):
        assert http.post(base, json={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                                     "spec": spec}).status_code == 201
    r = http.post(f"{base}/bound/binding", json={"apiVersion": "v1", "kind": "Binding",
                                                 "metadata": {"name": "bound"},
                                                 "target": {"kind": "Node", "name": "n1"}})
    assert r.status_code == 201, r.text
    assert http.get(f"{base}/bound").json()["spec"]["nodeName"] == "n1"
    # A second binding is refused.
    again = http.post(f"{base}/bound/binding", json={"target": {"name": "n2"}})
    assert again.status_code == 409
    # Unscheduled pods go at once; bound ones are marked with a grace period.
    assert http.delete(f"{base}/unbound").status_code == 200
    assert http.get(f"{base}/unbound").status_code == 404
    r = http.delete(f"{base}/bound")
    assert r.status_code == 202
    md = http.get(f"{base}/bound").json()["metadata"]
    assert md["deletionGracePeriodSeconds"] == 45 and md["deletionTimestamp"]
    # The node agent finishes with grace period 0.
    assert http.delete(f"{base}/bound", json={"gracePeriodSeconds": 0}).status_code == 200
    assert http.get(f"{base}/bound").status_code == 404


def test_label_and_field_selectors(api_server: ApiServer, http: requests.Session, namespace: str) -> None:
    base = f"{api_server.url}/api/v1/namespaces/{namespace}/configmaps"
    http.post(base, json=cm("a", {"tier": "web", "env": "prod"}))
    http.post(base, json=cm("b", {"tier": "web", "env": "dev"}))
    http.post(base, json=cm("c", {"tier": "db"}))

    def names(**params: str) -> list[str]:
        r = http.get(base, params=params)
        assert r.status_code == 200, r.text
        return sorted(i["metadata"]["name"] for i in r.json()["items"])

    assert names(labelSelector="tier=web") == ["a", "b"]
    assert names(labelSelector="tier=web,env!=prod") == ["b"]
    assert names(labelSelector="env in (prod,dev)") == ["a", "b"]
    assert names(labelSelector="env notin (prod)") == ["b", "c"]
    assert names(labelSelector="!env") == ["c"]
    assert names(labelSelector="env") == ["a", "b"]
    assert names(fieldSelector="metadata.name=c") == ["c"]
    assert names(fieldSelector="metadata.name!=c", labelSelector="tier") == ["a", "b"]
    assert http.get(base, params={"labelSelector": "a in (("}).status_code == 400
    r = http.get(base, params={"fieldSelector": "spec.nope=1"})
    assert r.status_code == 400 and r.json()["kind"] == "Status"


def test_pods_by_node_and_phase(api_server: ApiServer, http: requests.Session, namespace: str) -> None:
    base = f"{api_server.url}/api/v1/namespaces/{namespace}/pods"
    for name, node in (("p1", "n1"), ("p2", "n2")):
        http.post(base, json={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                              "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}})
    r = http.get(f"{api_server.url}/api/v1/pods", params={"fieldSelector": "spec.nodeName=n2"})
    assert [i["metadata"]["name"] for i in r.json()["items"] if i["metadata"]["namespace"] == namespace] == ["p2"]
    r = http.get(base, params={"fieldSelector": "status.phase=Pending"})
    assert len(r.json()["items"]) == 2


def test_pagination_at_one_revision(api_server: ApiServer, http: requests.Session, namespace: str) -> None:
    base = f"{api_server.url}/api/v1/namespaces/{namespace}/configmaps"
    for i in range(7):
        http.post(base, json=cm(f"item{i}"))
    first = http.get(base, params={"limit": "3"}).json()
    assert len(first["items"]) == 3 and first["metadata"]["continue"]
    # Writes after the first page do not show up in later pages.
    http.post(base, json=cm("item99"))
    seen = [i["metadata"]["name"] for i in first["items"]]
    token = first["metadata"]["continue"]
    while token:
        page = http.get(base, params={"limit": "3", "continue": token}).json()
        assert page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        seen += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
    assert seen == [f"item{i}" for i in range(7)]
    assert http.get(base, params={"limit": "3", "continue": "garbage"}).status_code == 400


def test_patch_types(api_server: ApiServer, http: requests.Session, namespace: str) -> None:
    base = f"{api_server.url}/apis/apps/v1/namespaces/{namespace}/deployments"
    assert http.post(base, json=deployment("p")).status_code == 201

    def patch(body: object, ctype: str, **params: str) -> requests.Response:
        return http.patch(f"{base}/p", data=json.dumps(body), headers={"Content-Type": ctype},
                          params=params)

    r = patch({"metadata": {"labels": {"a": "b"}}}, "application/merge-patch+json")
    assert r.status_code == 200 and r.json()["metadata"]["labels"] == {"a": "b"}
    r = patch([{"op": "replace", "path": "/spec/replicas", "value": 4}], "application/json-patch+json")
    assert r.status_code == 200 and r.json()["spec"]["replicas"] == 4
    r = patch([{"op": "test", "path": "/spec/replicas", "value": 99}], "application/json-patch+json")
    assert 400 <= r.status_code < 500
    # Strategic merge: one container changes by its merge key, the other stays.
    r = patch({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox:9"}]}}}},
              "application/strategic-merge-patch+json")
    assert r.status_code == 200, r.text
    containers = r.json()["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("main", "busybox:9"), ("side", "busybox:2")]
    assert r.json()["metadata"]["generation"] == 3
    r = patch({"spec": {"replicas": 1}}, "application/xml")
    assert r.status_code == 415


def test_server_side_apply_creates_then_updates(api_server: ApiServer, http: requests.Session,
                                                namespace: str) -> None:
    url = f"{api_server.url}/apis/apps/v1/namespaces/{namespace}/deployments/ssa"
    body = deployment("ssa", replicas=2)

    def apply(obj: dict, manager: str = "kubectl", force: bool = False) -> requests.Response:
        return http.patch(url, data=json.dumps(obj), params={"fieldManager": manager,
                                                             "force": str(force).lower()},
                          headers={"Content-Type": "application/apply-patch+yaml"})

    r = apply(body)
    assert r.status_code == 201, r.text
    mf = r.json()["metadata"]["managedFields"]
    assert any(m["manager"] == "kubectl" and m["operation"] == "Apply" for m in mf)
    body["spec"]["replicas"] = 3
    r = apply(body)
    assert r.status_code == 200 and r.json()["spec"]["replicas"] == 3
    # Another manager changing an owned field conflicts unless forced.
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ssa"},
             "spec": {"replicas": 5}}
    r = apply(other, manager="hpa")
    assert r.status_code == 409 and r.json()["reason"] == "Conflict"
    r = apply(other, manager="hpa", force=True)
    assert r.status_code == 200 and r.json()["spec"]["replicas"] == 5


def test_scale_subresource(api_server: ApiServer, http: requests.Session, namespace: str) -> None:
    base = f"{api_server.url}/apis/apps/v1/namespaces/{namespace}/deployments"
    http.post(base, json=deployment("sc"))
    r = http.get(f"{base}/sc/scale")
    assert r.status_code == 200 and r.json()["kind"] == "Scale" and r.json()["spec"]["replicas"] == 1
    assert r.json()["status"]["selector"] == "app=sc"
    r = http.patch(f"{base}/sc/scale", data=json.dumps({"spec": {"replicas": 7}}),
                   headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200 and r.json()["spec"]["replicas"] == 7
    assert http.get(f"{base}/sc").json()["spec"]["replicas"] == 7


def test_validation_rejects_invalid_objects(api_server: ApiServer, http: requests.Session,
                                            namespace: str) -> None:
    base = f"{api_server.url}/api/v1/namespaces/{namespace}/pods"
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name"},
           "spec": {"containers": [{"name": "c", "image": "x"}, {"name": "c", "image": "y"}]}}
    r = http.post(base, json=bad)
    assert r.status_code == 422, r.text
    st = r.json()
    assert st["reason"] == "Invalid" and st["details"]["kind"] == "Pod"
    fields = {c.get("field") for c in st["details"]["causes"]}
    assert "metadata.name" in fields
    assert http.get(f"{base}/Bad_Name").status_code in (404, 400)
    # Unknown fields: Strict refuses, Ignore accepts.
    typo = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "typo"},
            "spec": {"containers": [{"name": "c", "image": "x", "imagePullPolicyy": "Always"}]}}
    r = http.post(base, json=typo, params={"fieldValidation": "Strict"})
    assert 400 <= r.status_code < 500 and "imagePullPolicyy" in r.json()["message"]
    r = http.post(base, json=typo, params={"fieldValidation": "Warn"})
    assert r.status_code == 201 and "imagePullPolicyy" in r.headers.get("Warning", "")


def test_restart_keeps_every_object() -> None:
    d = tempfile.mkdtemp(prefix="timonel-restart-")
    try:
        server = start_server(os.path.join(d, "state"))
        http = server.session()
        base = f"{server.url}/api/v1/namespaces/default/configmaps"
        for i in range(5):
            assert http.post(base, json=cm(f"keep{i}")).status_code == 201
        before = http.get(base).json()
        server.stop()
        server = start_server(os.path.join(d, "state"))
        http = server.session()
        after = http.get(f"{server.url}/api/v1/namespaces/default/configmaps").json()
        assert [i["metadata"] for i in after["items"]] == [i["metadata"] for i in before["items"]]
        # The admin credentials stayed the same.
        assert http.get(f"{server.url}/api/v1/namespaces/default").status_code == 200
        server.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_restart_after_the_server_was_killed() -> None:
    """SIGKILL takes the embedded etcd down too (no orphan holding the data
    directory), and the next start finds every object."""
    d = tempfile.mkdtemp(prefix="timonel-kill-")
    try:
        server = start_server(os.path.join(d, "state"))
        http = server.session()
        assert http.post(f"{server.url}/api/v1/namespaces/default/configmaps",
                         json=cm("survivor")).status_code == 201
        server.proc.kill()
        server.proc.wait()
        server = start_server(os.path.join(d, "state"))
        r = server.session().get(f"{server.url}/api/v1/namespaces/default/configmaps/survivor")
        assert r.status_code == 200, r.text
        server.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)
