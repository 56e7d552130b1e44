"""The official `kubernetes` Python client against a running timonel server."""

from __future__ import annotations

import threading

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.integration.conftest import ApiServer


@pytest.fixture
def core(api_server: ApiServer) -> client.CoreV1Api:
    api = config.new_client_from_config(config_file=api_server.kubeconfig)
    return client.CoreV1Api(api)


@pytest.fixture
def apps(api_server: ApiServer) -> client.AppsV1Api:
    return client.AppsV1Api(config.new_client_from_config(config_file=api_server.kubeconfig))


def test_create_list_patch_delete(core: client.CoreV1Api, namespace: str) -> None:
    body = client.V1Pod(
        metadata=client.V1ObjectMeta(name="py", labels={"app": "py"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
    )
    created = core.create_namespaced_pod(namespace, body)
    assert created.metadata.uid and created.status.phase == "Pending"
    assert created.spec.containers[0].image_pull_policy == "Always"

    pods = core.list_namespaced_pod(namespace, label_selector="app=py")
    assert [p.metadata.name for p in pods.items] == ["py"]

    patched = core.patch_namespaced_pod("py", namespace, {"metadata": {"labels": {"extra": "yes"}}})
    assert patched.metadata.labels == {"app": "py", "extra": "yes"}

    core.delete_namespaced_pod("py", namespace)
    with pytest.raises(ApiException) as e:
        core.read_namespaced_pod("py", namespace)
    assert e.value.status == 404


def test_configmaps_and_conflicts(core: client.CoreV1Api, namespace: str) -> None:
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "c"}, "data": {"a": "1"}})
    cm.data = {"a": "2"}
    core.replace_namespaced_config_map("c", namespace, cm)
    cm.data = {"a": "3"}
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_config_map("c", namespace, cm)  # stale resourceVersion
    assert e.value.status == 409
    assert core.read_namespaced_config_map("c", namespace).data == {"a": "2"}


def test_watch_stream(core: client.CoreV1Api, namespace: str) -> None:
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    seen: list[tuple[str, str]] = []
    w = watch.Watch()

    def reader() -> None:
        for ev in w.stream(core.list_namespaced_config_map, namespace, resource_version=rv,
                           timeout_seconds=20):
            seen.append((ev["type"], ev["object"].metadata.name))
            if len(seen) == 3:
                w.stop()

    t = threading.Thread(target=reader)
    t.start()
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "w"}, "data": {"a": "1"}})
    core.patch_namespaced_config_map("w", namespace, {"data": {"a": "2"}})
    core.delete_namespaced_config_map("w", namespace)
    t.join(30)
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_deployment_scale_and_status_deserialize(apps: client.AppsV1Api, namespace: str) -> None:
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
                    "template": {"metadata": {"labels": {"app": "d"}},
                                 "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    apps.create_namespaced_deployment(namespace, dep)
    scale = apps.patch_namespaced_deployment_scale("d", namespace, {"spec": {"replicas": 3}})
    assert scale.spec.replicas == 3
    got = apps.read_namespaced_deployment("d", namespace)
    assert got.spec.replicas == 3 and got.spec.strategy.type == "RollingUpdate"
    lst = apps.list_deployment_for_all_namespaces()
    assert any(d.metadata.name == "d" for d in lst.items)


def test_server_version(api_server: ApiServer) -> None:
    api = config.new_client_from_config(config_file=api_server.kubeconfig)
    v = client.VersionApi(api).get_code()
    assert v.major == "1" and v.minor == "37"


def test_numeric_quantities_read_back_as_strings(apps: client.AppsV1Api, http, api_server: ApiServer,
                                                 namespace: str) -> None:
    # `cpu: 1` in YAML is a JSON number; the client's model accepts only strings back.
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "q"},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "q"}},
                    "template": {"metadata": {"labels": {"app": "q"}},
                                 "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {
                                     "limits": {"cpu": 1, "memory": 67108864}, "requests": {"cpu": 0.5}}}]}}}}
    r = http.post(f"{api_server.url}/apis/apps/v1/namespaces/{namespace}/deployments", json=dep)
    assert r.status_code == 201, r.text
    res = r.json()["spec"]["template"]["spec"]["containers"][0]["resources"]
    # Requests default to the limits where missing (memory), as upstream.
    assert res == {"limits": {"cpu": "1", "memory": "67108864"},
                   "requests": {"cpu": "500m", "memory": "67108864"}}
    got = apps.read_namespaced_deployment("q", namespace)
    assert got.spec.template.spec.containers[0].resources.limits == {"cpu": "1", "memory": "67108864"}
    patched = http.patch(f"{api_server.url}/apis/apps/v1/namespaces/{namespace}/deployments/q",
                         json={"spec": {"template": {"spec": {"containers": [
                             {"name": "c", "resources": {"limits": {"cpu": 2}}}]}}}},
                         headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "2"
