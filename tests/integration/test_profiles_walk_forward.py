"""Adaptive thresholds walk forward over whole real days (AIG and BAC, AlgoSeek, 2013-10-07 and 08): each day judged
only with the sessions before it, nothing later that day leaking in, the alert counts in the engagement band.
Pure, but each test runs ``analyze`` over two real days (tens of seconds): here, not in tests/unit."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from orderflow_client.wire import Trade
from services.ingest.sources import read_events
from services.offline.analyze import analyze
from shared.config import OrderFlowConfig
from tests.support.events import S
from tests.support.jsonl import read_jsonl
from tests.support.market_days import AIG_DAYS, aig
from tests.support.paths import shared_data


@pytest.fixture(scope="module")
def aig_two_days(tmp_path_factory):
    out = tmp_path_factory.mktemp("aig")
    analyze("algoseek", aig(*AIG_DAYS), out, OrderFlowConfig())
    return out


def _day(record: dict) -> str:
    return record["timestamp_utc"][:10] if "timestamp_utc" in record else ""


def test_each_day_is_judged_only_with_the_sessions_before_it(aig_two_days):
    statuses = [s for s in read_jsonl(aig_two_days / "statuses.jsonl") if s["state"] in ("calibrating", "calibrated")]
    assert [(s["state"], s["code"]) for s in statuses] == [
        ("calibrating", "no_profile"),
        ("calibrating", "first_day_prior"),
        ("calibrated", "session_start"),
        ("calibrated", "profile"),
    ]
    assert "2013-10-07" in statuses[3]["detail"] and "2013-10-08" not in statuses[3]["detail"]
    profiles = [json.loads(line) for line in (aig_two_days / "profiles.jsonl").read_text().splitlines()]
    assert [p["days"] for p in profiles] == [["2013-10-07"]]
    day_two = [
        a
        for a in read_jsonl(aig_two_days / "alerts.jsonl")
        if _day(a) == "2013-10-08" and a["alert_type"] == "large_seller"
    ]
    assert day_two and {a["evidence"]["profile_days"] for a in day_two} == {"2013-10-07"}
    assert {a["evidence"]["threshold_source"] for a in day_two} == {"profile"}


def test_a_day_s_thresholds_do_not_depend_on_anything_later_that_day(aig_two_days, tmp_path):
    """Inflate every print of the second day after 12:00 New York ten-fold: the second day's thresholds and
    every alert before noon stay exactly the same (nothing of the day judged leaks into its profile)."""
    noon = 1381248000 * S  # 2013-10-08 12:00 New York (16:00 UTC)

    def doctored():
        for event in read_events("algoseek", aig(*AIG_DAYS)):
            if type(event) is Trade and event.ts_event >= noon:
                yield msgspec.structs.replace(event, size=event.size * 10)
            else:
                yield event

    from services.offline import analyze as analyze_module

    original = analyze_module.read_events
    analyze_module.read_events = lambda *args, **kwargs: doctored()
    try:
        analyze("algoseek", [], tmp_path, OrderFlowConfig())
    finally:
        analyze_module.read_events = original

    def calibrated(folder: Path) -> list[str]:
        return [s["detail"] for s in read_jsonl(folder / "statuses.jsonl") if s["state"] == "calibrated"]

    def before_noon(folder: Path) -> list[str]:
        return [a["id"] for a in read_jsonl(folder / "alerts.jsonl") if a["ts_event"] < noon]

    assert calibrated(tmp_path) == calibrated(aig_two_days)
    assert before_noon(tmp_path) == before_noon(aig_two_days) and before_noon(tmp_path)
    after_noon = [a for a in read_jsonl(tmp_path / "alerts.jsonl") if a["ts_event"] >= noon]
    assert len(after_noon) > len([a for a in read_jsonl(aig_two_days / "alerts.jsonl") if a["ts_event"] >= noon])


def test_adaptive_thresholds_keep_real_days_in_the_engagement_band(aig_two_days, tmp_path):
    """AIG (a $48 stock) and BAC (a $14 stock trading 60–86M shares a day): every day, the first one with no
    history included, between 1 and 50 alerts and at most 15 exits; BAC far below the absolute mode."""
    bac = [shared_data("algoseek", "bac", f"{day}_{kind}.zip") for day in AIG_DAYS for kind in ("trade", "quote")]
    analyze("algoseek", bac, tmp_path / "adaptive", OrderFlowConfig())
    analyze("algoseek", bac[2:], tmp_path / "absolute", OrderFlowConfig(threshold_mode="absolute"))
    for folder in (aig_two_days, tmp_path / "adaptive"):
        alerts, exits = read_jsonl(folder / "alerts.jsonl"), read_jsonl(folder / "exits.jsonl")
        for day in ("2013-10-07", "2013-10-08"):
            per_day = [a for a in alerts if _day(a) == day]
            assert 1 <= len(per_day) <= 50 and len([e for e in exits if _day(e) == day]) <= 15
    adaptive_bac = len([a for a in read_jsonl(tmp_path / "adaptive" / "alerts.jsonl") if _day(a) == "2013-10-08"])
    assert adaptive_bac * 10 < len(read_jsonl(tmp_path / "absolute" / "alerts.jsonl"))
