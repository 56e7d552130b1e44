"""Scheduler configuration in the shape of KubeSchedulerConfiguration
(kubescheduler.config.k8s.io/v1): profiles with a schedulerName, plugins
enabled and disabled per extension point (multiPoint, filter, score,
postFilter), score weights, pluginConfig args, percentageOfNodesToScore.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from timonel.scheduler.framework import Plugin, Profile
from timonel.scheduler.plugins import DEFAULT_FILTERS, DEFAULT_SCORE_WEIGHTS, REGISTRY

DEFAULT_SCHEDULER_NAME = "default-scheduler"
PREEMPTION = "DefaultPreemption"
API_VERSION = "kubescheduler.config.k8s.io/v1"


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says where and why."""


@dataclass
class SchedulerConfiguration:
    profiles: list[dict[str, Any]] = field(
        default_factory=lambda: [{"schedulerName": DEFAULT_SCHEDULER_NAME}])
    percentage_of_nodes_to_score: int = 0
    pod_initial_backoff_seconds: float = 1.0
    pod_max_backoff_seconds: float = 10.0
    # How long a pod stays unschedulable before it is retried anyway.
    pod_max_in_unschedulable_seconds: float = 300.0
    lease_name: str = "kube-scheduler"
    lease_namespace: str = "kube-system"

    def build_profiles(self) -> list[Profile]:
        profiles = [build_profile(p, self.percentage_of_nodes_to_score, f"profiles[{i}]")
                    for i, p in enumerate(self.profiles)]
        names = [p.scheduler_name for p in profiles]
        for n in names:
            if names.count(n) > 1:
                raise ConfigError(f"profiles: schedulerName {n!r} is used by more than one "
                                  "profile; give each profile its own name")
        return profiles


def _names(section: Any, where: str) -> list[tuple[str, int]]:
    if section is None:
        return []
    if not isinstance(section, list):
        raise ConfigError(f"{where}: must be a list of {{name, weight}} entries")
    out = []
    for i, e in enumerate(section):
        if not isinstance(e, dict) or not isinstance(e.get("name"), str):
            raise ConfigError(f"{where}[{i}]: needs a plugin name, e.g. {{name: NodePorts}}")
        w = e.get("weight", 0)
        if not isinstance(w, int) or w < 0:
            raise ConfigError(f"{where}[{i}].weight: must be a non-negative integer, got {w!r}")
        name = e["name"]
        if name != "*" and name not in REGISTRY and name != PREEMPTION:
            raise ConfigError(f"{where}[{i}].name: unknown plugin {name!r}; known plugins: "
                              f"{', '.join(sorted([*REGISTRY, PREEMPTION]))}")
        out.append((name, w))
    return out


def build_profile(cfg: dict[str, Any], default_percentage: int = 0, where: str = "profile") -> Profile:
    if not isinstance(cfg, dict):
        raise ConfigError(f"{where}: must be a mapping")
    name = cfg.get("schedulerName") or DEFAULT_SCHEDULER_NAME
    plugins = cfg.get("plugins") or {}
    if not isinstance(plugins, dict):
        raise ConfigError(f"{where}.plugins: must be a mapping of extension points")
    args: dict[str, dict[str, Any]] = {}
    for i, pc in enumerate(cfg.get("pluginConfig") or []):
        if not isinstance(pc, dict) or not isinstance(pc.get("name"), str):
            raise ConfigError(f"{where}.pluginConfig[{i}]: needs a plugin name and args")
        args[pc["name"]] = pc.get("args") or {}

    filters = list(DEFAULT_FILTERS)
    scores = dict(DEFAULT_SCORE_WEIGHTS)
    preemption = True

    def section(point: str, kind: str) -> list[tuple[str, int]]:
        return _names((plugins.get(point) or {}).get(kind), f"{where}.plugins.{point}.{kind}")

    for point, use_filters, use_scores in (("multiPoint", True, True), ("filter", True, False),
                                           ("score", False, True), ("postFilter", False, False)):
        for n, _ in section(point, "disabled"):
            if n == "*":
                if use_filters:
                    filters = []
                if use_scores:
                    scores = {}
                if point in ("multiPoint", "postFilter"):
                    preemption = False
                continue
            if n == PREEMPTION:
                preemption = False
            if use_filters and n in filters:
                filters.remove(n)
            if use_scores:
                scores.pop(n, None)
        for n, w in section(point, "enabled"):
            if n == PREEMPTION:
                preemption = True
                continue
            proto = REGISTRY[n](args.get(n))
            if use_filters and proto.filter is not None and n not in filters:
                filters.append(n)
            if use_scores and proto.score is not None:
                scores[n] = w or DEFAULT_SCORE_WEIGHTS.get(n, 1)
    built: dict[str, Plugin] = {}

    def plugin(n: str) -> Plugin:
        if n not in built:
            try:
                built[n] = REGISTRY[n](args.get(n))
            except (KeyError, TypeError, ValueError) as e:
                raise ConfigError(f"{where}.pluginConfig {n}: invalid args: {e}") from None
        return built[n]

    pct = cfg.get("percentageOfNodesToScore", default_percentage)
    if not isinstance(pct, int) or not 0 <= pct <= 100:
        raise ConfigError(f"{where}.percentageOfNodesToScore: must be an integer 0..100, got {pct!r}")
    return Profile(name, [plugin(n) for n in filters],
                   [(plugin(n), w) for n, w in scores.items()], pct or default_percentage,
                   preemption)


def default_profile(name: str = DEFAULT_SCHEDULER_NAME) -> Profile:
    return build_profile({"schedulerName": name})


def load_config(path: str) -> SchedulerConfiguration:
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"cannot read scheduler configuration {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return parse_config(doc or {}, path)


def parse_config(doc: Any, where: str = "config") -> SchedulerConfiguration:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: must be a KubeSchedulerConfiguration mapping")
    kind = doc.get("kind", "KubeSchedulerConfiguration")
    if kind != "KubeSchedulerConfiguration":
        raise ConfigError(f"{where}: kind is {kind!r}; expected KubeSchedulerConfiguration")
    cfg = SchedulerConfiguration()
    if "profiles" in doc:
        if not isinstance(doc["profiles"], list) or not doc["profiles"]:
            raise ConfigError(f"{where}: profiles must be a non-empty list")
        cfg.profiles = doc["profiles"]
    for key, attr in (("percentageOfNodesToScore", "percentage_of_nodes_to_score"),
                      ("podInitialBackoffSeconds", "pod_initial_backoff_seconds"),
                      ("podMaxBackoffSeconds", "pod_max_backoff_seconds")):
        if key in doc:
            v = doc[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                raise ConfigError(f"{where}: {key} must be a non-negative number, got {v!r}")
            setattr(cfg, attr, v)
    le = doc.get("leaderElection") or {}
    if isinstance(le, dict):
        cfg.lease_name = le.get("resourceName") or cfg.lease_name
        cfg.lease_namespace = le.get("resourceNamespace") or cfg.lease_namespace
    try:
        cfg.build_profiles()  # report problems now, not at start-up
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    return cfg
