"""Per-server Prometheus metrics: series, isolation, exposition, cost per call."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from timonel.api.server.metrics import REQUEST_BUCKETS, Metrics, render


def _samples(m: Metrics) -> dict[tuple[str, frozenset], float]:
    body, content_type = render(m)
    assert content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _get(samples, name, **labels) -> float | None:
    want = set(labels.items())
    hits = [v for (n, ls), v in samples.items() if n == name and want <= ls]
    assert len(hits) <= 1, f"{name} {labels} is ambiguous: {hits}"
    return hits[0] if hits else None


def test_request_counter_and_latency_histogram():
    m = Metrics()
    m.observe_request("get", "pods", 200, 0.003, scope="resource")
    m.observe_request("get", "pods", 200, 0.3, scope="resource")
    m.observe_request("create", "deployments", 409, 0.02, group="apps", version="v1",
                      scope="namespace")
    s = _samples(m)
    assert _get(s, "apiserver_request_total", verb="GET", resource="pods", code="200",
                component="apiserver") == 2
    assert _get(s, "apiserver_request_total", verb="CREATE", resource="deployments",
                group="apps", version="v1", scope="namespace", code="409") == 1
    # Histogram with the upstream bucket layout.
    assert _get(s, "apiserver_request_duration_seconds_count", verb="GET", resource="pods") == 2
    total = _get(s, "apiserver_request_duration_seconds_sum", verb="GET", resource="pods")
    assert total is not None and abs(total - 0.303) < 1e-9
    assert _get(s, "apiserver_request_duration_seconds_bucket", verb="GET", resource="pods",
                le="0.005") == 1
    assert _get(s, "apiserver_request_duration_seconds_bucket", verb="GET", resource="pods",
                le="0.4") == 2
    les = {dict(ls)["le"] for (n, ls) in s
           if n == "apiserver_request_duration_seconds_bucket" and ("verb", "GET") in ls}
    assert les == {str(b) for b in REQUEST_BUCKETS} | {"+Inf"}
    # The histogram has no code label, like upstream's.
    assert not any(n == "apiserver_request_duration_seconds_count" and dict(ls).get("code")
                   for (n, ls) in s)


def test_longrunning_watch_gauge_goes_up_and_down():
    m = Metrics()
    m.watch_started("pods")
    m.watch_started("pods")
    m.watch_started("deployments", group="apps", version="v1")
    s = _samples(m)
    assert _get(s, "apiserver_longrunning_requests", verb="WATCH", resource="pods") == 2
    assert _get(s, "apiserver_longrunning_requests", verb="WATCH", resource="deployments",
                group="apps") == 1
    m.watch_ended("pods")
    with m.tracking_watch("nodes"):
        assert _get(_samples(m), "apiserver_longrunning_requests", resource="nodes") == 1
    try:
        with m.tracking_watch("nodes"):
            raise ConnectionResetError
    except ConnectionResetError:
        pass
    s = _samples(m)
    assert _get(s, "apiserver_longrunning_requests", verb="WATCH", resource="pods") == 1
    assert _get(s, "apiserver_longrunning_requests", resource="nodes") == 0


def test_etcd_and_watch_cache_series():
    m = Metrics()
    m.observe_etcd("get", "pods", 0.001)
    m.observe_etcd("get", "pods", 0.002)
    m.observe_etcd("update", "nodes", 0.7)
    m.watch_cache_events("pods")
    m.watch_cache_events("pods", 4)
    m.watch_cache_dispatched("pods", 20)
    m.set_registered_watchers("pods", 7)
    m.watcher_registered("nodes")
    m.watcher_registered("nodes")
    m.watcher_unregistered("nodes")
    s = _samples(m)
    assert _get(s, "etcd_request_duration_seconds_count", operation="get", type="pods") == 2
    assert _get(s, "etcd_request_duration_seconds_bucket", operation="update", type="nodes",
                le="0.8") == 1
    assert _get(s, "etcd_request_duration_seconds_bucket", operation="update", type="nodes",
                le="0.6") == 0
    assert _get(s, "apiserver_watch_cache_events_received_total", resource="pods") == 5
    assert _get(s, "apiserver_watch_cache_events_dispatched_total", resource="pods") == 20
    assert _get(s, "apiserver_registered_watchers", resource="pods") == 7
    assert _get(s, "apiserver_registered_watchers", resource="nodes") == 1


def test_two_servers_in_one_process_keep_separate_counts():
    a, b = Metrics(), Metrics()
    a.observe_request("list", "pods", 200, 0.01)
    assert _get(_samples(a), "apiserver_request_total", verb="LIST") == 1
    assert _get(_samples(b), "apiserver_request_total", verb="LIST") is None


def test_openmetrics_on_request():
    m = Metrics(process_metrics=False)
    m.observe_request("get", "pods", 200, 0.01)
    body, content_type = render(m, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
    body, content_type = render(m, "text/plain")
    assert content_type.startswith("text/plain")
    line = next(ln for ln in body.splitlines() if ln.startswith(b"apiserver_request_total{"))
    assert b'verb="GET"' in line and line.endswith(b" 1.0")
    assert b"_created" not in body  # upstream has no such series; they only add noise


def test_process_metrics_are_exposed():
    s = _samples(Metrics())
    assert _get(s, "process_resident_memory_bytes") is not None


def test_observe_cost_is_tiny():
    m = Metrics()
    m.observe_request("get", "pods", 200, 0.01)  # first call creates the series
    n = 20000
    best = float("inf")
    # Best of several rounds: a loaded CI machine can stall any one round.
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            m.observe_request("get", "pods", 200, 0.01, scope="namespace")
        best = min(best, (time.perf_counter() - t0) / n)
    assert best < 20e-6, f"observe_request costs {best * 1e6:.1f} µs"

    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            m.observe_etcd("get", "pods", 0.001)
            m.watch_started("pods")
            m.watch_ended("pods")
        best = min(best, (time.perf_counter() - t0) / (3 * n))
    assert best < 20e-6, f"etcd/watch observe costs {best * 1e6:.1f} µs"
