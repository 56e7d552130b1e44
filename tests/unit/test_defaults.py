"""Defaulting as kube-apiserver does it: SetDefaults for every pod spec,
admission-style defaults for pods only."""

from __future__ import annotations

from timonel.api.defaults import apply_defaults, qos_class


def test_pod_gets_spec_and_admission_defaults() -> None:
    pod = {"spec": {"containers": [{"name": "c", "image": "busybox",
                                    "resources": {"limits": {"cpu": "1"}}}]}}
    apply_defaults(pod, "", "Pod")
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Always" and spec["dnsPolicy"] == "ClusterFirst"
    assert spec["serviceAccountName"] == "default" and spec["priority"] == 0
    assert {t["key"] for t in spec["tolerations"]} == {"node.kubernetes.io/not-ready",
                                                       "node.kubernetes.io/unreachable"}
    c = spec["containers"][0]
    assert c["imagePullPolicy"] == "Always" and c["resources"]["requests"] == {"cpu": "1"}


def test_workload_templates_get_no_admission_defaults() -> None:
    dep = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}}
    apply_defaults(dep, "apps", "Deployment")
    tspec = dep["spec"]["template"]["spec"]
    assert tspec["restartPolicy"] == "Always" and "tolerations" not in tspec
    assert "serviceAccountName" not in tspec and "priority" not in tspec
    assert tspec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate" and dep["spec"]["replicas"] == 1


def test_secret_string_data_becomes_data() -> None:
    s = {"stringData": {"k": "v"}}
    apply_defaults(s, "", "Secret")
    assert s == {"type": "Opaque", "data": {"k": "dg=="}}


def test_qos_classes() -> None:
    def pod(res: dict) -> dict:
        return {"spec": {"containers": [{"name": "c", "resources": res}]}}

    assert qos_class(pod({})) == "BestEffort"
    assert qos_class(pod({"limits": {"cpu": "1", "memory": "1Gi"},
                          "requests": {"cpu": "1", "memory": "1Gi"}})) == "Guaranteed"
    assert qos_class(pod({"requests": {"cpu": "1"}})) == "Burstable"
