"""Every shared day judged as a first day (no history; each day alone, adaptive mode, ``orderflow analyze``'s path)
starts from the first-day prior and lands in the engagement band: at least 1 and at most 50 alerts.

The prior is the bundled one fitted **without the day's own stock** (its leave-one-stock-out entry), so no day is
judged on a prior fitted on its own data. Pure, but each case runs ``analyze`` over a real day (seconds to tens of
seconds): here, not in tests/unit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.detector import threshold_lifecycle
from services.detector.threshold_prior import bundled_prior, held_out_prior
from services.offline.analyze import analyze
from shared.config import OrderFlowConfig
from tests.support.paths import shared_data

FIRST_DAYS = {
    "AMZN 2012-06-21 level 5": ("lobster", "AMZN", [("lobster", "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip")]),
    "AMZN 2012-06-21 level 1": ("lobster", "AMZN", [("lobster", "LOBSTER_SampleFile_AMZN_2012-06-21_1.zip")]),
    "AAPL 2012-06-21 level 1": ("lobster", "AAPL", [("lobster", "LOBSTER_SampleFile_AAPL_2012-06-21_1.zip")]),
    **{
        f"{symbol.upper()} {day}": (
            "algoseek",
            symbol.upper(),
            [("algoseek", symbol, f"{day}_trade.zip"), ("algoseek", symbol, f"{day}_quote.zip")],
        )
        for symbol in ("aig", "bac")
        for day in ("20131007", "20131008")
    },
}


@pytest.mark.parametrize("name", sorted(FIRST_DAYS))
def test_a_first_day_starts_from_the_prior_fitted_without_its_stock_and_alerts_1_to_50_times(
    name, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    format, symbol, parts = FIRST_DAYS[name]
    paths = [shared_data(*part) for part in parts]
    bundled = bundled_prior()
    assert bundled is not None, "shared/data/first_day_prior.json is missing: python -m bench.first_day_prior --write"
    prior = held_out_prior(bundled, symbol)
    assert prior is not bundled and not [day for day in prior.days if day.startswith(f"{symbol} ")]
    monkeypatch.setattr(threshold_lifecycle, "bundled_prior", lambda: prior)

    summary = analyze(format, paths, tmp_path, OrderFlowConfig(threshold_mode="adaptive"))

    statuses = [json.loads(line) for line in (tmp_path / "statuses.jsonl").read_text().splitlines()]
    calibration = [(s["state"], s["code"]) for s in statuses if s["state"].startswith("calibrat")]
    assert calibration == [
        ("calibrating", "no_profile"),
        ("calibrating", "first_day_prior"),
        ("calibrated", "session_start"),
    ]
    started = next(s for s in statuses if s["code"] == "first_day_prior")
    assert f"{100 * prior.volume_fraction:.3f} % of an expected" in started["detail"]
    assert 1 <= summary.report().alerts <= 50, summary.report().alerts_by_type_and_severity
