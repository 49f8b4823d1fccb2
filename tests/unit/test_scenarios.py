"""The scenario generator: deterministic, clean, and showing what it documents."""

from __future__ import annotations

import hashlib
import itertools
from collections import defaultdict

import pytest

from orderflow_client.wire import Quote, Trade
from services.ingest.normalise import Normaliser
from services.ingest.rejects import Reject
from services.ingest.sources import read_events
from services.tools.scenario_expectations import EXPECTATIONS
from services.tools.scenarios import SCENARIOS, START_MS, frames, write_scenario

NS_PER_MS = 1_000_000


@pytest.fixture(scope="module")
def scenario_events(tmp_path_factory) -> dict[str, list]:
    folder = tmp_path_factory.mktemp("scenarios")
    result = {}
    for name in SCENARIOS:
        path = folder / f"{name}.capture"
        write_scenario(name, path)
        normaliser = Normaliser()
        result[name] = [
            normaliser.process(e) if not isinstance(e, Reject) else e for e in read_events("capture", [path])
        ]
    return result


def _digest(name: str, seed: int) -> str:
    digest = hashlib.sha256()
    for ts_recv, frame in frames(name, seed):
        digest.update(b"%d %s\n" % (ts_recv, frame))
    return digest.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes():
    assert _digest("quiet", 7) == _digest("quiet", 7)
    assert _digest("quiet", 7) != _digest("quiet", 8)


def test_every_scenario_is_documented_and_parses_cleanly(scenario_events):
    assert (
        set(EXPECTATIONS) == set(SCENARIOS) == {"quiet", "large-sellers", "red-burst", "two-sided", "stale-feed", "gap"}
    )
    for name, events in scenario_events.items():
        assert not [e for e in events if isinstance(e, Reject)], name
        assert sum(isinstance(e, Trade) for e in events) > 4000, name
        assert all(e.symbol == "DEMO" for e in events if e is not None)


def _sell_sweeps(events) -> list[int]:
    """Total size of sell prints grouped within 5 ms of each other (sweep-like orders)."""
    groups: dict[int, int] = defaultdict(int)
    last_ts, start = None, None
    for e in events:
        if isinstance(e, Trade) and e.side == "sell" and e.conditions != (2,):
            if last_ts is None or e.ts_event - last_ts > 5 * NS_PER_MS:
                start = e.ts_event
            groups[start] += e.size
            last_ts = e.ts_event
    return [size for size in groups.values() if size >= 10_000]


def test_quiet_has_no_large_orders_and_balanced_flow(scenario_events):
    events = scenario_events["quiet"]
    assert _sell_sweeps(events) == []
    trades = [e for e in events if isinstance(e, Trade)]
    sells = sum(t.size for t in trades if t.side == "sell")
    assert 0.4 < sells / sum(t.size for t in trades) < 0.6
    large_offers = [q for q in events if isinstance(q, Quote) and q.ask_size >= 10_000]
    assert len(large_offers) == 2  # the two flickers, each replaced within a second


def test_large_sellers_has_the_four_documented_sweeps(scenario_events):
    assert sorted(_sell_sweeps(scenario_events["large-sellers"])) == [11_000, 12_000, 15_000, 25_000]


def test_red_burst_volume_jumps_five_fold_with_sells_dominating(scenario_events):
    trades = [e for e in scenario_events["red-burst"] if isinstance(e, Trade)]
    start = START_MS * NS_PER_MS

    def window(a, b):
        return [t for t in trades if start + a * 10**9 <= t.ts_event < start + b * 10**9]

    before, burst = window(120, 420), window(420, 510)
    rate_before = sum(t.size for t in before) / 300
    rate_burst = sum(t.size for t in burst) / 90
    assert 4.0 < rate_burst / rate_before < 6.0
    assert sum(t.size for t in burst if t.side == "sell") / sum(t.size for t in burst) > 0.65


def test_stale_feed_lags_and_gap_is_silent(scenario_events):
    lags = [(e.ts_arrival - e.ts_event) / 1e9 for e in scenario_events["stale-feed"] if isinstance(e, Trade)]
    assert max(lags) > 30 and sum(lag > 10 for lag in lags) > 100
    times = [e.ts_event for e in scenario_events["gap"] if isinstance(e, Trade)]
    assert max(b - a for a, b in itertools.pairwise(times)) > 85 * 10**9


def test_two_sided_rests_large_size_on_both_sides_three_times(scenario_events):
    periods, start = [], None
    for event in scenario_events["two-sided"]:
        if not isinstance(event, Quote):
            continue
        both = event.bid_size >= 10_000 and event.ask_size >= 10_000
        if both and start is None:
            start = event.ts_event
        elif not both and start is not None:
            periods.append((event.ts_event - start) / 1e9)
            start = None
    assert len(periods) == 3 and all(7.5 <= seconds <= 9.0 for seconds in periods)
    large_ask_only = [
        e for e in scenario_events["two-sided"] if isinstance(e, Quote) and e.ask_size >= 10_000 > e.bid_size
    ]
    assert large_ask_only == []
