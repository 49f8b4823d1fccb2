"""Metrics: Prometheus names, each listed in docs/operations.md (over HTTP: tests/integration/test_metrics_http.py)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from orderflow_client import metrics
from shared import service_metrics
from tests.support.paths import REPO


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


def test_operators_guide_lists_every_metric():
    guide = (REPO / "docs" / "operations.md").read_text()
    for name, metric in _defined().items():
        exposed = f"{name}_total" if isinstance(metric, Counter) else name
        assert f"`{exposed}`" in guide, f"docs/operations.md does not list {exposed}"
