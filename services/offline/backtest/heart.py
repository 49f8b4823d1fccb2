"""The product's success metrics (HEART) over the backtest's positions: each beside chance, each by market context.

Per position (one long from each stock session's open, or the bot's own from ``--positions``):

* **exited before a drop** — of the positions whose mid fell ``drop_pct`` % from its running peak since entry (the
  entry's mid included) before the close, the share where an acted-on exit recommendation (action "exit"; "watch"
  reported apart) came after the entry and before the first whole second showing that drop. Chance, computed
  exactly: as many exits as the position had, at uniform random moments of (entry, close): 1 − (1 − p)^k with
  p = (drop − entry) / (close − entry).
* **exit P&L versus stop-loss only** — each position sold (a) at the bid when the bid first reaches its stop, else
  at the close's bid; (b) at the bid on its first acted-on exit before that, else as (a). Mean bps per position,
  the paired difference b − a with a bootstrap interval (target +150 bps), and chance: the positions (b) exited
  sold instead at the mean bid of every ``base_step`` s of (entry, end of (a)).
* **exits citing order flow** — how each (b) ended: order-flow exit, stop, close.

Moment-scored metrics (false positives, the cost rule, alerts a day) are in :mod:`.heart_moments`. Each metric's
``by context`` column follows only the exits (or counts only the alerts) of that context; ``all`` follows every one.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import msgspec
import numpy as np

from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from services.offline.backtest.collect import Collected, PriceTape, new_york_day
from services.offline.backtest.exits import hold
from services.offline.backtest.heart_moments import (
    BAND,
    ExitInstance,
    alert_rates,
    chosen,
    cost_rule,
    exit_instances,
    false_positives,
)
from services.offline.backtest.models import (
    CONTEXTS,
    BacktestSettings,
    ExitReasons,
    HeartRow,
    Interval,
    PnlRow,
    ShareRow,
    SuccessMetrics,
)
from services.offline.backtest.positions import Position
from services.offline.backtest.statistics import base_times, bootstrap_mean, rounded, rounded_interval, wilson

PNL_TARGET_BPS = 150.0
"""The spec's targeted gain of following the exits over the stop alone: +1.5 % a position."""


@dataclass(frozen=True)
class Held:
    """One position on its tape: when its mid first dropped ``drop_pct`` % (None: never), and how it ends
    without the signals (the stop or the close: time, bid, reason), with the mean bid of chance's exit moments."""

    position: Position
    tape: PriceTape
    drop_ns: int | None
    end_ns: int
    end_bid: int
    end_reason: str
    chance_bid: float | None


def drop_time(tape: PriceTape, entry_ns: int, drop_pct: float) -> int | None:
    """The first whole second after ``entry_ns`` whose mid is ``drop_pct`` % under the running peak of the mid
    since entry (the mid at entry included); None when it never is before the close."""
    level = tape.mid_at(entry_ns)
    if level is None:
        return None
    start = (entry_ns - tape.open_ns) // NANOSECONDS_PER_SECOND
    path = tape.mid_each_second()[start:]
    peaks = np.fmax.accumulate(np.concatenate(([level], path)))[1:]
    below = np.nonzero(path <= peaks * (1 - drop_pct / 100))[0]
    return None if not len(below) else tape.open_ns + (start + int(below[0]) + 1) * NANOSECONDS_PER_SECOND


def held_positions(found: Collected, positions: list[Position], settings: BacktestSettings) -> list[Held]:
    """Each position with a tape for its day (others are skipped), ready for the metrics."""
    result = []
    for position in positions:
        tape = found.tapes.get((position.symbol, new_york_day(position.entry_ns)))
        if tape is None or not tape.times or not tape.open_ns <= position.entry_ns < tape.close_ns:
            continue
        end_ns, end_bid, reason = hold(position, tape)
        bids = [
            bid
            for ts in base_times(tape, settings.base_step)
            if position.entry_ns < ts < end_ns and (bid := _bid(tape, ts)) is not None
        ]
        result.append(
            Held(
                position,
                tape,
                drop_time(tape, position.entry_ns, settings.drop_pct),
                end_ns,
                end_bid,
                reason,
                float(np.mean(bids)) if bids else None,
            )
        )
    return result


def _bid(tape: PriceTape, ts: int) -> int | None:
    quote = tape.at(ts)
    return None if quote is None else quote[0]


def _times(instances: list[ExitInstance]) -> dict[str, list[int]]:
    by_symbol: dict[str, list[int]] = {}
    for instance in instances:
        by_symbol.setdefault(instance.symbol, []).append(instance.ts)
    return by_symbol


def _within(times: list[int], start: int, end: int) -> list[int]:
    """The times strictly between ``start`` and ``end`` (``times`` sorted)."""
    return times[bisect.bisect_right(times, start) : bisect.bisect_left(times, end)]


def before_drop(held: list[Held], instances: list[ExitInstance]) -> ShareRow:
    """Of the positions that dropped, the share with an exit of ``instances`` between entry and the drop."""
    times = _times(instances)
    dropped = [h for h in held if h.drop_ns is not None]
    hits, chance = 0, []
    for h in dropped:
        assert h.drop_ns is not None
        mine = times.get(h.position.symbol, [])
        entry, close = h.position.entry_ns, h.tape.close_ns
        hits += bool(_within(mine, entry, h.drop_ns))
        p = (h.drop_ns - entry) / (close - entry)
        chance.append(1 - (1 - p) ** len(_within(mine, entry, close)))
    return ShareRow(
        hits=hits,
        total=len(dropped),
        share=rounded(hits / len(dropped), 4) if dropped else None,
        ci95=rounded_interval(wilson(hits, len(dropped)), 4),
        chance=rounded(float(np.mean(chance)), 4) if chance else None,
        chance_ci95=(None, None),
    )


def _bps(price: float, entry: int) -> float:
    return (price / entry - 1) * 1e4


def following(
    held: list[Held], instances: list[ExitInstance], settings: BacktestSettings
) -> tuple[PnlRow, ExitReasons]:
    """(a) stop-loss only against (b) the first exit of ``instances`` too, and how each (b) ended."""
    times = _times(instances)
    stop_only, follow, chance = [], [], []
    reasons = {"order_flow": 0, "stop": 0, "close": 0}
    for h in held:
        entry = h.position.entry_price
        a = _bps(h.end_bid, entry)
        first = _within(times.get(h.position.symbol, []), h.position.entry_ns, h.end_ns)
        bid = _bid(h.tape, first[0]) if first else None
        if bid is None:
            reasons[h.end_reason] += 1
            b, c = a, a
        else:
            reasons["order_flow"] += 1
            b = _bps(bid, entry)
            c = _bps(h.chance_bid, entry) if h.chance_bid is not None else a
        stop_only.append(a)
        follow.append(b)
        chance.append(c)
    a_values, b_values, c_values = np.asarray(stop_only), np.asarray(follow), np.asarray(chance)

    def interval(values: np.ndarray) -> Interval:
        return rounded_interval(bootstrap_mean(values, settings.bootstrap, settings.seed))

    def mean(values: np.ndarray) -> float | None:
        return rounded(float(values.mean())) if len(values) else None

    pnl = PnlRow(
        positions=len(held),
        exited_on_order_flow=reasons["order_flow"],
        stop_only_bps=mean(a_values),
        following_bps=mean(b_values),
        difference_bps=mean(b_values - a_values),
        difference_ci95=interval(b_values - a_values),
        chance_difference_bps=mean(c_values - a_values),
        chance_difference_ci95=interval(c_values - a_values),
        versus_chance_ci95=interval(b_values - c_values),
    )
    ended = ExitReasons(
        **reasons,
        order_flow_share=rounded(reasons["order_flow"] / len(held), 4) if held else None,
        order_flow_ci95=rounded_interval(wilson(reasons["order_flow"], len(held)), 4),
    )
    return pnl, ended


def success_metrics(found: Collected, positions: list[Position], settings: BacktestSettings) -> SuccessMetrics:
    """Every success metric over ``positions`` (already given their stops) and the signals ``found``."""
    held = held_positions(found, positions, settings)
    instances = exit_instances(found.exits, found.tapes, settings.index_symbols)
    followed = {context: following(held, chosen(instances, context), settings) for context in CONTEXTS}
    rates, index_alerts = alert_rates(found.alerts, found.tapes, settings)
    metrics = SuccessMetrics(
        positions=len(held),
        drop_pct=settings.drop_pct,
        rise_pct=settings.rise_pct,
        stop_loss_pct=settings.stop_loss_pct,
        exit_horizon_seconds=settings.exit_horizon,
        table=[],
        exited_before_drop={c: before_drop(held, chosen(instances, c)) for c in CONTEXTS},
        watched_before_drop={c: before_drop(held, chosen(instances, c, "watch")) for c in CONTEXTS},
        false_positive_exits=false_positives(instances, found.tapes, settings),
        alerts_per_symbol_day=rates,
        index_alerts=index_alerts,
        exit_pnl={context: pnl for context, (pnl, _ended) in followed.items()},
        exit_reasons={context: ended for context, (_pnl, ended) in followed.items()},
        cost_rule=cost_rule(instances, found.tapes, settings),
    )
    metrics.table = heart_table(metrics)
    return metrics


Target = Callable[[float, float | None], bool] | None
"""Whether a value (over all exits) meets the target, given chance's value; None: no target."""


def _row(
    metric: str,
    unit: str,
    rows: Mapping[str, msgspec.Struct],
    fields: tuple[str, str, str | None],
    target: str,
    met: Target,
) -> HeartRow:
    """One table row from ``rows`` (by context): ``fields`` names the value, its interval and chance's value."""
    value_field, interval_field, chance_field = fields
    overall = getattr(rows["all"], value_field)
    chance = getattr(rows["all"], chance_field) if chance_field else None
    return HeartRow(
        metric=metric,
        unit=unit,
        value=overall,
        ci95=getattr(rows["all"], interval_field),
        chance=chance,
        target=target,
        met=None if met is None or overall is None else bool(met(overall, chance)),
        by_context={context: getattr(rows[context], value_field) for context in CONTEXTS[1:]},
    )


def heart_table(m: SuccessMetrics) -> list[HeartRow]:
    """The success metrics' summary: one row each, its value over all exits beside chance and the spec's target."""
    share = ("share", "ci95", "chance")
    saved = ("mean_bps", "ci95", "chance_mean_bps")
    horizon = f"{m.exit_horizon_seconds} s"
    acted = m.exit_pnl["all"].exited_on_order_flow > 0
    return [
        _row(f"exited before a {m.drop_pct:g} % drop", "share", m.exited_before_drop, share, "> 60 %",
             lambda v, _: v > 0.6),
        _row(f"watch before a {m.drop_pct:g} % drop", "share", m.watched_before_drop, share, "–", None),
        _row(f"false-positive exits (rose {m.rise_pct:g} % first)", "share", m.false_positive_exits, share,
             "< 10 %", lambda v, _: v < 0.1),
        _row("alerts per symbol-day (mean)", "alerts", m.alerts_per_symbol_day, ("mean", "mean_ci95", None),
             f"{BAND[0]}–{BAND[1]}", lambda v, _: BAND[0] <= v <= BAND[1]),
        _row(f"symbol-days with {BAND[0]}–{BAND[1]} alerts", "share", m.alerts_per_symbol_day,
             ("in_band_share", "in_band_ci95", None), "–", None),
        _row("symbol-days above 50 alerts", "share", m.alerts_per_symbol_day,
             ("above_fifty_share", "above_fifty_ci95", None), "0", lambda v, _: v == 0),
        _row("exit P&L − stop-loss only (bps a position)", "bps", m.exit_pnl,
             ("difference_bps", "difference_ci95", "chance_difference_bps"), f"≥ 0 (+{PNL_TARGET_BPS:g} targeted)",
             (lambda v, _: v >= 0) if acted else None),
        _row("exits citing order flow", "share", m.exit_reasons, ("order_flow_share", "order_flow_ci95", None),
             "> 30 %", lambda v, _: v > 0.3),
        _row(f"saved vs holding {horizon}, action exit (bps)", "bps", m.cost_rule["exit"], saved, "> chance",
             lambda v, chance: chance is not None and v > chance),
        _row(f"saved vs holding {horizon}, action watch (bps)", "bps", m.cost_rule["watch"], saved, "–", None),
    ]  # fmt: skip


def shown(unit: str, value: float | None) -> str:
    """A table cell: a share as a percentage (``0.625`` → ``"62.5 %"``), bps with their unit, counts as they are."""
    if value is None:
        return "–"
    if unit == "share":
        return f"{100 * value:.1f} %"
    return f"{value:g} bps" if unit == "bps" else f"{value:g}"


def shown_interval(unit: str, interval: Interval) -> str:
    """``[low, high]`` in the unit of :func:`shown`; ``"–"`` without an interval."""
    low, high = interval
    return "–" if low is None or high is None else f"[{shown(unit, low)}, {shown(unit, high)}]"
