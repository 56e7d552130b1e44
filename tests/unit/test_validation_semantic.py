"""Semantic validation on real manifests: what passes, and what upstream refuses, in its words."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from timonel.api.defaults import apply_defaults, job_selector_defaults
from timonel.api.errors import ApiError
from timonel.api.resources import RESOURCES, ResourceType, by_api_version_kind, by_kind
from timonel.api.validation import semantic_errors, validate
from timonel.api.validation.meta import check_request_namespace

PSS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "pss"

MANIFESTS = """
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default, labels: {app: web, tier: frontend}}
spec:
  initContainers:
  - {name: init, image: busybox:1.36, command: [sh, -c, "true"]}
  containers:
  - name: web
    image: nginx:1.25
    ports: [{name: http, containerPort: 80}]
    resources: {requests: {cpu: 250m, memory: 64Mi}, limits: {cpu: "1", memory: 128Mi}}
    livenessProbe: {httpGet: {path: /healthz, port: http}, initialDelaySeconds: 3}
    volumeMounts: [{name: conf, mountPath: /etc/nginx/conf.d, readOnly: true}]
  volumes: [{name: conf, configMap: {name: web-conf}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}, matchExpressions: [{key: tier, operator: In, values: [frontend]}]}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 25%}}
  template:
    metadata: {labels: {app: web, tier: frontend}}
    spec:
      containers: [{name: web, image: nginx:1.25, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: https, port: 443, targetPort: 8443, protocol: TCP}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web-conf, namespace: default}
data: {default.conf: "server { listen 80; }", MODE: prod}
binaryData: {logo.png: aGVsbG8=}
---
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {kubernetes.io/hostname: node-1}}
spec:
  podCIDR: 10.244.1.0/24
  podCIDRs: [10.244.1.0/24]
  taints: [{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}]
status:
  capacity: {cpu: "2", memory: 4028552Ki, pods: "110"}
  allocatable: {cpu: 1900m, memory: 3926152Ki, pods: "110"}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: node-1, namespace: kube-node-lease}
spec: {holderIdentity: node-1, leaseDurationSeconds: 40, renewTime: "2025-01-01T00:00:00.000000Z"}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: read-pods, namespace: default}
subjects:
- {kind: User, name: jane, apiGroup: rbac.authorization.k8s.io}
- {kind: ServiceAccount, name: default, namespace: default}
roleRef: {kind: Role, name: "pod-reader:v1", apiGroup: rbac.authorization.k8s.io}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:pod-reader"}
rules:
- {apiGroups: [""], resources: [pods, pods/log], verbs: [get, list, watch]}
- {nonResourceURLs: [/healthz], verbs: [get]}
---
apiVersion: v1
kind: Secret
metadata: {name: tls, namespace: default}
type: kubernetes.io/tls
data: {tls.crt: Y2VydA==, tls.key: a2V5}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: default}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: run, image: busybox, command: [date]}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: default}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: postgres:16}]}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec: {minAvailable: 50%, selector: {matchLabels: {app: web}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: default}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}}], ports: [{port: 80, protocol: TCP}]}]
"""


def manifests() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFESTS) if d]


def rtype_of(obj: dict[str, Any]) -> ResourceType:
    rt = by_api_version_kind(obj["apiVersion"], obj["kind"])
    assert rt is not None
    return rt


def causes_of(obj: dict[str, Any], rtype: ResourceType | None = None,
              old: dict[str, Any] | None = None) -> list[dict[str, str]]:
    with pytest.raises(ApiError) as e:
        validate(obj, rtype or rtype_of(obj), old=old)
    assert e.value.code == 422, e.value.message
    assert e.value.reason == "Invalid"
    return e.value.causes or []


def messages(causes: list[dict[str, str]]) -> list[str]:
    return [f"{c['field']}: {c['message']}" for c in causes]


@pytest.mark.parametrize("obj", manifests(), ids=lambda o: o["kind"])
def test_valid_manifests_pass_as_written_and_after_defaulting(obj: dict[str, Any]) -> None:
    rt = rtype_of(obj)
    assert validate(copy.deepcopy(obj), rt) == []
    apply_defaults(obj, rt.group, rt.kind)
    assert validate(obj, rt) == []


def test_job_passes_with_its_generated_selector() -> None:
    job: dict[str, Any] = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "ns"},
           "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
               {"name": "pi", "image": "perl", "command": ["perl", "-e", "print 1"]}]}}}}
    rt = by_kind("batch", "Job")
    assert rt is not None
    apply_defaults(job, "batch", "Job")
    # Without the generated selector upstream refuses too.
    assert "spec.selector: Required value" in messages(causes_of(copy.deepcopy(job), rt))
    job_selector_defaults(job, "8a1b7c2e-0000-4000-8000-000000000001")
    assert validate(job, rt) == []


def test_job_restart_policy_must_be_never_or_on_failure() -> None:
    job: dict[str, Any] = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "ns"},
           "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
               "metadata": {"labels": {"a": "b"}},
               "spec": {"containers": [{"name": "pi", "image": "perl"}]}}}}
    assert messages(causes_of(job)) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: '
        '"OnFailure", "Never"']


def _pod(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"containers": [{"name": "app", "image": "busybox"}]}
    base.update(spec)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"}, "spec": base}


def test_bad_object_names() -> None:
    pod = _pod()
    pod["metadata"]["name"] = "Foo_bar"
    assert messages(causes_of(pod)) == [
        'metadata.name: Invalid value: "Foo_bar": a lowercase RFC 1123 subdomain must consist of '
        "lower case alphanumeric characters, '-' or '.', and must start and end with an "
        "alphanumeric character (e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}}
    assert messages(causes_of(ns)) == ['metadata.name: Invalid value: "a.b": must not contain dots']
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1web", "namespace": "d"},
           "spec": {"ports": [{"port": 80}]}}
    assert "a DNS-1035 label must consist of" in causes_of(svc)[0]["message"]
    long = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a" * 254, "namespace": "d"}}
    assert causes_of(long)[0]["message"].endswith("must be no more than 253 bytes")
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "a/b", "namespace": "d"}, "rules": []}
    assert messages(causes_of(role)) == ["metadata.name: Invalid value: \"a/b\": may not contain '/'"]


def test_name_or_generate_name_required_and_generate_name_checked() -> None:
    pod = _pod()
    del pod["metadata"]["name"]
    assert messages(causes_of(pod)) == [
        "metadata.name: Required value: name or generateName is required"]
    pod["metadata"].update(name="web-x7k2p", generateName="web-")
    assert validate(pod, rtype_of(pod)) == []
    pod["metadata"]["generateName"] = "Web-"
    assert causes_of(pod)[0]["field"] == "metadata.generateName"


def test_namespace_required_for_namespaced_and_forbidden_for_cluster_kinds() -> None:
    pod = _pod()
    del pod["metadata"]["namespace"]
    assert messages(causes_of(pod)) == ["metadata.namespace: Required value"]
    node: dict[str, Any] = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n", "namespace": "x"}}
    assert messages(causes_of(node)) == ["metadata.namespace: Forbidden: not allowed on this type"]


def test_request_namespace_is_filled_cleared_or_refused() -> None:
    pod, node = _pod(), {"metadata": {"name": "n", "namespace": "x"}}
    pod_rt, node_rt = by_kind("", "Pod"), by_kind("", "Node")
    assert pod_rt is not None and node_rt is not None
    del pod["metadata"]["namespace"]
    check_request_namespace(pod, pod_rt, "team-a")
    assert pod["metadata"]["namespace"] == "team-a"
    check_request_namespace(node, node_rt, "")
    assert "namespace" not in node["metadata"]
    with pytest.raises(ApiError) as e:
        check_request_namespace(pod, pod_rt, "team-b")
    assert e.value.code == 400
    assert e.value.message == ("the namespace of the provided object does not match the namespace "
                               "sent on the request")


def test_labels_and_annotations_syntax() -> None:
    pod = _pod()
    pod["metadata"]["labels"] = {"app": "web", "bad key": "x", "ok": "-bad-", "x" * 64: "v"}
    pod["metadata"]["annotations"] = {"Example.COM/Mixed-Case": "fine", "a/b/c": "x"}
    got = messages(causes_of(pod))
    assert any(m.startswith('metadata.labels: Invalid value: "bad key": name part must consist of')
               for m in got)
    assert any(m.startswith('metadata.labels: Invalid value: "-bad-": a valid label must be an '
                            "empty string") for m in got)
    assert f'metadata.labels: Invalid value: "{"x" * 64}": name part must be no more than 63 ' \
           "bytes" in got
    assert any(m.startswith('metadata.annotations: Invalid value: "a/b/c": a valid label key must '
                            "consist of") for m in got)
    assert len(got) == 4


def test_annotations_total_size_is_limited_to_256k() -> None:
    pod = _pod()
    pod["metadata"]["annotations"] = {"big": "x" * (256 * 1024)}
    assert messages(causes_of(pod)) == [
        "metadata.annotations: Too long: may not be more than 262144 bytes"]
    pod["metadata"]["annotations"] = {"big": "x" * (256 * 1024 - 3)}
    assert validate(pod, rtype_of(pod)) == []


def test_pod_needs_a_container() -> None:
    assert messages(causes_of(_pod(containers=[]))) == ["spec.containers: Required value"]


def test_container_names_unique_across_init_and_regular_containers() -> None:
    pod = _pod(containers=[{"name": "app", "image": "a"}, {"name": "app", "image": "b"}],
               initContainers=[{"name": "app", "image": "c"}, {"name": "Init_1", "image": "d"}])
    got = messages(causes_of(pod))
    assert 'spec.containers[1].name: Duplicate value: "app"' in got
    assert 'spec.initContainers[0].name: Duplicate value: "app"' in got
    assert any(m.startswith('spec.initContainers[1].name: Invalid value: "Init_1": a lowercase '
                            "RFC 1123 label must consist of") for m in got)


def test_container_required_fields_and_enums() -> None:
    pod = _pod(containers=[{"name": "", "image": "", "imagePullPolicy": "Sometimes",
                            "terminationMessagePolicy": "Stdout"}], restartPolicy="Maybe",
               dnsPolicy="Nope")
    got = messages(causes_of(pod))
    assert "spec.containers[0].name: Required value" in got
    assert "spec.containers[0].image: Required value" in got
    assert ('spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported '
            'values: "Always", "IfNotPresent", "Never"') in got
    assert ('spec.containers[0].terminationMessagePolicy: Unsupported value: "Stdout": supported '
            'values: "File", "FallbackToLogsOnError"') in got
    assert ('spec.restartPolicy: Unsupported value: "Maybe": supported values: "Always", '
            '"OnFailure", "Never"') in got
    assert any(m.startswith('spec.dnsPolicy: Unsupported value: "Nope"') for m in got)


def test_port_numbers_names_and_protocols() -> None:
    pod = _pod(containers=[{"name": "app", "image": "a", "ports": [
        {"containerPort": 70000, "hostPort": -1},
        {"containerPort": 80, "name": "HTTP", "protocol": "tcp"},
        {"containerPort": 81, "name": "web"}, {"containerPort": 82, "name": "web"}]}])
    got = messages(causes_of(pod))
    assert ("spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 "
            "and 65535, inclusive") in got
    assert ("spec.containers[0].ports[0].hostPort: Invalid value: -1: must be between 1 and "
            "65535, inclusive") in got
    assert ('spec.containers[0].ports[1].name: Invalid value: "HTTP": must contain only '
            "alpha-numeric characters (a-z, 0-9), and hyphens (-)") in got
    assert ('spec.containers[0].ports[1].protocol: Unsupported value: "tcp": supported values: '
            '"SCTP", "TCP", "UDP"') in got
    assert 'spec.containers[0].ports[3].name: Duplicate value: "web"' in got


def test_resources_quantities_and_requests_not_above_limits() -> None:
    pod = _pod(containers=[{"name": "app", "image": "a", "resources": {
        "requests": {"cpu": "2000m", "memory": "-1", "example.com/gpu": "1"},
        "limits": {"cpu": "1", "gpus": "1"}}}])
    got = messages(causes_of(pod))
    assert ('spec.containers[0].resources.requests: Invalid value: "2": must be less than or '
            "equal to cpu limit of 1") in got
    assert ('spec.containers[0].resources.requests[memory]: Invalid value: "-1": must be greater '
            "than or equal to 0") in got
    assert ('spec.containers[0].resources.limits[gpus]: Invalid value: "gpus": must be a standard '
            "resource for containers") in got
    assert ("spec.containers[0].resources.limits: Required value: Limit must be set for non "
            "overcommitable resources") in got


def test_volume_mounts_must_name_a_volume() -> None:
    pod = _pod(containers=[{"name": "app", "image": "a", "volumeMounts": [
        {"name": "data", "mountPath": "/data"}, {"name": "cache", "mountPath": "/data"}]}],
        volumes=[{"name": "cache", "emptyDir": {}}, {"name": "cache", "emptyDir": {}}])
    got = messages(causes_of(pod))
    assert 'spec.containers[0].volumeMounts[0].name: Not found: "data"' in got
    assert 'spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/data": must be unique' \
        in got
    assert 'spec.volumes[1].name: Duplicate value: "cache"' in got


def test_probes_need_exactly_one_handler() -> None:
    pod = _pod(containers=[{"name": "app", "image": "a", "livenessProbe": {"periodSeconds": 3},
                            "readinessProbe": {"exec": {"command": ["true"]},
                                               "tcpSocket": {"port": 80}}}])
    got = messages(causes_of(pod))
    assert "spec.containers[0].livenessProbe: Required value: must specify a handler type" in got
    assert ("spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 "
            "handler type") in got


def test_tolerations() -> None:
    pod = _pod(tolerations=[{"operator": "Equal", "value": "x"},
                            {"key": "k", "operator": "Exists", "value": "v"},
                            {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}])
    got = messages(causes_of(pod))
    assert ('spec.tolerations[0].operator: Invalid value: "Equal": operator must be Exists when '
            '`key` is empty, which means "match all values and all keys"') in got
    assert any(m.startswith("spec.tolerations[1].operator: Invalid value: {") and
               m.endswith("value must be empty when `operator` is 'Exists'") for m in got)
    assert ('spec.tolerations[2].effect: Invalid value: "NoSchedule": effect must be '
            "'NoExecute' when `tolerationSeconds` is set") in got


def test_workload_selector_required_and_matching_template() -> None:
    dep: dict[str, Any] = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "d"},
           "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "w", "image": "nginx"}]}}}}
    assert messages(causes_of(copy.deepcopy(dep))) == ["spec.selector: Required value"]
    dep["spec"]["selector"] = {"matchLabels": {"app": "api"}}
    assert messages(causes_of(copy.deepcopy(dep))) == [
        'spec.template.metadata.labels: Invalid value: {"app":"web"}: `selector` does not match '
        "template `labels`"]
    dep["spec"]["selector"] = {}
    assert messages(causes_of(copy.deepcopy(dep))) == [
        "spec.selector: Invalid value: {}: empty selector is invalid for deployment"]
    ds = copy.deepcopy(dep)
    ds["kind"] = "DaemonSet"
    ds["spec"]["selector"] = {"matchExpressions": [{"key": "app", "operator": "Is"}]}
    got = messages(causes_of(ds))
    assert 'spec.selector.matchExpressions[0].operator: Invalid value: "Is": not a valid ' \
           "selector operator" in got
    dep["spec"]["selector"] = {"matchLabels": {"app": "web"}}
    dep["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert messages(causes_of(dep)) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"']


def test_service_ports_and_type() -> None:
    svc: dict[str, Any] = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "d"},
           "spec": {"type": "Internal", "ports": [{"port": 0}, {"port": 80, "name": "x"},
                                                  {"port": 80, "name": "x", "nodePort": 30080}]}}
    got = messages(causes_of(svc))
    assert ('spec.type: Unsupported value: "Internal": supported values: "ClusterIP", '
            '"ExternalName", "LoadBalancer", "NodePort"') in got
    assert "spec.ports[0].name: Required value" in got
    assert "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive" in got
    assert 'spec.ports[2].name: Duplicate value: "x"' in got
    assert 'spec.ports[2]: Duplicate value: {"port":80,"protocol":"TCP"}' in got
    no_ports: dict[str, Any] = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "w", "namespace": "d"},
                "spec": {"selector": {"app": "w"}}}
    assert messages(causes_of(no_ports)) == ["spec.ports: Required value"]
    headless = copy.deepcopy(no_ports)
    headless["spec"]["clusterIP"] = "None"
    assert validate(headless, rtype_of(headless)) == []
    ext = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "w", "namespace": "d"},
           "spec": {"type": "ExternalName", "externalName": "db.example.com."}}
    assert validate(ext, rtype_of(ext)) == []


def test_configmap_and_secret_keys_and_types() -> None:
    cm: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "d"},
          "data": {"bad key": "x", "..hidden": "y", "dup": "z"}, "binaryData": {"dup": "eg=="}}
    got = messages(causes_of(cm))
    assert any(m.startswith('data[bad key]: Invalid value: "bad key": a valid config key must '
                            "consist of alphanumeric characters") for m in got)
    assert "data[..hidden]: Invalid value: \"..hidden\": must not start with '..'" in got
    assert 'data[dup]: Invalid value: "dup": duplicate of key present in binaryData' in got
    tls: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d"},
           "type": "kubernetes.io/tls", "stringData": {"tls.crt": "cert"}}
    assert messages(causes_of(tls)) == ["data[tls.key]: Required value"]


def test_node_taints_and_cidrs() -> None:
    node: dict[str, Any] = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"},
            "spec": {"podCIDRs": ["10.0.0.0/33"],
                     "taints": [{"key": "a", "effect": "NoSchedule"},
                                {"key": "a", "effect": "NoSchedule", "value": "b"},
                                {"key": "b", "effect": "Sometimes"}]}}
    got = messages(causes_of(node))
    assert ('spec.podCIDRs[0]: Invalid value: "10.0.0.0/33": must be a valid CIDR value, (e.g. '
            "10.9.8.0/24 or 2001:db8::/64)") in got
    assert any(m.startswith("spec.taints[1]: Duplicate value: {") and
               m.endswith("taints must be unique by key and effect pair") for m in got)
    assert ('spec.taints[2].effect: Unsupported value: "Sometimes": supported values: '
            '"NoSchedule", "PreferNoSchedule", "NoExecute"') in got


def test_role_binding_refs_and_subjects() -> None:
    rb: dict[str, Any] = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
          "metadata": {"name": "x"},
          "roleRef": {"kind": "Role", "name": "r", "apiGroup": "rbac.authorization.k8s.io"},
          "subjects": [{"kind": "ServiceAccount", "name": "sa"}, {"kind": "Robot", "name": "r2"}]}
    got = messages(causes_of(rb))
    assert 'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"' in got
    assert "subjects[0].namespace: Required value" in got
    assert ('subjects[1].kind: Unsupported value: "Robot": supported values: "ServiceAccount", '
            '"User", "Group"') in got


def test_every_registered_kind_validates_a_minimal_object() -> None:
    """No kind crashes the validators, and the metadata rules apply to all of them."""
    for rt in RESOURCES:
        md: dict[str, Any] = {"name": "bad/name"}
        if rt.namespaced:
            md["namespace"] = "default"
        causes = semantic_errors({"metadata": md}, rt)
        assert any(c["field"] == "metadata.name" for c in causes), rt.kind


def _pss_pods() -> list[Path]:
    return sorted(PSS_DIR.glob("*/*/*.yaml"))


@pytest.mark.skipif(not PSS_DIR.is_dir(), reason=f"PSS fixtures not found at {PSS_DIR}")
@pytest.mark.parametrize("path", _pss_pods(), ids=lambda p: "/".join(p.parts[-3:]))
def test_pss_fixture_pods_are_valid(path: Path) -> None:
    """Pass or fail for a policy level, every PSS fixture is a valid Pod."""
    for pod in (d for d in yaml.safe_load_all(path.read_text()) if d):
        # The fixtures' names carry '_' ("capabilities_baseline0"), which no Kubernetes
        # name may: upstream's PSS test harness names its pods itself. The rest is as written.
        pod["metadata"]["name"] = pod["metadata"]["name"].replace("_", "-")
        pod["metadata"]["namespace"] = "default"
        rt = rtype_of(pod)
        assert validate(copy.deepcopy(pod), rt) == [], path
        apply_defaults(pod, rt.group, rt.kind)
        assert validate(pod, rt) == [], path
