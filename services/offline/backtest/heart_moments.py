"""The success metrics scored at moments: false-positive exits, the cost rule's saved bps, alerts per symbol-day.

Each exit recommendation is scored on every stock it applies to (:class:`ExitInstance`): its own symbol, or for a
market exit the positions it names (every stock of that day's sessions when it names none). Chance is the same
measure at every ``base_step`` seconds of the same stock sessions. Prices are the per-second mid of the tape (a
move shows at the first whole second after it: at most 1 s late); returns in bps (1e4 × return).
"""

from __future__ import annotations

import statistics as stats
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from orderflow_client.wire import ExitRecommendation, OrderFlowAlert
from services.offline.backtest.collect import PriceTape, Tapes, new_york_day
from services.offline.backtest.models import CONTEXTS, AlertRate, BacktestSettings, MeanRow, ShareRow
from services.offline.backtest.statistics import (
    base_times,
    bootstrap_difference,
    bootstrap_mean,
    rounded,
    rounded_interval,
    wilson,
)

BAND = (5, 15)
"""The spec's band of alerts a symbol-day: enough to be useful, few enough to be read."""
GUARDRAIL = 50
"""More alerts than this a symbol-day is noise."""


@dataclass(frozen=True)
class ExitInstance:
    """One exit recommendation applied to one stock: ``action`` "exit" | "watch", ``context`` its label
    ("unknown" without context), ``ts`` ns since the epoch. Example: ``ExitInstance("AIG", 1381157400000000000,
    "exit", "market_wide", "SPY:exit:market_selloff:…")``."""

    symbol: str
    ts: int
    action: str
    context: str
    id: str


def exit_instances(
    exits: Iterable[ExitRecommendation], tapes: Tapes, index_symbols: Iterable[str]
) -> list[ExitInstance]:
    """Each recommendation on each stock it applies to, oldest first (none on an index symbol)."""
    indexes = set(index_symbols)
    stocks_by_day: dict[str, list[str]] = {}
    for symbol, day in sorted(tapes):
        if symbol not in indexes:
            stocks_by_day.setdefault(day, []).append(symbol)
    instances = []
    for recommendation in exits:
        label = recommendation.context.label if recommendation.context is not None else "unknown"
        if recommendation.scope == "market":
            names = recommendation.symbols or tuple(stocks_by_day.get(new_york_day(recommendation.ts_event), ()))
        else:
            names = (recommendation.symbol,)
        for name in names:
            if name not in indexes:
                instances.append(
                    ExitInstance(name, recommendation.ts_event, recommendation.action, label, recommendation.id)
                )
    return sorted(instances, key=lambda instance: (instance.ts, instance.symbol, instance.id))


def chosen(instances: list[ExitInstance], context: str, action: str | None = "exit") -> list[ExitInstance]:
    """The instances of ``context`` (``"all"``: every one) and ``action`` (None: both)."""
    return [
        i for i in instances if (context == "all" or i.context == context) and (action is None or i.action == action)
    ]


def instance_tape(tapes: Tapes, instance: ExitInstance) -> PriceTape | None:
    """The regular session the instance falls in (None outside one, or without quotes)."""
    tape = tapes.get((instance.symbol, new_york_day(instance.ts)))
    return tape if tape is not None and tape.times and tape.open_ns <= instance.ts < tape.close_ns else None


def saved_at(tape: PriceTape, ts: int, horizon: int) -> float | None:
    """Bps saved by selling at the bid at ``ts`` rather than holding ``horizon`` s (marked at the mid then), over
    the mid at ``ts``: net of the half spread. None when the horizon runs past the close or there is no price."""
    if ts < tape.open_ns or ts + horizon * NANOSECONDS_PER_SECOND > tape.close_ns:
        return None
    quote, later = tape.at(ts), tape.mid_at(ts + horizon * NANOSECONDS_PER_SECOND)
    if quote is None or later is None:
        return None
    return (quote[0] - later) / ((quote[0] + quote[1]) / 2) * 1e4


def race(tape: PriceTape, ts: int, rise_pct: float, fall_pct: float) -> str | None:
    """Which the mid reaches first after ``ts`` within the session: ``"rise"`` (``rise_pct`` % above the mid at
    ``ts``), ``"fall"`` (``fall_pct`` % below), or None (neither by the close, or no price)."""
    now = tape.mid_at(ts)
    if now is None:
        return None
    path = tape.mid_each_second()[(ts - tape.open_ns) // NANOSECONDS_PER_SECOND :]
    up = np.nonzero(path >= now * (1 + rise_pct / 100))[0]
    down = np.nonzero(path <= now * (1 - fall_pct / 100))[0]
    first_up = int(up[0]) if len(up) else None
    first_down = int(down[0]) if len(down) else None
    if first_up is None and first_down is None:
        return None
    if first_down is None or (first_up is not None and first_up < first_down):
        return "rise"
    return "fall"


def _stock_tapes(tapes: Tapes, settings: BacktestSettings) -> list[PriceTape]:
    return [t for (symbol, _day), t in sorted(tapes.items()) if symbol not in settings.index_symbols and t.times]


def false_positives(instances: list[ExitInstance], tapes: Tapes, settings: BacktestSettings) -> dict[str, ShareRow]:
    """By context: the share of acted-on exits after which the mid rose ``rise_pct`` % before it fell as much
    (to the close), beside the same share at every ``base_step`` s of the stock sessions."""
    base = [
        race(tape, ts, settings.rise_pct, settings.rise_pct)
        for tape in _stock_tapes(tapes, settings)
        for ts in base_times(tape, settings.base_step)
    ]
    base_rises = base.count("rise")
    chance = rounded(base_rises / len(base), 4) if base else None
    chance_ci = rounded_interval(wilson(base_rises, len(base)), 4)
    rows = {}
    for context in CONTEXTS:
        outcomes = [
            race(tape, i.ts, settings.rise_pct, settings.rise_pct)
            for i in chosen(instances, context)
            if (tape := instance_tape(tapes, i)) is not None
        ]
        rises = outcomes.count("rise")
        rows[context] = ShareRow(
            hits=rises,
            total=len(outcomes),
            share=rounded(rises / len(outcomes), 4) if outcomes else None,
            ci95=rounded_interval(wilson(rises, len(outcomes)), 4),
            chance=chance,
            chance_ci95=chance_ci,
        )
    return rows


def mean_row(values: list[float], base: list[float], settings: BacktestSettings) -> MeanRow:
    """``values`` (bps) against ``base``: means, the values' bootstrap interval and the difference's."""
    sample, chance = np.asarray(values, dtype=float), np.asarray(base, dtype=float)
    return MeanRow(
        n=len(values),
        mean_bps=rounded(float(sample.mean())) if len(sample) else None,
        ci95=rounded_interval(bootstrap_mean(sample, settings.bootstrap, settings.seed)),
        chance_mean_bps=rounded(float(chance.mean())) if len(chance) else None,
        difference_ci95=rounded_interval(bootstrap_difference(sample, chance, settings.bootstrap, settings.seed)),
    )


def cost_rule(instances: list[ExitInstance], tapes: Tapes, settings: BacktestSettings) -> dict[str, dict[str, MeanRow]]:
    """Saved bps versus holding ``exit_horizon`` s (net of the half spread) of the exits the rule acts on
    (``"exit"``), those it only watches (``"watch"``) and both (``"all"``), by context, beside chance."""
    horizon = settings.exit_horizon
    base = [
        value
        for tape in _stock_tapes(tapes, settings)
        for ts in base_times(tape, settings.base_step)
        if (value := saved_at(tape, ts, horizon)) is not None
    ]
    table: dict[str, dict[str, MeanRow]] = {}
    for action, wanted in (("exit", "exit"), ("watch", "watch"), ("all", None)):
        table[action] = {
            context: mean_row(
                [
                    value
                    for i in chosen(instances, context, wanted)
                    if (tape := instance_tape(tapes, i)) is not None
                    and (value := saved_at(tape, i.ts, horizon)) is not None
                ],
                base,
                settings,
            )
            for context in CONTEXTS
        }
    return table


def alert_rates(
    alerts: list[OrderFlowAlert], tapes: Tapes, settings: BacktestSettings
) -> tuple[dict[str, AlertRate], int]:
    """Alerts per stock symbol-day by context (a session with no alert counts as 0), and the index's alerts."""
    days = {(symbol, day) for symbol, day in tapes if symbol not in settings.index_symbols}
    stock_alerts = [a for a in alerts if a.symbol not in settings.index_symbols]
    days |= {(a.symbol, new_york_day(a.ts_event)) for a in stock_alerts}
    rates = {}
    for context in CONTEXTS:
        counted = Counter(
            (a.symbol, new_york_day(a.ts_event))
            for a in stock_alerts
            if context == "all" or (a.context.label if a.context is not None else "unknown") == context
        )
        counts = [counted[key] for key in sorted(days)]
        in_band = sum(BAND[0] <= count <= BAND[1] for count in counts)
        above = sum(count > GUARDRAIL for count in counts)
        rates[context] = AlertRate(
            symbol_days=len(counts),
            alerts=sum(counts),
            mean=rounded(float(np.mean(counts))) if counts else None,
            mean_ci95=rounded_interval(bootstrap_mean(np.asarray(counts, float), settings.bootstrap, settings.seed)),
            median=rounded(float(stats.median(counts))) if counts else None,
            in_band_share=rounded(in_band / len(counts), 4) if counts else None,
            in_band_ci95=rounded_interval(wilson(in_band, len(counts)), 4),
            above_fifty_share=rounded(above / len(counts), 4) if counts else None,
            above_fifty_ci95=rounded_interval(wilson(above, len(counts)), 4),
        )
    return rates, len(alerts) - len(stock_alerts)
