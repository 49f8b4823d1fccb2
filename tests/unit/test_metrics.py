"""Metrics: one module, Prometheus naming, served over HTTP."""

from __future__ import annotations

import urllib.request

from prometheus_client import Counter, Gauge, Histogram

from orderflow_client import metrics
from shared import service_metrics
from tests.support.redis_server import free_port


def _defined():
    return {
        value._name: value
        for module in (metrics, service_metrics)
        for value in vars(module).values()
        if isinstance(value, (Counter, Gauge, Histogram))
    }


def test_names_follow_prometheus_conventions():
    defined = _defined()
    assert len(defined) >= 20
    for name, metric in defined.items():
        assert name.startswith("orderflow_"), name
        if isinstance(metric, Histogram):
            assert name.endswith("_seconds"), name
    counters = [m for m in defined.values() if isinstance(m, Counter)]
    # prometheus_client strips _total from the stored name and adds it back when exposing
    assert all(not c._name.endswith("_total_total") for c in counters)


def test_metrics_are_served_over_http():
    port = free_port()
    server = metrics.serve_metrics(port)
    try:
        service_metrics.ALERTS.labels(alert_type="large_seller", severity="warning").inc()
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
    assert 'orderflow_alerts_total{alert_type="large_seller",severity="warning"}' in body
    assert "orderflow_alert_latency_seconds_bucket" in body
    assert "orderflow_feed_connected" in body


def test_readme_lists_every_metric():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name, metric in _defined().items():
        exposed = f"{name}_total" if isinstance(metric, Counter) else name
        assert f"`{exposed}`" in readme, f"README does not list {exposed}"
