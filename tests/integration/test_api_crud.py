"""CRUD semantics of the API server against a real etcd."""

from __future__ import annotations

import requests

from tests.integration.conftest import ApiServer


def pod(name: str, image: str = "busybox:1.36", **extra: object) -> dict:
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": image}]}}
    body.update(extra)
    return body


def cm(name: str, data: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data or {"a": "1"}}


def test_create_get_list_delete(api_server: ApiServer, http: requests.Session, namespace: str) -> None:
    base = f"{api_server.url}/api/v1/namespaces/{namespace}/configmaps"
    r = http.post(base, json=cm("one"))
    assert r.status_code == 201, r.text
    created = r.json()
    md = created["metadata"]
    assert md["namespace"] == namespace and md["uid"] and md["creationTimestamp"].endswith("Z")
    assert int(md["resourceVersion"]) > 0

    got = http.get(f"{base}/one").json()
    assert got["data"] == {"a": "1"} and got["metadata"]["uid"] == md["uid"]

    lst = http.get(base).json()
    assert lst["kind"] == "ConfigMapList" and [i["metadata"]["name"] for i in lst["items"]] == ["one"]
    assert int(lst["metadata"]["resourceVersion"]) >= int(md["resourceVersion"])

    r = http.delete(f"{base}/one")
    assert r.status_code == 200, r.text
    r = http.get(f"{base}/one")
    assert r.status_code == 404
    st = r.json()
    assert st["kind"] == "Status" and st["reason"] == "NotFound" and st["code"] == 404
    assert st["message"] == 'configmaps "one" not found'


def test_already_exists_and_conflict(api_server: ApiServer, http: requests.Session, namespace: str) -> None:
    base = f"{api_server.url}/api/v1/namespaces/{namespace}/configmaps"
    assert http.post(base, json=cm("c")).status_code == 201
    r = http.post(base, json=cm("c"))
    assert r.status_code == 409 and r.json()["reason"] == "AlreadyExists"

    obj = http.get(f"{base}/c").json()
    stale = dict(obj)
    obj["data"] = {"a": "2"}
    r = http.put(f"{base}/c", json=obj)
    assert r.status_code == 200, r.text
    assert int(r.json()["metadata"]["resourceVersion"]) > int(stale["metadata"]["resourceVersion"])
    stale["data"] = {"a": "3"}
    r = http.put(f"{base}/c", json=stale)
    assert r.status_code == 409 and r.json()["reason"] == "Conflict"
    assert http.get(f"{base}/c").json()["data"] == {"a": "2"}


def test_generation_counts_spec_changes_only(api_server: ApiServer, http: requests.Session,
                                             namespace: str) -> None:
    base = f"{api_server.url}/apis/apps/v1/namespaces/{namespace}/deployments"
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
                    "template": {"metadata": {"labels": {"app": "d"}},
                                 "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}}}
    obj = http.post(base, json=dep).json()
    assert obj["metadata"]["generation"] == 1
    # Defaults applied as upstream does.
    assert obj["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": "25%", "maxSurge": "25%"}
    obj["metadata"]["labels"] = {"x": "y"}
    obj = http.put(f"{base}/d", json=obj).json()
    assert obj["metadata"]["generation"] == 1
    obj["spec"]["replicas"] = 3
    obj = http.put(f"{base}/d", json=obj).json()
    assert obj["metadata"]["generation"] == 2
    # Status goes through /status only, and does not bump generation.
    obj["status"] = {"replicas": 3, "observedGeneration": 2}
    same = http.put(f"{base}/d", json=obj).json()
    assert "replicas" not in same.get("status", {})
    st = http.put(f"{base}/d/status", json=same | {"status": {"replicas": 3, "observedGeneration": 2}})
    assert st.status_code == 200, st.text
    assert st.json()["status"]["replicas"] == 3 and st.json()["metadata"]["generation"] == 2


def test_unauthenticated_gets_401(api_server: ApiServer) -> None:
    r = requests.get(f"{api_server.url}/api/v1/namespaces", verify=api_server.ca_file)
    assert r.status_code == 401
    assert r.json()["kind"] == "Status" and r.json()["reason"] == "Unauthorized"
    r = requests.get(f"{api_server.url}/api/v1/namespaces", verify=api_server.ca_file,
                     headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401


def test_namespace_must_exist(api_server: ApiServer, http: requests.Session) -> None:
    r = http.post(f"{api_server.url}/api/v1/namespaces/does-not-exist/configmaps", json=cm("x"))
    assert r.status_code == 404 and r.json()["message"] == 'namespaces "does-not-exist" not found'


def test_system_namespaces_exist(api_server: ApiServer, http: requests.Session) -> None:
    names = {n["metadata"]["name"] for n in http.get(f"{api_server.url}/api/v1/namespaces").json()["items"]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names


def test_dry_run_writes_nothing(api_server: ApiServer, http: requests.Session, namespace: str) -> None:
    base = f"{api_server.url}/api/v1/namespaces/{namespace}/configmaps"
    r = http.post(base, params={"dryRun": "All"}, json=cm("dry"))
    assert r.status_code == 201 and r.json()["metadata"]["name"] == "dry"
    assert http.get(f"{base}/dry").status_code == 404


def test_generate_name(api_server: ApiServer, http: requests.Session, namespace: str) -> None:
    base = f"{api_server.url}/api/v1/namespaces/{namespace}/configmaps"
    body = cm("")
    body["metadata"] = {"generateName": "gen-"}
    names = {http.post(base, json=body).json()["metadata"]["name"] for _ in range(3)}
    assert len(names) == 3 and all(n.startswith("gen-") and len(n) == 9 for n in names)


def test_pod_status_reset_on_create(api_server: ApiServer, http: requests.Session, namespace: str) -> None:
    body = pod("p", status={"phase": "Running"})
    r = http.post(f"{api_server.url}/api/v1/namespaces/{namespace}/pods", json=body)
    assert r.status_code == 201, r.text
    p = r.json()
    assert p["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert p["spec"]["restartPolicy"] == "Always" and p["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"


def test_cluster_scoped_objects(api_server: ApiServer, http: requests.Session) -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "crud-node-1"},
            "status": {"capacity": {"cpu": "2", "memory": "1Gi", "pods": "110"}}}
    r = http.post(f"{api_server.url}/api/v1/nodes", json=node)
    assert r.status_code == 201, r.text
    # Nodes keep the status their agent reports at creation.
    assert r.json()["status"]["capacity"]["cpu"] == "2"
    assert "namespace" not in r.json()["metadata"]
    assert http.delete(f"{api_server.url}/api/v1/nodes/crud-node-1").status_code == 200


def test_wrong_kind_or_namespace_is_bad_request(api_server: ApiServer, http: requests.Session,
                                                namespace: str) -> None:
    base = f"{api_server.url}/api/v1/namespaces/{namespace}/configmaps"
    body = cm("w")
    body["kind"] = "Secret"
    assert http.post(base, json=body).status_code == 400
    body = cm("w")
    body["metadata"]["namespace"] = "other"
    r = http.post(base, json=body)
    assert r.status_code == 400 and "does not match the namespace" in r.json()["message"]


def test_unknown_paths_are_404_status(api_server: ApiServer, http: requests.Session) -> None:
    for path in ("/api/v1/nothings", "/apis/apps/v1/namespaces/x/pods", "/apis/nope/v1/things",
                 "/api/v1/namespaces/default/pods/x/nosuchsub"):
        r = http.get(api_server.url + path)
        assert r.status_code == 404, path
        assert r.json()["kind"] == "Status"
