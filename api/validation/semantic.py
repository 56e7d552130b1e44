"""What schemas cannot express: names, label syntax, per-kind rules, immutable fields.

Checks follow kube-apiserver's Validate<Kind> functions and print the same
messages, so `kubectl` shows users what a real cluster would. Unset fields
that upstream defaults before validating are not required here: defaulting
(`api/defaults.py`) runs first, and a missing default should not turn into a
refused write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from timonel.api.resources import ResourceType
from timonel.api.validation import field as f
from timonel.api.validation import kinds, meta, pods, workloads
from timonel.api.validation.updates import validate_update

__all__ = ["semantic_errors", "validate_update"]

Obj = dict[str, Any]


def _pod_errors(obj: Obj, creating: bool) -> list[f.Cause]:
    return pods.pod_spec_errors(obj.get("spec"), "spec", is_pod=True, creating=creating)


_KIND_RULES: dict[tuple[str, str], Callable[[Obj], list[f.Cause]]] = {
    ("", "Service"): kinds.service_errors,
    ("", "ConfigMap"): kinds.configmap_errors,
    ("", "Secret"): kinds.secret_errors,
    ("", "Node"): kinds.node_errors,
    ("", "ResourceQuota"): kinds.resource_quota_errors,
    ("", "PersistentVolumeClaim"): kinds.pvc_errors,
    ("apps", "Deployment"): workloads.deployment_errors,
    ("apps", "ReplicaSet"): workloads.replicaset_errors,
    ("apps", "DaemonSet"): workloads.daemonset_errors,
    ("apps", "StatefulSet"): workloads.statefulset_errors,
    ("batch", "Job"): workloads.job_errors,
    ("batch", "CronJob"): workloads.cronjob_errors,
    ("policy", "PodDisruptionBudget"): workloads.pdb_errors,
    ("coordination.k8s.io", "Lease"): kinds.lease_errors,
    ("discovery.k8s.io", "EndpointSlice"): kinds.endpointslice_errors,
    ("networking.k8s.io", "NetworkPolicy"): kinds.network_policy_errors,
    ("scheduling.k8s.io", "PriorityClass"): kinds.priority_class_errors,
    ("rbac.authorization.k8s.io", "Role"): kinds.role_errors,
    ("rbac.authorization.k8s.io", "ClusterRole"): kinds.cluster_role_errors,
    ("rbac.authorization.k8s.io", "RoleBinding"): kinds.role_binding_errors,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): kinds.cluster_role_binding_errors,
}


def semantic_errors(obj: Obj, rtype: ResourceType, *, creating: bool = True) -> list[f.Cause]:
    """Every rule the schema cannot express, for one object of one kind."""
    out = meta.object_meta_errors(obj.get("metadata"), rtype)
    if (rtype.group, rtype.kind) == ("", "Pod"):
        out += _pod_errors(obj, creating)
    else:
        rule = _KIND_RULES.get((rtype.group, rtype.kind))
        if rule is not None:
            out += rule(obj)
    return out
