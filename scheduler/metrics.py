"""Scheduler metrics on a registry of its own (the process may also serve
the API server's): attempts by result, attempt latency, decision latency,
preemption, and the pending pods per queue read at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

SCHEDULED, UNSCHEDULABLE, ERROR = "scheduled", "unschedulable", "error"
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
            1.0, 2.5, 5.0, 10.0)


class _Pending(Collector):
    def __init__(self, owner: SchedulerMetrics) -> None:
        self.owner = owner

    def collect(self) -> Iterator[Metric]:
        g = GaugeMetricFamily("scheduler_pending_pods", "Pending pods, by queue.",
                              labels=["queue"])
        source = self.owner.pending_source
        for queue, n in (source() if source is not None else {}).items():
            g.add_metric([queue], n)
        yield g


class SchedulerMetrics:
    def __init__(self) -> None:
        # The queue sizes to report; set by the scheduler that uses these metrics.
        self.pending_source: Callable[[], dict[str, int]] | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.attempts = Counter("scheduler_schedule_attempts", "Scheduling attempts, by result.",
                                ["result", "profile"], registry=r)
        self.attempt_duration = Histogram(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency (algorithm, preemption and assume; binding is async).",
            ["result", "profile"], buckets=_BUCKETS, registry=r)
        self.algorithm_duration = Histogram(
            "scheduler_scheduling_algorithm_duration_seconds",
            "Time to pick a node: filter and score.", buckets=_BUCKETS, registry=r)
        self.e2e_duration = Histogram(
            "scheduler_pod_scheduling_duration_seconds",
            "From first queued to bound, over all attempts.", buckets=_BUCKETS, registry=r)
        self.binding_duration = Histogram(
            "scheduler_binding_duration_seconds", "Latency of the binding write.",
            buckets=_BUCKETS, registry=r)
        self.preemption_attempts = Counter("scheduler_preemption_attempts",
                                           "Preemption attempts.", registry=r)
        self.preemption_victims = Counter("scheduler_preemption_victims",
                                          "Pods evicted by preemption.", registry=r)
        r.register(_Pending(self))

    def attempt(self, result: str, profile: str, seconds: float) -> None:
        self.attempts.labels(result, profile).inc()
        self.attempt_duration.labels(result, profile).observe(seconds)
