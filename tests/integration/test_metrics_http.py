"""Metrics served over HTTP: the client's and the services' on one Prometheus endpoint."""

from __future__ import annotations

import urllib.request

from orderflow_client import metrics
from shared import service_metrics
from tests.support.redis_server import free_port


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
