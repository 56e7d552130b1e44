"""Table rows for core, networking, access-control and policy kinds, as
kube-apiserver's printers produce them for the same objects."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from timonel.api.resources import by_kind
from timonel.api.server.tables import to_table

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def ago(**kw: float) -> str:
    return (NOW - timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


def obj(name: str, namespace: str | None = "shop", **fields: Any) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "creationTimestamp": ago(hours=4)}
    if namespace:
        md["namespace"] = namespace
    return {"metadata": md, **fields}


def table(group: str, kind: str, o: dict[str, Any]) -> dict[str, Any]:
    r = by_kind(group, kind)
    assert r is not None
    t = to_table([o], r, now=NOW)
    json.dumps(t)
    assert len(t["rows"][0]["cells"]) == len(t["columnDefinitions"])
    return t


def cells(group: str, kind: str, o: dict[str, Any]) -> list[Any]:
    return table(group, kind, o)["rows"][0]["cells"]


def header(group: str, kind: str) -> list[str]:
    return [c["name"] for c in table(group, kind, obj("x"))["columnDefinitions"]]


# -- Services and endpoints -----------------------------------------------------


def test_services() -> None:
    assert header("", "Service") == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age",
                                     "Selector"]
    svc = obj("api", spec={"type": "ClusterIP", "clusterIP": "10.96.12.7",
                           "clusterIPs": ["10.96.12.7"], "selector": {"app": "api", "tier": "be"},
                           "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                                     {"name": "https", "port": 443, "targetPort": 8443}]})
    assert cells("", "Service", svc) == ["api", "ClusterIP", "10.96.12.7", "<none>",
                                         "80/TCP,443/TCP", "4h", "app=api,tier=be"]
    svc["spec"].update(type="NodePort", externalIPs=["192.0.2.10"])
    svc["spec"]["ports"][0]["nodePort"] = 30080
    assert cells("", "Service", svc)[1:5] == ["NodePort", "10.96.12.7", "192.0.2.10",
                                              "80:30080/TCP,443/TCP"]


@pytest.mark.parametrize(("spec", "status", "external"), [
    ({"type": "LoadBalancer"}, {}, "<pending>"),
    ({"type": "LoadBalancer"}, {"loadBalancer": {"ingress": [
        {"ip": "203.0.113.9"}, {"hostname": "lb.example.com"}, {"ip": "203.0.113.1"}]}},
     "203.0.113.1,203.0.113.9,lb.example.com"),
    ({"type": "LoadBalancer", "externalIPs": ["192.0.2.1"]},
     {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}, "203.0.113.9,192.0.2.1"),
    ({"type": "ExternalName", "externalName": "db.example.com"}, {}, "db.example.com"),
    ({"type": "Weird"}, {}, "<unknown>"),
])
def test_service_external_ip(spec: dict[str, Any], status: dict[str, Any], external: str) -> None:
    assert cells("", "Service", obj("s", spec=spec, status=status))[3] == external


def test_headless_and_external_name_services() -> None:
    headless = obj("db", spec={"clusterIP": "None", "clusterIPs": ["None"], "ports": [
        {"port": 5432, "protocol": "TCP"}], "selector": {"app": "db"}})
    assert cells("", "Service", headless)[1:5] == ["ClusterIP", "None", "<none>", "5432/TCP"]
    ext = obj("mail", spec={"type": "ExternalName", "externalName": "smtp.example.com"})
    assert cells("", "Service", ext) == ["mail", "ExternalName", "<none>", "smtp.example.com",
                                         "<none>", "4h", "<none>"]


def test_endpoints() -> None:
    ep = obj("api", subsets=[{"addresses": [{"ip": "10.244.1.5"}, {"ip": "10.244.2.9"}],
                              "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}])
    assert cells("", "Endpoints", ep) == ["api", "10.244.1.5:80,10.244.2.9:80,10.244.1.5:443 "
                                                 "+ 1 more...", "4h"]
    ep["subsets"] = [{"addresses": [{"ip": "fd00::5"}], "ports": [{"port": 80}]},
                     {"addresses": [{"ip": "10.0.0.1"}]}]
    assert cells("", "Endpoints", ep)[1] == "[fd00::5]:80,10.0.0.1"
    assert cells("", "Endpoints", obj("none"))[1] == "<none>"


def test_endpoint_slices() -> None:
    assert header("discovery.k8s.io", "EndpointSlice") == [
        "Name", "AddressType", "Ports", "Endpoints", "Age"]
    es = obj("api-x7f", addressType="IPv4",
             ports=[{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "metrics"}, {}],
             endpoints=[{"addresses": ["10.244.1.5"], "conditions": {"ready": True}},
                        {"addresses": ["10.244.2.9", "10.244.2.10", "10.244.3.1"]}])
    assert cells("discovery.k8s.io", "EndpointSlice", es) == [
        "api-x7f", "IPv4", "80,metrics,*", "10.244.1.5,10.244.2.9,10.244.2.10 + 1 more...", "4h"]
    empty = obj("e", addressType="IPv4")
    assert cells("discovery.k8s.io", "EndpointSlice", empty)[2:4] == ["<unset>", "<unset>"]


def test_network_policies() -> None:
    assert cells("networking.k8s.io", "NetworkPolicy", obj("deny-all", spec={
        "podSelector": {}, "policyTypes": ["Ingress"]})) == ["deny-all", "<none>", "4h"]
    np = obj("db", spec={"podSelector": {"matchLabels": {"app": "db"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["backend", "cache"]}]}})
    assert cells("networking.k8s.io", "NetworkPolicy", np)[1] == "app=db,tier in (backend,cache)"


# -- Events ----------------------------------------------------------------------


def test_core_event() -> None:
    assert header("", "Event") == ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source",
                                   "Message", "First Seen", "Count", "Name"]
    defs = table("", "Event", obj("e"))["columnDefinitions"]
    assert [c["priority"] for c in defs] == [0, 0, 0, 0, 1, 1, 0, 1, 1, 1]
    ev = obj("web-1.17c8a", involvedObject={"kind": "Pod", "namespace": "shop", "name": "web-1",
                                            "fieldPath": "spec.containers{web}"},
             reason="BackOff", message="Back-off restarting failed container web\n",
             source={"component": "kubelet", "host": "node-a"}, firstTimestamp=ago(minutes=10),
             lastTimestamp=ago(minutes=2), count=5, type="Warning")
    assert cells("", "Event", ev) == ["2m", "Warning", "BackOff", "pod/web-1",
                                      "spec.containers{web}", "kubelet, node-a",
                                      "Back-off restarting failed container web", "10m", 5,
                                      "web-1.17c8a"]


def test_new_style_events() -> None:
    # Written through events.k8s.io/v1: eventTime, no count, reporting fields.
    new = {"metadata": {"name": "web-1.17c8b", "namespace": "shop"},
           "eventTime": "2024-05-01T11:59:29.876543Z", "reportingController": "default-scheduler",
           "reportingInstance": "default-scheduler-node-a", "action": "Binding",
           "reason": "Scheduled", "type": "Normal",
           "regarding": {"kind": "Pod", "namespace": "shop", "name": "web-1"},
           "note": "Successfully assigned shop/web-1 to node-a"}
    expected = ["30s", "Normal", "Scheduled", "pod/web-1", "",
                "default-scheduler, default-scheduler-node-a",
                "Successfully assigned shop/web-1 to node-a", "30s", 1, "web-1.17c8b"]
    assert cells("events.k8s.io", "Event", new) == expected
    # The same event read through core/v1.
    core = {"metadata": new["metadata"], "eventTime": new["eventTime"],
            "reportingComponent": "default-scheduler",
            "reportingInstance": "default-scheduler-node-a", "reason": "Scheduled",
            "type": "Normal", "involvedObject": new["regarding"], "message": new["note"],
            "source": {}}
    assert cells("", "Event", core) == expected
    series = {**core, "series": {"count": 7, "lastObservedTime": "2024-05-01T11:59:40.000000Z"}}
    assert cells("", "Event", series)[0] == "20s"
    assert cells("", "Event", series)[8] == 7
    about_node = {**core, "involvedObject": {"kind": "Node"}}
    assert cells("", "Event", about_node)[3] == "node"


# -- Config and identity -----------------------------------------------------------


def test_configmaps_secrets_serviceaccounts() -> None:
    assert header("", "ConfigMap") == ["Name", "Data", "Age"]
    assert cells("", "ConfigMap", obj("cfg", data={"a": "1", "b": "2"},
                                      binaryData={"c": "AA=="})) == ["cfg", 3, "4h"]
    assert header("", "Secret") == ["Name", "Type", "Data", "Age"]
    assert cells("", "Secret", obj("tls", type="kubernetes.io/tls", data={
        "tls.crt": "AA==", "tls.key": "AA=="})) == ["tls", "kubernetes.io/tls", 2, "4h"]
    assert header("", "ServiceAccount") == ["Name", "Secrets", "Age"]
    assert cells("", "ServiceAccount", obj("default")) == ["default", 0, "4h"]
    assert cells("", "ServiceAccount", obj("ci", secrets=[{"name": "ci-token"}]))[1] == 1


def test_namespace() -> None:
    assert cells("", "Namespace", obj("shop", namespace=None, status={"phase": "Active"})) == [
        "shop", "Active", "4h"]
    assert cells("", "Namespace", obj("old", namespace=None,
                                      status={"phase": "Terminating"}))[1] == "Terminating"


def test_lease() -> None:
    lease = obj("node-a", namespace="kube-node-lease", spec={
        "holderIdentity": "node-a", "leaseDurationSeconds": 40, "renewTime": ago(seconds=3)})
    assert cells("coordination.k8s.io", "Lease", lease) == ["node-a", "node-a", "4h"]
    assert cells("coordination.k8s.io", "Lease", obj("free", spec={}))[1] == ""


# -- RBAC, scheduling, policy ---------------------------------------------------------


def test_role_bindings() -> None:
    assert header("rbac.authorization.k8s.io", "RoleBinding") == [
        "Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"]
    rb = obj("editors", roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                 "name": "editor"},
             subjects=[{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
                       {"kind": "ServiceAccount", "name": "builder", "namespace": "ci"},
                       {"kind": "User", "name": "bob"}])
    assert cells("rbac.authorization.k8s.io", "RoleBinding", rb) == [
        "editors", "Role/editor", "4h", "alice, bob", "devs", "ci/builder"]
    crb = obj("admins", namespace=None, roleRef={"kind": "ClusterRole", "name": "cluster-admin"})
    assert cells("rbac.authorization.k8s.io", "ClusterRoleBinding", crb) == [
        "admins", "ClusterRole/cluster-admin", "4h", "", "", ""]
    defs = table("rbac.authorization.k8s.io", "ClusterRoleBinding", crb)["columnDefinitions"]
    assert defs[3]["description"] == "Users in the clusterRoleBinding"


def test_priority_classes() -> None:
    assert [(c["name"], c["type"]) for c in table(
        "scheduling.k8s.io", "PriorityClass", obj("x", None))["columnDefinitions"]] == [
        ("Name", "string"), ("Value", "integer"), ("Global-Default", "boolean"), ("Age", "string"),
        ("PreemptionPolicy", "string")]
    pc = obj("high", namespace=None, value=1000000, preemptionPolicy="PreemptLowerPriority")
    assert cells("scheduling.k8s.io", "PriorityClass", pc) == [
        "high", 1000000, False, "4h", "PreemptLowerPriority"]
    pc.update(globalDefault=True, value=-5)
    assert cells("scheduling.k8s.io", "PriorityClass", pc)[1:3] == [-5, True]


def test_pod_disruption_budgets() -> None:
    assert header("policy", "PodDisruptionBudget") == [
        "Name", "Min Available", "Max Unavailable", "Allowed Disruptions", "Age"]
    pdb = obj("web", spec={"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
              status={"disruptionsAllowed": 1, "currentHealthy": 3, "desiredHealthy": 2})
    assert cells("policy", "PodDisruptionBudget", pdb) == ["web", "2", "N/A", 1, "4h"]
    pdb["spec"] = {"maxUnavailable": "25%"}
    assert cells("policy", "PodDisruptionBudget", pdb)[1:4] == ["N/A", "25%", 1]


def test_resource_quota() -> None:
    quota = obj("compute", status={
        "hard": {"pods": "10", "requests.cpu": "4", "limits.memory": "8Gi", "limits.cpu": "8",
                 "requests.memory": 4294967296},
        "used": {"pods": "3", "requests.cpu": "500m", "requests.memory": "1Gi"}})
    assert cells("", "ResourceQuota", quota) == [
        "compute", "pods: 3/10, requests.cpu: 500m/4, requests.memory: 1Gi/4294967296",
        "limits.cpu: 0/8, limits.memory: 0/8Gi", "4h"]
    assert cells("", "ResourceQuota", obj("empty"))[1:3] == ["", ""]


def test_persistent_volume_claims() -> None:
    assert header("", "PersistentVolumeClaim") == [
        "Name", "Status", "Volume", "Capacity", "Access Modes", "StorageClass",
        "VolumeAttributesClass", "Age", "VolumeMode"]
    bound = obj("data", spec={"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                              "volumeName": "pv-1", "volumeMode": "Filesystem",
                              "resources": {"requests": {"storage": "5Gi"}}},
                status={"phase": "Bound", "capacity": {"storage": "10Gi"},
                        "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"]})
    assert cells("", "PersistentVolumeClaim", bound) == [
        "data", "Bound", "pv-1", "10Gi", "RWO,RWX", "standard", "<unset>", "4h", "Filesystem"]
    pending = obj("scratch", spec={"accessModes": ["ReadWriteOnce"],
                                   "resources": {"requests": {"storage": "1Gi"}}},
                  status={"phase": "Pending"})
    pending["metadata"]["annotations"] = {"volume.beta.kubernetes.io/storage-class": "slow"}
    assert cells("", "PersistentVolumeClaim", pending) == [
        "scratch", "Pending", "", "", "", "slow", "<unset>", "4h", "<unset>"]
    pending["metadata"]["deletionTimestamp"] = ago(seconds=1)
    assert cells("", "PersistentVolumeClaim", pending)[1] == "Terminating"
