"""A StatefulSet pod's identity: its ordinal name, labels, hostname and
subdomain, and its claims from volumeClaimTemplates (upstream's
stateful_set_utils). Pure functions over plain dicts."""

from __future__ import annotations

import copy
import re
from typing import Any

from timonel.api import meta
from timonel.controller.history import POD_REVISION_LABEL
from timonel.controller.pods import pod_from_template

Obj = dict[str, Any]

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
_ORDINAL = re.compile(r"^(.*)-([0-9]+)$")


def start_ordinal(sts: Obj) -> int:
    return int((((sts.get("spec") or {}).get("ordinals") or {}).get("start")) or 0)


def replicas(sts: Obj) -> int:
    value = (sts.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def pod_name(sts: Obj, ordinal: int) -> str:
    return f"{meta.name_of(sts)}-{ordinal}"


def ordinal_of(sts: Obj, pod: Obj) -> int | None:
    """The pod's ordinal if its name is `<set>-<n>`, else None."""
    m = _ORDINAL.match(meta.name_of(pod))
    if m is None or m.group(1) != meta.name_of(sts):
        return None
    return int(m.group(2))


def claim_name(template_name: str, sts: Obj, ordinal: int) -> str:
    return f"{template_name}-{pod_name(sts, ordinal)}"


def claims_for(sts: Obj, ordinal: int) -> list[Obj]:
    """The PersistentVolumeClaims a pod of this ordinal uses (not yet created)."""
    spec = sts.get("spec") or {}
    match_labels = ((spec.get("selector") or {}).get("matchLabels")) or {}
    out = []
    for tmpl in spec.get("volumeClaimTemplates") or []:
        tmd = tmpl.get("metadata") or {}
        labels = {**(tmd.get("labels") or {}), **match_labels}
        md: Obj = {"name": claim_name(str(tmd.get("name") or ""), sts, ordinal),
                   "namespace": meta.namespace_of(sts)}
        if labels:
            md["labels"] = labels
        if tmd.get("annotations"):
            md["annotations"] = dict(tmd["annotations"])
        out.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": md,
                    "spec": copy.deepcopy(tmpl.get("spec") or {})})
    return out


def set_identity(pod: Obj, sts: Obj, ordinal: int) -> None:
    """Name, identity labels, hostname and subdomain (upstream's updateIdentity)."""
    name = pod_name(sts, ordinal)
    md = pod.setdefault("metadata", {})
    md["name"] = name
    md.pop("generateName", None)
    md["namespace"] = meta.namespace_of(sts)
    labels = md.setdefault("labels", {})
    labels[POD_NAME_LABEL] = name
    labels[POD_INDEX_LABEL] = str(ordinal)
    spec = pod.setdefault("spec", {})
    spec["hostname"] = name
    service = (sts.get("spec") or {}).get("serviceName")
    if service:
        spec["subdomain"] = service


def identity_matches(pod: Obj, sts: Obj, ordinal: int) -> bool:
    labels = meta.labels_of(pod)
    name = pod_name(sts, ordinal)
    return (meta.name_of(pod) == name and meta.namespace_of(pod) == meta.namespace_of(sts)
            and labels.get(POD_NAME_LABEL) == name
            and labels.get(POD_INDEX_LABEL) == str(ordinal))


def set_storage(pod: Obj, sts: Obj, ordinal: int) -> None:
    """Point the pod's volumes named like a claim template at that claim."""
    spec = pod.setdefault("spec", {})
    volumes = [v for v in spec.get("volumes") or []]
    for tmpl in (sts.get("spec") or {}).get("volumeClaimTemplates") or []:
        vname = str((tmpl.get("metadata") or {}).get("name") or "")
        vol = {"name": vname, "persistentVolumeClaim": {
            "claimName": claim_name(vname, sts, ordinal)}}
        for i, v in enumerate(volumes):
            if v.get("name") == vname:
                volumes[i] = vol
                break
        else:
            volumes.append(vol)
    if volumes:
        spec["volumes"] = volumes


def new_pod(sts: Obj, template: Obj, ordinal: int, revision: str) -> Obj:
    """The pod for `ordinal` from a revision's template."""
    pod = pod_from_template(template, sts, name=pod_name(sts, ordinal))
    set_identity(pod, sts, ordinal)
    set_storage(pod, sts, ordinal)
    pod["metadata"].setdefault("labels", {})[POD_REVISION_LABEL] = revision
    return pod


def pod_revision(pod: Obj) -> str:
    return meta.labels_of(pod).get(POD_REVISION_LABEL, "")
