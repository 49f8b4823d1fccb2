"""Signals versus chance: each signal's forward mid return and fall, against every moment of the same sessions.

For each signal kind and horizon (default 30 s, 1, 5, 15 min): the signals' forward mid returns against the
**base** — the same return from every ``base_step`` seconds of the same sessions. The difference of means has a
bootstrap 95 % interval. A **hit** is a fall of at least ``fall_bps`` within the horizon (path minimum of the
per-second mid); the hit rate is shown with its Wilson interval beside the base rate, and their ratio (lift).
**Lead time** is the time from the signal to the first such fall (to the first whole second that shows it: at
most 1 s late). Signals whose horizon runs past the close are *censored* (counted, not scored).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np

from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from services.offline.backtest.collect import PriceTape, Signal, Tapes, new_york_day
from services.offline.backtest.models import BacktestSettings, ChanceComparison, Interval, VersusChance

MIN_FOR_INTERVAL = 5
"""Fewer signals than this get no bootstrap interval: resampling one or two values says nothing of their spread."""


def rounded(value: float | None, digits: int = 2) -> float | None:
    """``value`` rounded to ``digits`` as a Python float; None for None or NaN (written as ``null``)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), digits)


def rounded_interval(interval: tuple[float, float], digits: int = 2) -> Interval:
    return (rounded(interval[0], digits), rounded(interval[1], digits))


def wilson(hits: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95 % interval of a proportion (``(nan, nan)`` for no trials)."""
    if total == 0:
        return (math.nan, math.nan)
    p = hits / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


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


def bootstrap_mean(sample: np.ndarray, reps: int, seed: int) -> tuple[float, float]:
    """95 % percentile bootstrap interval of mean(sample), resampled with replacement (NaN, NaN below
    :data:`MIN_FOR_INTERVAL` values). Resampling paired differences gives the paired interval."""
    if len(sample) < MIN_FOR_INTERVAL:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = sample[rng.integers(0, len(sample), size=(reps, len(sample)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
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
    now, later = tape.mid_at(ts), tape.mid_at(ts + horizon * NANOSECONDS_PER_SECOND)
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


def versus_chance(signals: list[Signal], tapes: Tapes, settings: BacktestSettings) -> VersusChance:
    """Per signal kind and horizon: signal vs base forward returns, hit rates, lift, lead time."""
    base: dict[int, list[Outcome]] = defaultdict(list)
    for tape in tapes.values():
        for ts in base_times(tape, settings.base_step):
            for horizon in settings.horizons:
                result = outcome(tape, ts, horizon, settings.fall_bps)
                if result is not None:
                    base[horizon].append(result)
    by_kind = {kind: [s for s in signals if s.kind == kind] for kind in sorted({signal.kind for signal in signals})}
    return VersusChance(
        base_samples={str(h): len(base[h]) for h in settings.horizons},
        by_kind={kind: _rows(chosen, tapes, base, settings) for kind, chosen in by_kind.items()},
        by_context={group: _rows(chosen, tapes, base, settings) for group, chosen in by_context(signals).items()},
    )


def by_context(signals: list[Signal]) -> dict[str, list[Signal]]:
    """The stocks' signals by market context: ``alerts, <label>`` (every alert kind), ``exits, <label>`` (a stock's
    own exits) and ``exits, market scope`` (a market sell-off's exit, once on each position it names, as of its
    time). An index's own alerts are left out (the index is not a position); ``none``: context was off."""
    groups: dict[str, list[Signal]] = defaultdict(list)
    indexes = {signal.symbol for signal in signals if signal.applies_to or signal.kind == "market_selloff"}
    for signal in signals:
        if signal.applies_to:
            groups["exits, market scope"] += [replace(signal, symbol=symbol) for symbol in signal.applies_to]
        elif signal.symbol not in indexes:
            groups[f"{'exits' if signal.kind == 'exit' else 'alerts'}, {signal.context or 'none'}"].append(signal)
    return dict(sorted(groups.items()))


def _rows(
    chosen: list[Signal], tapes: Tapes, base: dict[int, list[Outcome]], settings: BacktestSettings
) -> dict[str, ChanceComparison]:
    """``chosen`` signals against the base at each horizon (a signal outside its session's regular hours, or with
    no prices there, is counted as outside; one whose horizon runs past the close as censored)."""
    rows = {}
    for horizon in settings.horizons:
        outcomes, censored, outside = [], 0, 0
        for signal in chosen:
            signal_tape = tapes.get((signal.symbol, new_york_day(signal.ts)))
            if signal_tape is None or not signal_tape.open_ns <= signal.ts < signal_tape.close_ns:
                outside += 1
                continue
            result = outcome(signal_tape, signal.ts, horizon, settings.fall_bps)
            if result is None:
                censored += 1
            else:
                outcomes.append(result)
        rows[str(horizon)] = _compare(outcomes, base[horizon], settings, censored, outside)
    return rows


def _compare(
    outcomes: list[Outcome], base: list[Outcome], settings: BacktestSettings, censored: int, outside: int
) -> ChanceComparison:
    returns = np.asarray([o.forward_bps for o in outcomes])
    base_returns = np.asarray([o.forward_bps for o in base])
    hits = sum(o.hit for o in outcomes)
    base_hits = sum(o.hit for o in base)
    rate = hits / len(outcomes) if outcomes else math.nan
    base_rate = base_hits / len(base) if base else math.nan
    leads = [o.lead_seconds for o in outcomes if o.lead_seconds is not None]
    difference = bootstrap_difference(returns, base_returns, settings.bootstrap, settings.seed)
    return ChanceComparison(
        signals=len(outcomes),
        censored_past_close=censored,
        outside_regular_session=outside,
        mean_forward_bps=rounded(returns.mean()) if len(returns) else None,
        base_mean_forward_bps=rounded(base_returns.mean()) if len(base_returns) else None,
        difference_bps=rounded(returns.mean() - base_returns.mean()) if len(returns) and len(base_returns) else None,
        difference_ci95_bps=rounded_interval(difference),
        hit_rate=rounded(rate, 4),
        hit_rate_ci95=rounded_interval(wilson(hits, len(outcomes)), 4),
        base_hit_rate=rounded(base_rate, 4),
        base_hit_rate_ci95=rounded_interval(wilson(base_hits, len(base)), 4),
        lift=rounded(rate / base_rate, 3) if base_rate and not math.isnan(rate) else None,
        lead_seconds_mean=rounded(float(np.mean(leads)), 1) if leads else None,
        lead_seconds_median=rounded(float(np.median(leads)), 1) if leads else None,
    )
