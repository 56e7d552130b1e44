"""Workload validation: Deployment, ReplicaSet, DaemonSet, StatefulSet, Job, CronJob, PDB."""

from __future__ import annotations

import re
from typing import Any

from timonel.api.validation import field as f
from timonel.api.validation import meta, names, pods

Obj = dict[str, Any]

_PERCENT = re.compile("[0-9]+%")
_PERCENT_MSG = names.regex_error("a valid percent string must be a numeric string followed by an "
                                 "ending '%'", "[0-9]+%", "1%", "93%")
_NONNEG = "must be greater than or equal to 0"


def _nonneg(spec: dict[str, Any], path: str, *fields: str) -> list[f.Cause]:
    out = []
    for fld in fields:
        v = spec.get(fld)
        if isinstance(v, int) and not isinstance(v, bool) and v < 0:
            out.append(f.invalid(f.child(path, fld), v, _NONNEG))
    return out


def _int_or_percent(v: Any, path: str, *, at_most_100: bool = False) -> list[f.Cause]:
    if isinstance(v, str):
        if not _PERCENT.fullmatch(v):
            return [f.invalid(path, v, _PERCENT_MSG)]
        if at_most_100 and int(v[:-1]) > 100:
            return [f.invalid(path, v, "must not be greater than 100%")]
    elif isinstance(v, int) and v < 0:
        return [f.invalid(path, v, _NONNEG)]
    return []


def _is_zero(v: Any) -> bool:
    return v == 0 or v == "0%"


def selected_template_errors(spec: dict[str, Any], path: str, what: str, *,
                             require_selector: bool = True) -> list[f.Cause]:
    """Selector present and non-empty, and matching the template's labels."""
    out: list[f.Cause] = []
    sel_path = f.child(path, "selector")
    sel = spec.get("selector")
    if sel is None:
        if require_selector:
            out.append(f.required(sel_path))
    else:
        out.extend(meta.selector_errors(sel, sel_path))
        if meta.selector_is_empty(sel):
            out.append(f.invalid(sel_path, sel, f"empty selector is {what}"))
    tmpl = f.d(spec.get("template"))
    labels = f.d(tmpl.get("metadata")).get("labels")
    if sel is not None and not meta.selector_is_empty(sel) \
            and not meta.selector_matches(sel, labels):
        out.append(f.invalid(f.child(path, "template", "metadata", "labels"), f.d(labels),
                             "`selector` does not match template `labels`"))
    out.extend(pods.pod_template_errors(tmpl, f.child(path, "template")))
    return out


def _always_restart(spec: dict[str, Any], path: str) -> list[f.Cause]:
    """Long-running controllers only run pods that restart Always."""
    pod_spec = f.d(f.d(spec.get("template")).get("spec"))
    policy = pod_spec.get("restartPolicy", "Always")
    out = []
    if policy != "Always":
        out.append(f.not_supported(f.child(path, "template", "spec", "restartPolicy"), policy,
                                   ("Always",)))
    return out


def _replicaset_like(spec: dict[str, Any], path: str) -> list[f.Cause]:
    out = selected_template_errors(spec, path, "invalid for deployment")
    out += _always_restart(spec, path)
    if f.d(f.d(spec.get("template")).get("spec")).get("activeDeadlineSeconds") is not None:
        out.append(f.forbidden(f.child(path, "template", "spec", "activeDeadlineSeconds"),
                               "activeDeadlineSeconds in ReplicaSet is not Supported"))
    return out + _nonneg(spec, path, "replicas", "minReadySeconds")


def deployment_errors(obj: Obj) -> list[f.Cause]:
    spec, path = f.d(obj.get("spec")), "spec"
    out = _replicaset_like(spec, path)
    out += _nonneg(spec, path, "revisionHistoryLimit", "progressDeadlineSeconds")
    strategy, sp = f.d(spec.get("strategy")), f.child(path, "strategy")
    stype = strategy.get("type")
    ru, rp = strategy.get("rollingUpdate"), f.child(sp, "rollingUpdate")
    if stype == "Recreate":
        if ru is not None:
            out.append(f.forbidden(rp, "may not be specified when strategy `type` is 'Recreate'"))
    elif stype == "RollingUpdate":
        ru = f.d(ru)
        unavailable, surge = ru.get("maxUnavailable"), ru.get("maxSurge")
        out += _int_or_percent(unavailable, f.child(rp, "maxUnavailable"), at_most_100=True)
        out += _int_or_percent(surge, f.child(rp, "maxSurge"))
        if unavailable is not None and surge is not None and _is_zero(unavailable) \
                and _is_zero(surge):
            out.append(f.invalid(f.child(rp, "maxUnavailable"), unavailable,
                                 "may not be 0 when `maxSurge` is 0"))
    elif stype is not None:
        out.append(f.not_supported(f.child(sp, "type"), stype, ("Recreate", "RollingUpdate")))
    pds, mrs = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds")
    if isinstance(pds, int) and isinstance(mrs, int) and pds <= mrs:
        out.append(f.invalid(f.child(path, "progressDeadlineSeconds"), pds,
                             "must be greater than minReadySeconds"))
    return out


def replicaset_errors(obj: Obj) -> list[f.Cause]:
    return _replicaset_like(f.d(obj.get("spec")), "spec")


def daemonset_errors(obj: Obj) -> list[f.Cause]:
    spec, path = f.d(obj.get("spec")), "spec"
    out = selected_template_errors(spec, path, "invalid for daemonset")
    out += _always_restart(spec, path)
    out += _nonneg(spec, path, "minReadySeconds", "revisionHistoryLimit")
    strategy = f.d(spec.get("updateStrategy"))
    stype = strategy.get("type")
    if stype is not None and stype not in ("OnDelete", "RollingUpdate"):
        out.append(f.not_supported(f.child(path, "updateStrategy", "type"), stype,
                                   ("OnDelete", "RollingUpdate")))
    return out


def statefulset_errors(obj: Obj) -> list[f.Cause]:
    spec, path = f.d(obj.get("spec")), "spec"
    out = selected_template_errors(spec, path, "not valid for statefulset.")
    out += _always_restart(spec, path)
    out += _nonneg(spec, path, "replicas", "minReadySeconds", "revisionHistoryLimit")
    policy = spec.get("podManagementPolicy")
    if policy is not None and policy not in ("OrderedReady", "Parallel"):
        out.append(f.invalid(f.child(path, "podManagementPolicy"), policy,
                             "must be 'OrderedReady' or 'Parallel'"))
    strategy = f.d(spec.get("updateStrategy"))
    stype = strategy.get("type")
    if stype is not None and stype not in ("RollingUpdate", "OnDelete"):
        out.append(f.invalid(f.child(path, "updateStrategy"), strategy,
                             "must be 'RollingUpdate' or 'OnDelete'"))
    if f.d(f.d(spec.get("template")).get("spec")).get("activeDeadlineSeconds") is not None:
        out.append(f.invalid(f.child(path, "template", "spec", "activeDeadlineSeconds"),
                             f.d(spec["template"])["spec"]["activeDeadlineSeconds"],
                             "must not be specified"))
    return out


def job_spec_errors(spec: Any, path: str, *, require_selector: bool = True) -> list[f.Cause]:
    spec = f.d(spec)
    out = selected_template_errors(spec, path, "invalid for deployment",
                                   require_selector=require_selector)
    out += _nonneg(spec, path, "parallelism", "completions", "backoffLimit",
                   "ttlSecondsAfterFinished", "activeDeadlineSeconds")
    pod_spec = f.d(f.d(spec.get("template")).get("spec"))
    # Defaulting sets Always; a Job must say Never or OnFailure, as upstream.
    policy = pod_spec.get("restartPolicy", "Always")
    if policy not in ("OnFailure", "Never"):
        out.append(f.not_supported(f.child(path, "template", "spec", "restartPolicy"), policy,
                                   ("OnFailure", "Never")))
    mode = spec.get("completionMode")
    if mode is not None and mode not in ("NonIndexed", "Indexed"):
        out.append(f.not_supported(f.child(path, "completionMode"), mode,
                                   ("NonIndexed", "Indexed")))
    if mode == "Indexed" and spec.get("completions") is None:
        out.append(f.required(f.child(path, "completions"),
                              "when completion mode is Indexed"))
    return out


def job_errors(obj: Obj) -> list[f.Cause]:
    return job_spec_errors(obj.get("spec"), "spec")


def cronjob_errors(obj: Obj) -> list[f.Cause]:
    spec, path = f.d(obj.get("spec")), "spec"
    out = _nonneg(spec, path, "startingDeadlineSeconds", "successfulJobsHistoryLimit",
                  "failedJobsHistoryLimit")
    policy = spec.get("concurrencyPolicy")
    if policy is not None and policy not in ("Allow", "Forbid", "Replace"):
        out.append(f.not_supported(f.child(path, "concurrencyPolicy"), policy,
                                   ("Allow", "Forbid", "Replace")))
    if not f.s(spec.get("schedule")).strip():
        out.append(f.required(f.child(path, "schedule")))
    jt, jp = f.d(spec.get("jobTemplate")), f.child(path, "jobTemplate")
    out += meta.template_meta_errors(jt.get("metadata"), f.child(jp, "metadata"))
    # The selector is generated for each Job the CronJob starts.
    out += job_spec_errors(jt.get("spec"), f.child(jp, "spec"), require_selector=False)
    return out


def pdb_errors(obj: Obj) -> list[f.Cause]:
    spec, path = f.d(obj.get("spec")), "spec"
    out: list[f.Cause] = []
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        out.append(f.invalid(path, spec, "minAvailable and maxUnavailable cannot be both set"))
    for fld in ("minAvailable", "maxUnavailable"):
        out += _int_or_percent(spec.get(fld), f.child(path, fld))
    if spec.get("selector") is not None:
        out += meta.selector_errors(spec["selector"], f.child(path, "selector"))
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in ("AlwaysAllow", "IfHealthyBudget"):
        out.append(f.not_supported(f.child(path, "unhealthyPodEvictionPolicy"), policy,
                                   ("AlwaysAllow", "IfHealthyBudget")))
    return out
