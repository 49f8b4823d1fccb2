"""``orderflow backtest``: what following the signals is worth, against chance and net of the spread.

One pass of the same normaliser and rules engine as live detection collects
every alert and exit recommendation (the **signals**) and each symbol's NBBO
(:class:`PriceTape`). Then, for the regular session only (extended hours are
too thin to price a move):

* **versus chance** — each signal's forward mid return at each horizon
  (default 30 s, 1, 5, 15 min), against the **base**: the same return from
  every ``base_step`` seconds of the same sessions. The difference of means
  has a bootstrap 95 % interval. A **hit** is a fall of at least
  ``fall_bps`` within the horizon (path minimum of the per-second mid); the hit
  rate is shown with its Wilson interval beside the base rate, and their ratio
  (lift). **Lead time** is the time from the signal to the first such fall
  (to the first whole second that shows it: at most 1 s late).
  Signals whose horizon runs past the close are *censored* (counted, not scored).
* **what following the exits is worth** — a long position (by default one
  share-weighted unit held from the open of each day; or the bot's own entries
  from ``--positions``) exits at the **bid** on the first recommendation, versus
  holding: to the horizon (marked at the mid, so the exit pays half the spread
  and the holder pays nothing), and to its stop or the close (sold at the bid
  either way). Saved bps, max drawdown with and without, the share of
  profitable exits, and false-positive exits (the mid then rose ``fall_bps``
  within the horizon).

Every figure is computed from integers in nano-dollars and nanoseconds up to
the final ratios; bps = 1e4 × return.
"""

from __future__ import annotations

import bisect
import csv
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from orderflow_client.prices import price_from_text
from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from orderflow_client.wire import BookUpdate, ExitRecommendation, MarketEvent, OrderFlowAlert, Quote
from services.detector.engine import Engine, RuleSettings
from services.detector.profiles import SymbolProfile
from services.ingest.normalise import Normaliser, normalised
from services.ingest.rejects import Reject, RejectCounter
from shared.conditions import ConditionTable
from shared.config import OrderFlowConfig
from shared.sessions import SessionClock

NEW_YORK = ZoneInfo("America/New_York")
DEFAULT_HORIZONS = (30, 60, 300, 900)


@dataclass(frozen=True)
class BacktestSettings:
    """Horizons in seconds; a fall (hit) and a rise (false positive) of ``fall_bps``; base every ``base_step`` s."""

    horizons: tuple[int, ...] = DEFAULT_HORIZONS
    fall_bps: float = 10.0
    base_step: int = 30
    bootstrap: int = 2000
    seed: int = 7


@dataclass(frozen=True)
class Signal:
    """An alert (``kind`` = ``large_seller/tape``, ``large_seller/book``, ``red_burst``) or an exit (``exit``)."""

    kind: str
    symbol: str
    ts: int
    id: str
    severity: str = ""


@dataclass(frozen=True)
class Position:
    """A long position: entry time (ns), entry price (nano-dollars), shares, stop (nano-dollars, 0 = none)."""

    symbol: str
    entry_ns: int
    entry_price: int
    quantity: int
    stop: int = 0


class PriceTape:
    """One symbol's NBBO over one regular session: exact changes plus a per-second mid for path statistics."""

    def __init__(self, symbol: str, day: str, open_ns: int, close_ns: int) -> None:
        self.symbol, self.day, self.open_ns, self.close_ns = symbol, day, open_ns, close_ns
        self.times: list[int] = []
        self.bids: list[int] = []
        self.asks: list[int] = []
        self._mid_seconds: np.ndarray | None = None

    def add(self, ts: int, bid: int, ask: int) -> None:
        if not (0 < bid <= ask):
            return  # one-sided or crossed: not a price to trade or mark at
        if self.times and ts < self.times[-1]:
            return  # out of order: the NBBO in force does not go back
        if self.bids and self.bids[-1] == bid and self.asks[-1] == ask:
            return
        self.times.append(ts)
        self.bids.append(bid)
        self.asks.append(ask)
        self._mid_seconds = None

    def at(self, ts: int) -> tuple[int, int] | None:
        """``(bid, ask)`` in force at ``ts`` (the last change at or before it)."""
        index = bisect.bisect_right(self.times, ts) - 1
        return None if index < 0 else (self.bids[index], self.asks[index])

    def mid(self, ts: int) -> float | None:
        quote = self.at(ts)
        return None if quote is None else (quote[0] + quote[1]) / 2

    @property
    def seconds(self) -> int:
        return (self.close_ns - self.open_ns) // NANOSECONDS_PER_SECOND

    def mids(self) -> np.ndarray:
        """The mid at the end of each second of the session (NaN before the first quote)."""
        if self._mid_seconds is None:
            values = np.full(self.seconds, np.nan)
            times = np.asarray(self.times, dtype=np.int64)
            mids = (np.asarray(self.bids, dtype=np.float64) + np.asarray(self.asks, dtype=np.float64)) / 2
            ends = self.open_ns + (np.arange(self.seconds, dtype=np.int64) + 1) * NANOSECONDS_PER_SECOND
            index = np.searchsorted(times, ends, side="right") - 1
            valid = index >= 0
            values[valid] = mids[index[valid]]
            self._mid_seconds = values
        return self._mid_seconds

    def path(self, ts: int, horizon: int) -> np.ndarray:
        """The mid at each of the ``horizon`` whole-second marks after ``ts`` (element i: open + (k + i + 1) s,
        k the second holding ``ts``)."""
        start = (ts - self.open_ns) // NANOSECONDS_PER_SECOND
        return self.mids()[start : start + horizon]


@dataclass
class Collected:
    """What one pass over the input found."""

    signals: list[Signal] = field(default_factory=list)
    tapes: dict[tuple[str, str], PriceTape] = field(default_factory=dict)
    events: int = 0
    rejects: RejectCounter = field(default_factory=RejectCounter)
    alerts: list[OrderFlowAlert] = field(default_factory=list)
    exits: list[ExitRecommendation] = field(default_factory=list)


def collect(
    event_groups: Iterable[Iterable[MarketEvent | Reject]],
    config: OrderFlowConfig,
    *,
    conditions: ConditionTable | None = None,
    profiles: dict[str, SymbolProfile] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Collected:
    """Run the rules over each group of events (each time-ordered; groups hold different symbols)."""
    conditions = conditions or ConditionTable.bundled()
    engine = Engine(
        RuleSettings.from_config(config), conditions, config=config, profiles=profiles, profile_source="files"
    )
    clock = engine.sessions
    found = Collected()
    for group in event_groups:
        for event in normalised(group, Normaliser(conditions, method=config.side_method), found.rejects):
            found.events += 1
            kind = type(event)
            if kind is Quote or kind is BookUpdate:
                tape = _tape(found.tapes, clock, event.symbol, event.ts_event)
                if tape is not None:
                    if kind is Quote:
                        tape.add(event.ts_event, event.bid_price, event.ask_price)
                    elif event.bids and event.asks:
                        tape.add(event.ts_event, event.bids[0][0], event.asks[0][0])
            _signals(engine.process(event), found)
            if on_progress is not None and found.events % 10_000 == 0:
                on_progress(10_000)
    _signals(engine.flush(), found)
    return found


def _tape(tapes: dict, clock: SessionClock, symbol: str, ts: int) -> PriceTape | None:
    if clock.session(ts) != "regular":
        return None
    day = clock.day
    tape = tapes.get((symbol, day))
    if tape is None:
        market_open, market_close = clock.regular_hours(ts)
        tape = tapes[(symbol, day)] = PriceTape(symbol, day, market_open, market_close)
    return tape


def _signals(outputs: list, found: Collected) -> None:
    for output in outputs:
        if isinstance(output, OrderFlowAlert):
            kind = "red_burst" if output.alert_type == "red_burst" else f"large_seller/{output.source}"
            found.signals.append(Signal(kind, output.symbol, output.ts_event, output.id, output.severity))
            found.alerts.append(output)
        elif isinstance(output, ExitRecommendation):
            found.signals.append(Signal("exit", output.symbol, output.ts_event, output.id, output.severity))
            found.exits.append(output)


# --- statistics ----------------------------------------------------------------------------------


def wilson(hits: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95 % interval of a proportion (``(nan, nan)`` for no trials)."""
    if total == 0:
        return (math.nan, math.nan)
    p = hits / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


MIN_FOR_INTERVAL = 5
"""Fewer signals than this get no bootstrap interval: resampling one or two values says nothing of their spread."""


def bootstrap_difference(sample: np.ndarray, base: np.ndarray, reps: int, seed: int) -> tuple[float, float]:
    """95 % percentile bootstrap interval of mean(sample) − mean(base), each resampled with replacement
    (NaN, NaN when the sample has fewer than :data:`MIN_FOR_INTERVAL` values)."""
    if len(sample) < MIN_FOR_INTERVAL or len(base) == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means_sample = sample[rng.integers(0, len(sample), size=(reps, len(sample)))].mean(axis=1)
    means_base = base[rng.integers(0, len(base), size=(reps, len(base)))].mean(axis=1)
    low, high = np.percentile(means_sample - means_base, [2.5, 97.5])
    return (float(low), float(high))


@dataclass(frozen=True)
class Outcome:
    """One moment's future: forward return (bps), whether it fell ``fall_bps`` (hit), seconds to the fall."""

    forward_bps: float
    hit: bool
    lead_seconds: float | None


def outcome(tape: PriceTape, ts: int, horizon: int, fall_bps: float) -> Outcome | None:
    """The future of ``ts`` over ``horizon`` seconds; None when it runs past the close or has no price."""
    if ts < tape.open_ns or ts + horizon * NANOSECONDS_PER_SECOND > tape.close_ns:
        return None
    now, later = tape.mid(ts), tape.mid(ts + horizon * NANOSECONDS_PER_SECOND)
    if now is None or later is None:
        return None
    path = tape.path(ts, horizon)
    threshold = now * (1 - fall_bps / 1e4)
    below = np.nonzero(path <= threshold)[0]
    lead = None
    if len(below):  # to the first whole-second mark that shows the fall (at most 1 s late)
        mark = (
            tape.open_ns + ((ts - tape.open_ns) // NANOSECONDS_PER_SECOND + 1 + int(below[0])) * NANOSECONDS_PER_SECOND
        )
        lead = (mark - ts) / NANOSECONDS_PER_SECOND
    return Outcome(forward_bps=(later / now - 1) * 1e4, hit=bool(len(below)), lead_seconds=lead)


def base_times(tape: PriceTape, step: int) -> list[int]:
    """Every ``step`` seconds of the session from the open (the unconditional sample)."""
    return list(range(tape.open_ns + step * NANOSECONDS_PER_SECOND, tape.close_ns, step * NANOSECONDS_PER_SECOND))


def versus_chance(signals: list[Signal], tapes: dict, settings: BacktestSettings) -> dict:
    """Per signal kind and horizon: signal vs base forward returns, hit rates, lift, lead time."""
    base: dict[int, list[Outcome]] = defaultdict(list)
    for tape in tapes.values():
        for ts in base_times(tape, settings.base_step):
            for horizon in settings.horizons:
                result = outcome(tape, ts, horizon, settings.fall_bps)
                if result is not None:
                    base[horizon].append(result)
    kinds = sorted({signal.kind for signal in signals})
    table: dict = {}
    for kind in kinds:
        chosen = [s for s in signals if s.kind == kind]
        rows = {}
        for horizon in settings.horizons:
            outcomes, censored, outside = [], 0, 0
            for signal in chosen:
                tape = tapes.get((signal.symbol, _day(signal.ts)))
                if tape is None or not tape.open_ns <= signal.ts < tape.close_ns:
                    outside += 1
                    continue
                result = outcome(tape, signal.ts, horizon, settings.fall_bps)
                if result is None:
                    censored += 1
                else:
                    outcomes.append(result)
            rows[str(horizon)] = _compare(outcomes, base[horizon], settings, censored, outside)
        table[kind] = rows
    return {"base_samples": {str(h): len(base[h]) for h in settings.horizons}, "by_kind": table}


def _compare(
    outcomes: list[Outcome], base: list[Outcome], settings: BacktestSettings, censored: int, outside: int
) -> dict:
    returns = np.asarray([o.forward_bps for o in outcomes])
    base_returns = np.asarray([o.forward_bps for o in base])
    hits = sum(o.hit for o in outcomes)
    base_hits = sum(o.hit for o in base)
    rate = hits / len(outcomes) if outcomes else math.nan
    base_rate = base_hits / len(base) if base else math.nan
    leads = [o.lead_seconds for o in outcomes if o.lead_seconds is not None]
    low, high = bootstrap_difference(returns, base_returns, settings.bootstrap, settings.seed)
    return {
        "signals": len(outcomes),
        "censored_past_close": censored,
        "outside_regular_session": outside,
        "mean_forward_bps": _round(returns.mean()) if len(returns) else None,
        "base_mean_forward_bps": _round(base_returns.mean()) if len(base_returns) else None,
        "difference_bps": _round(returns.mean() - base_returns.mean()) if len(returns) and len(base_returns) else None,
        "difference_ci95_bps": [_round(low), _round(high)],
        "hit_rate": _round(rate, 4),
        "hit_rate_ci95": [_round(v, 4) for v in wilson(hits, len(outcomes))],
        "base_hit_rate": _round(base_rate, 4),
        "base_hit_rate_ci95": [_round(v, 4) for v in wilson(base_hits, len(base))],
        "lift": _round(rate / base_rate, 3) if base_rate and not math.isnan(rate) else None,
        "lead_seconds_mean": _round(float(np.mean(leads)), 1) if leads else None,
        "lead_seconds_median": _round(float(np.median(leads)), 1) if leads else None,
    }


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), digits)


def _day(ts: int) -> str:
    return datetime.fromtimestamp(ts / NANOSECONDS_PER_SECOND, tz=NEW_YORK).date().isoformat()


# --- following the exits ---------------------------------------------------------------------------


def positions_from_open(tapes: dict) -> list[Position]:
    """One long position per symbol and day, bought at the ask of the first quote of the session, no stop."""
    positions = []
    for tape in tapes.values():
        if tape.times:
            positions.append(Position(tape.symbol, tape.times[0], tape.asks[0], 100))
    return positions


def read_positions(path: Path) -> list[Position]:
    """``symbol,entry_time,entry_price,quantity,stop`` rows; entry_time ISO 8601 (naive = New York)."""
    positions = []
    with path.open(newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            try:
                moment = datetime.fromisoformat(row["entry_time"])
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=NEW_YORK)
                positions.append(
                    Position(
                        row["symbol"].strip().upper(),
                        int(moment.timestamp() * NANOSECONDS_PER_SECOND),
                        price_from_text(row["entry_price"].strip()),
                        int(row["quantity"]),
                        price_from_text(row["stop"].strip()) if row.get("stop", "").strip() else 0,
                    )
                )
            except (KeyError, ValueError) as error:
                raise ValueError(f"{path}:{number}: {error}") from None
    return positions


def follow_exits(positions: list[Position], exits: list[Signal], tapes: dict, settings: BacktestSettings) -> dict:
    """Each position exits at the bid on its first recommendation after entry, versus holding."""
    by_symbol: dict[str, list[Signal]] = defaultdict(list)
    for signal in sorted(exits, key=lambda s: s.ts):
        by_symbol[signal.symbol].append(signal)
    trades = []
    for position in positions:
        tape = tapes.get((position.symbol, _day(position.entry_ns)))
        if tape is None or not tape.times:
            continue
        held_end, held_price, held_reason = _hold(position, tape)
        signal = next((s for s in by_symbol[position.symbol] if position.entry_ns < s.ts < held_end), None)
        trade = {
            "symbol": position.symbol,
            "day": tape.day,
            "entry_ns": position.entry_ns,
            "entry_price": position.entry_price,
            "held_exit_reason": held_reason,
            "held_exit_ns": held_end,
            "held_bps": _bps(held_price, position.entry_price),
            "drawdown_held_bps": _drawdown(tape, position, held_end),
        }
        if signal is not None:
            bid, ask = tape.at(signal.ts)
            mid = (bid + ask) / 2
            horizons = {}
            for horizon in settings.horizons:
                later = (
                    tape.mid(signal.ts + horizon * NANOSECONDS_PER_SECOND)
                    if signal.ts + horizon * NANOSECONDS_PER_SECOND <= tape.close_ns
                    else None
                )
                path = tape.path(signal.ts, horizon) if later is not None else np.asarray([])
                horizons[str(horizon)] = (
                    None
                    if later is None
                    else {
                        "saved_net_bps": _round((bid - later) / mid * 1e4),
                        "false_positive": bool(len(path) and np.nanmax(path) >= mid * (1 + settings.fall_bps / 1e4)),
                    }
                )
            chance = [
                tape.at(ts)[0] for ts in base_times(tape, settings.base_step) if position.entry_ns < ts < held_end
            ]
            trade.update(
                {
                    "exit_id": signal.id,
                    "exit_ns": signal.ts,
                    "exit_bid": bid,
                    "half_spread_bps": _round((ask - bid) / 2 / mid * 1e4),
                    "exited_bps": _bps(bid, position.entry_price),
                    "saved_vs_hold_bps": _round(_bps(bid, position.entry_price) - trade["held_bps"]),
                    "chance_saved_vs_hold_bps": _round(
                        float(np.mean([(b - held_price) / position.entry_price * 1e4 for b in chance]))
                    )
                    if chance
                    else None,
                    "profitable": bid > position.entry_price,
                    "drawdown_exited_bps": _drawdown(tape, position, signal.ts),
                    "versus_holding": horizons,
                }
            )
        trades.append(trade)
    return {"positions": len(trades), "trades": trades, "summary": _exit_summary(trades, settings)}


def _hold(position: Position, tape: PriceTape) -> tuple[int, int, str]:
    """When and at what bid holding ends: the stop (the first bid at or below it) or the close."""
    start = bisect.bisect_right(tape.times, position.entry_ns)
    if position.stop:
        for index in range(start, len(tape.times)):
            if tape.bids[index] <= position.stop:
                return tape.times[index], tape.bids[index], "stop"
    bid, _ask = tape.at(tape.close_ns - 1)
    return tape.close_ns, bid, "close"


def _bps(price: float, entry: int) -> float:
    return round((price / entry - 1) * 1e4, 2)


def _drawdown(tape: PriceTape, position: Position, end_ns: int) -> float:
    """Largest fall of the mid from its running peak (bps of entry) between entry and ``end_ns``."""
    first = (position.entry_ns - tape.open_ns) // NANOSECONDS_PER_SECOND
    last = (min(end_ns, tape.close_ns) - tape.open_ns) // NANOSECONDS_PER_SECOND
    mids = tape.mids()[max(0, first) : max(0, last)]
    mids = mids[~np.isnan(mids)]
    if len(mids) == 0:
        return 0.0
    peak = np.maximum.accumulate(np.concatenate(([position.entry_price], mids)))
    return round(float(np.max(peak[1:] - mids)) / position.entry_price * 1e4, 2)


def _mean(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return _round(float(np.mean(present))) if present else None


def _exit_summary(trades: list[dict], settings: BacktestSettings) -> dict:
    exited = [t for t in trades if "exit_id" in t]
    summary: dict = {
        "positions": len(trades),
        "exited": len(exited),
        "profitable_exits_share": _round(sum(t["profitable"] for t in exited) / len(exited), 3) if exited else None,
        "saved_vs_hold_to_stop_or_close_bps_mean": _round(float(np.mean([t["saved_vs_hold_bps"] for t in exited])))
        if exited
        else None,
        "chance_saved_vs_hold_to_stop_or_close_bps_mean": _mean([t["chance_saved_vs_hold_bps"] for t in exited]),
        "half_spread_bps_mean": _round(float(np.mean([t["half_spread_bps"] for t in exited]))) if exited else None,
        "max_drawdown_held_bps_mean": _round(float(np.mean([t["drawdown_held_bps"] for t in trades])))
        if trades
        else None,
        "max_drawdown_following_bps_mean": _round(
            float(np.mean([t.get("drawdown_exited_bps", t["drawdown_held_bps"]) for t in trades]))
        )
        if trades
        else None,
        "by_horizon": {},
    }
    for horizon in settings.horizons:
        rows = [t["versus_holding"][str(horizon)] for t in exited if t["versus_holding"].get(str(horizon))]
        saved = np.asarray([r["saved_net_bps"] for r in rows])
        summary["by_horizon"][str(horizon)] = {
            "exits": len(rows),
            "saved_net_bps_mean": _round(saved.mean()) if len(saved) else None,
            "false_positive_share": _round(sum(r["false_positive"] for r in rows) / len(rows), 3) if rows else None,
            "false_positive_ci95": [_round(v, 3) for v in wilson(sum(r["false_positive"] for r in rows), len(rows))],
        }
    return summary


# --- the whole report ------------------------------------------------------------------------------


def per_day(signals: list[Signal]) -> dict:
    """Alerts and exits per symbol and day (every session, not only the regular)."""
    counts: dict = defaultdict(Counter)
    for signal in signals:
        counts[f"{signal.symbol} {_day(signal.ts)}"]["exits" if signal.kind == "exit" else "alerts"] += 1
    return {key: {"alerts": value["alerts"], "exits": value["exits"]} for key, value in sorted(counts.items())}


def report(found: Collected, settings: BacktestSettings, positions: list[Position] | None = None) -> dict:
    """The backtest's findings as one JSON-able document."""
    exits = [s for s in found.signals if s.kind == "exit"]
    chosen = positions if positions is not None else positions_from_open(found.tapes)
    return {
        "settings": {
            "horizons_seconds": list(settings.horizons),
            "fall_bps": settings.fall_bps,
            "base_step_seconds": settings.base_step,
            "bootstrap": settings.bootstrap,
            "positions": "given" if positions is not None else "one long from each open",
        },
        "events": found.events,
        "sessions": sorted(f"{symbol} {day}" for symbol, day in found.tapes),
        "per_day": per_day(found.signals),
        "versus_chance": versus_chance(found.signals, found.tapes, settings),
        "following_exits": follow_exits(chosen, exits, found.tapes, settings),
    }


def chart_data(found: Collected, max_points: int = 400) -> list[dict]:
    """Each session's mid (sampled to at most ``max_points``) with its signals, for the report's charts."""
    sessions = []
    for (symbol, day), tape in sorted(found.tapes.items()):
        mids = tape.mids()
        step = max(1, len(mids) // max_points)
        points = [
            [int(i), round(float(mids[i]) / NANOSECONDS_PER_SECOND, 4)]
            for i in range(0, len(mids), step)
            if not np.isnan(mids[i])
        ]
        marks = [
            {"second": (s.ts - tape.open_ns) / NANOSECONDS_PER_SECOND, "kind": s.kind, "id": s.id}
            for s in found.signals
            if s.symbol == symbol and _day(s.ts) == day and tape.open_ns <= s.ts < tape.close_ns
        ]
        sessions.append({"symbol": symbol, "day": day, "points": points, "marks": marks})
    return sessions


def forward_distributions(found: Collected, settings: BacktestSettings, horizon: int) -> dict:
    """Forward returns at ``horizon`` of each signal kind and of the base (for the histograms)."""
    series: dict[str, list[float]] = defaultdict(list)
    for tape in found.tapes.values():
        for ts in base_times(tape, settings.base_step):
            result = outcome(tape, ts, horizon, settings.fall_bps)
            if result is not None:
                series["base"].append(round(result.forward_bps, 2))
    for signal in found.signals:
        tape = found.tapes.get((signal.symbol, _day(signal.ts)))
        if tape is not None:
            result = outcome(tape, signal.ts, horizon, settings.fall_bps)
            if result is not None:
                series[signal.kind].append(round(result.forward_bps, 2))
    return dict(series)


# --- the settings sweep, scored on held-out days ----------------------------------------------------


def split_days(days: list[str], test_days: int) -> tuple[list[str], list[str]]:
    """Earlier days to choose settings on, the last ``test_days`` to score them on (never both)."""
    ordered = sorted(set(days))
    if len(ordered) <= test_days:
        raise ValueError(
            f"a sweep needs more than {test_days} trading day(s) to hold some out; the input has {len(ordered)}"
        )
    return ordered[:-test_days], ordered[-test_days:]


def exit_score(
    found: Collected, days: list[str], horizon: int, *, base_step: int = 30, reps: int = 2000, seed: int = 7
) -> dict:
    """Bps saved by exiting at the bid on every recommendation of ``days`` versus the mid ``horizon`` s later,
    beside the same for an exit at every ``base_step`` s of those sessions (chance), with a bootstrap 95 % interval."""

    def saved_at(tape: PriceTape, ts: int) -> float | None:
        if not tape.open_ns <= ts or ts + horizon * NANOSECONDS_PER_SECOND > tape.close_ns:
            return None
        quote, later = tape.at(ts), tape.mid(ts + horizon * NANOSECONDS_PER_SECOND)
        if quote is None or later is None:
            return None
        return (quote[0] - later) / ((quote[0] + quote[1]) / 2) * 1e4

    saved = [
        value
        for signal in found.signals
        if signal.kind == "exit" and _day(signal.ts) in days
        for tape in [found.tapes.get((signal.symbol, _day(signal.ts)))]
        if tape is not None
        for value in [saved_at(tape, signal.ts)]
        if value is not None
    ]
    base = [
        value
        for (_symbol, day), tape in found.tapes.items()
        if day in days
        for ts in base_times(tape, base_step)
        for value in [saved_at(tape, ts)]
        if value is not None
    ]
    low, high = bootstrap_difference(np.asarray(saved), np.asarray(base), reps, seed)
    return {
        "exits": len(saved),
        "saved_net_bps_mean": _round(float(np.mean(saved))) if saved else None,
        "base_saved_net_bps_mean": _round(float(np.mean(base))) if base else None,
        "difference_ci95_bps": [_round(low), _round(high)],
    }


def parse_sweep(items: list[str]) -> dict[str, list[str]]:
    """``["key=v1,v2", …]`` → ``{"key": ["v1", "v2"]}``; ValueError when an item is not of that form."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, separator, values = item.partition("=")
        choices = [value.strip() for value in values.split(",") if value.strip()]
        if not separator or not key.strip() or not choices:
            raise ValueError(f"--sweep {item!r}: expected key=value1,value2,…")
        grid[key.strip()] = choices
    return grid


def sweep(
    grid: dict[str, list[str]], run: Callable[[dict[str, str]], Collected], *, test_days: int, horizon: int
) -> dict:
    """Run every combination, score each on the training days and on the held-out days; rank by training score.

    ``run(overrides)`` returns what one pass with those settings found. The held-out days are never used to
    rank: the table shows how the ranking held up on them."""
    import itertools

    keys = sorted(grid)
    results = []
    train: list[str] = []
    test: list[str] = []
    for values in itertools.product(*(grid[key] for key in keys)):
        overrides = dict(zip(keys, values))
        found = run(overrides)
        if not train:
            train, test = split_days([day for _symbol, day in found.tapes], test_days)
        results.append(
            {
                "settings": overrides,
                "train": exit_score(found, train, horizon),
                "test": exit_score(found, test, horizon),
            }
        )
    results.sort(
        key=lambda r: -(r["train"]["saved_net_bps_mean"] if r["train"]["saved_net_bps_mean"] is not None else -math.inf)
    )
    return {"train_days": train, "test_days": test, "horizon_seconds": horizon, "ranked_by_train": results}
