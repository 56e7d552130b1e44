"""Prometheus metrics of one API server, served on `GET /metrics`.

Each server owns its registry (not prometheus-client's global one), so two
servers in one process, as in tests, keep separate counts. Series names,
labels and bucket layouts follow the upstream kube-apiserver so existing
dashboards and alerts read them unchanged.

Every observe runs on the request path: label children are cached in plain
dicts so a call is a dict lookup plus the increment (a few µs).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, choose_encoder, generate_latest

log = logging.getLogger(__name__)

# Upstream's layout for apiserver_request_duration_seconds, shared by
# etcd_request_duration_seconds so the two can be compared bucket by bucket.
REQUEST_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0,
                   4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0)
COMPONENT = "apiserver"

_REQUEST_LABELS = ("verb", "group", "version", "resource", "subresource", "scope", "component")
_LONGRUNNING_LABELS = _REQUEST_LABELS


class Metrics:
    """The metric families of one server and cached handles to their series.

    Verbs are Kubernetes request verbs (`get`, `list`, `watch`, `create`,
    `update`, `patch`, `delete`, `deletecollection`, ...) or HTTP methods
    for non-resource paths; they are reported upper-case, as upstream does.
    `scope` is `namespace`, `cluster`, `resource` or empty, as upstream.
    """

    def __init__(self, process_metrics: bool = True) -> None:
        # `*_created` series exist in no upstream component and would double
        # the output; the switch is process-wide in prometheus-client.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=False)
        reg = self.registry
        self.requests = Counter(
            "apiserver_request_total",
            "Counter of apiserver requests broken out for each verb, API resource and "
            "HTTP response code.",
            [*_REQUEST_LABELS, "code"], registry=reg,
        )
        self.request_duration = Histogram(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, API resource and "
            "subresource.",
            _REQUEST_LABELS, buckets=REQUEST_BUCKETS, registry=reg,
        )
        self.longrunning = Gauge(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests broken out by verb, "
            "API resource and scope.",
            _LONGRUNNING_LABELS, registry=reg,
        )
        self.etcd_duration = Histogram(
            "etcd_request_duration_seconds",
            "Etcd request latency in seconds for each operation and object type.",
            ("operation", "type"), buckets=REQUEST_BUCKETS, registry=reg,
        )
        self.wc_received = Counter(
            "apiserver_watch_cache_events_received_total",
            "Counter of events received in watch cache broken by resource type.",
            ("resource",), registry=reg,
        )
        self.wc_dispatched = Counter(
            "apiserver_watch_cache_events_dispatched_total",
            "Counter of events dispatched in watch cache broken by resource type.",
            ("resource",), registry=reg,
        )
        self.registered_watchers = Gauge(
            "apiserver_registered_watchers",
            "Number of currently registered watchers for a given resource.",
            ("resource",), registry=reg,
        )
        if process_metrics:
            ProcessCollector(registry=reg)
        self._request_children: dict[tuple, tuple[Any, Any]] = {}
        self._children: dict[tuple, Any] = {}

    # --- requests ---------------------------------------------------------

    def observe_request(
        self, verb: str, resource: str, code: int, seconds: float, *,
        group: str = "", version: str = "", subresource: str = "", scope: str = "",
    ) -> None:
        """Count one finished request and record its latency.

        For a watch, call this when the stream ends: upstream records
        watches the same way, which is why latency queries exclude WATCH.
        """
        key = (verb, group, version, resource, subresource, scope, code)
        pair = self._request_children.get(key)
        if pair is None:
            labels = (verb.upper(), group, version, resource, subresource, scope, COMPONENT)
            pair = (self.requests.labels(*labels, str(code)),
                    self.request_duration.labels(*labels))
            self._request_children[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)

    def watch_started(
        self, resource: str, *, group: str = "", version: str = "", subresource: str = "",
        scope: str = "",
    ) -> None:
        self._longrunning(resource, group, version, subresource, scope).inc()

    def watch_ended(
        self, resource: str, *, group: str = "", version: str = "", subresource: str = "",
        scope: str = "",
    ) -> None:
        self._longrunning(resource, group, version, subresource, scope).dec()

    @contextlib.contextmanager
    def tracking_watch(self, resource: str, **labels: str) -> Iterator[None]:
        """`with metrics.tracking_watch("pods"):` around a watch stream, so the
        gauge comes down however the stream ends."""
        self.watch_started(resource, **labels)
        try:
            yield
        finally:
            self.watch_ended(resource, **labels)

    def _longrunning(
        self, resource: str, group: str, version: str, subresource: str, scope: str,
    ) -> Any:
        key = ("lr", resource, group, version, subresource, scope)
        child = self._children.get(key)
        if child is None:
            child = self.longrunning.labels("WATCH", group, version, resource, subresource,
                                            scope, COMPONENT)
            self._children[key] = child
        return child

    # --- storage and watch cache -----------------------------------------

    def observe_etcd(self, op: str, resource: str, seconds: float) -> None:
        """One etcd round trip: `op` is get, list, create, update, delete, ..."""
        key = ("etcd", op, resource)
        child = self._children.get(key)
        if child is None:
            child = self.etcd_duration.labels(op, resource)
            self._children[key] = child
        child.observe(seconds)

    def watch_cache_events(self, resource: str, n: int = 1) -> None:
        """Events the watch cache received from etcd."""
        self._child(self.wc_received, "wcr", resource).inc(n)

    def watch_cache_dispatched(self, resource: str, n: int = 1) -> None:
        """Events the watch cache handed to client watchers (fan-out width)."""
        self._child(self.wc_dispatched, "wcd", resource).inc(n)

    def set_registered_watchers(self, resource: str, n: int) -> None:
        self._child(self.registered_watchers, "rw", resource).set(n)

    def watcher_registered(self, resource: str) -> None:
        self._child(self.registered_watchers, "rw", resource).inc()

    def watcher_unregistered(self, resource: str) -> None:
        self._child(self.registered_watchers, "rw", resource).dec()

    def _child(self, family: Any, tag: str, resource: str) -> Any:
        key = (tag, resource)
        child = self._children.get(key)
        if child is None:
            child = family.labels(resource)
            self._children[key] = child
        return child


def render(metrics: Metrics, accept: str = "") -> tuple[bytes, str]:
    """Body and Content-Type for `GET /metrics`; OpenMetrics when the scraper
    asks for it in `accept`, else the Prometheus text format."""
    if accept:
        encoder, content_type = choose_encoder(accept)
        return encoder(metrics.registry), content_type
    return generate_latest(metrics.registry), CONTENT_TYPE_LATEST
