"""Importing orderflow_client in a bot's process: only the client's metrics, none of the services' packages, and
the memory it adds measured against its 50 MB budget (a fresh interpreter; ``bench/client_footprint.py``
prints the same over several)."""

from __future__ import annotations

from bench.client_footprint import BUDGET_MB, CLIENT_METRICS, measure


def test_importing_the_client_registers_only_its_metrics_loads_no_service_and_stays_in_budget():
    footprint = measure()
    print(f"importing orderflow_client adds {footprint.added_mb:.1f} MB of RSS (budget {BUDGET_MB:.0f} MB)")
    assert footprint.metrics == sorted(CLIENT_METRICS)
    assert footprint.foreign_metrics == []
    assert footprint.loaded == []
    assert 0 < footprint.added_mb < BUDGET_MB, f"{footprint.added_mb:.1f} MB added, budget {BUDGET_MB:.0f} MB"
