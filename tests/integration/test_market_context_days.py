"""Market context on the real AlgoSeek days: AIG and BAC, 2013-10-07 and 08, with SPY's trades beside them, through
``orderflow analyze``'s path (the second day walk-forward on the first: its σ and beta from the first day's minutes).

Every alert carries a context with one of the four labels, at least one is not unknown; the AIG and BAC alert and
exit ids equal those of the same run without SPY's files (context adds fields, never changes an id); SPY's own
alerts are market_wide. The label counts and the market_selloff alerts are printed (``-s``) for docs/market-context.md.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from services.offline.analyze import analyze
from shared.config import OrderFlowConfig
from tests.support.paths import shared_data

DAYS = ("20131007", "20131008")
LABELS = {"stock_specific", "market_wide", "mixed", "unknown"}


def files(*symbols: str) -> list[Path]:
    return [
        shared_data("algoseek", symbol, f"{day}_{kind}.zip")
        for day in DAYS
        for symbol in symbols
        for kind in (("trade",) if symbol == "spy" else ("trade", "quote"))
    ]


def lines(folder: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (folder / f"{name}.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    config = OrderFlowConfig()
    with_spy, without = tmp_path_factory.mktemp("with_spy"), tmp_path_factory.mktemp("without_spy")
    analyze("algoseek", files("aig", "bac", "spy"), with_spy, config)
    analyze("algoseek", files("aig", "bac"), without, config)
    return with_spy, without


def test_every_alert_has_a_context_and_some_know_the_market(runs):
    with_spy, _without = runs
    alerts = lines(with_spy, "alerts")
    labels = Counter(alert["context"]["label"] for alert in alerts)
    selloffs = [alert for alert in alerts if alert["alert_type"] == "market_selloff"]
    print("labels by symbol:", Counter((a["symbol"], a["context"]["label"]) for a in alerts))
    print("market_selloff:", [(a["id"], a["severity"], a["evidence"]) for a in selloffs])
    assert set(labels) <= LABELS and labels["unknown"] < len(alerts)
    stocks = [alert for alert in alerts if alert["symbol"] in ("AIG", "BAC")]
    assert stocks and any(alert["context"]["label"] != "unknown" for alert in stocks)
    assert all(alert["context"]["index"] == "SPY" for alert in stocks)
    assert all(a["context"]["label"] == "market_wide" for a in alerts if a["symbol"] == "SPY")
    summary = json.loads((with_spy / "summary.json").read_text())
    assert summary["alerts_by_context"] == dict(sorted(labels.items()))
    exits = lines(with_spy, "exits")
    assert all(e["context"] is not None and e["action"] in ("exit", "watch") for e in exits)
    for market_exit in (e for e in exits if e["scope"] == "market"):  # analyze names every symbol of the input
        assert market_exit["symbols"] in (["AIG", "BAC"], ["AIG", "BAC", "SPY"])
        assert market_exit["trigger"] == "market_selloff"
    for selloff in selloffs:  # an episode starts only on a falling index
        assert selloff["evidence"]["index_return_bps"] <= -10.0
    print("exits by symbol, scope and action:", Counter((e["symbol"], e["scope"], e["action"]) for e in exits))


def test_the_stocks_ids_do_not_depend_on_the_index(runs):
    with_spy, without = runs
    for name in ("alerts", "exits"):
        stock_ids = sorted(item["id"] for item in lines(with_spy, name) if item["symbol"] != "SPY")
        assert stock_ids == sorted(item["id"] for item in lines(without, name))
    assert all(alert["context"]["label"] == "unknown" for alert in lines(without, "alerts"))


def test_spy_trades_get_their_sides_from_the_tick_test():
    from itertools import islice

    from services.ingest.normalise import Normaliser, normalised
    from services.ingest.rejects import RejectCounter
    from services.ingest.sources import read_events
    from shared.conditions import ConditionTable

    conditions = ConditionTable.bundled()
    events = read_events("algoseek", [shared_data("algoseek", "spy", "20131008_trade.zip")])
    trades = [  # the prints that count toward the index's flow (aggressive by their conditions)
        trade
        for trade in islice(normalised(events, Normaliser(), RejectCounter()), 20_000)
        if conditions.classify(trade.conditions, trade.correction).aggressive
    ]
    sides = Counter((trade.side, trade.side_source) for trade in trades)
    assert len(trades) > 15_000
    assert sides[("buy", "tick")] + sides[("sell", "tick")] >= len(trades) - 10  # unknown only before a first tick
    assert 0.3 < sides[("sell", "tick")] / len(trades) < 0.7
