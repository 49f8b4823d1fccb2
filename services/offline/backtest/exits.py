"""What following the exit recommendations is worth: each position exits at the bid on its first one.

A long position (by default one share-weighted unit held from the open of each day; or the bot's own entries
from ``--positions``) exits at the **bid** on the first recommendation, versus holding: to the horizon (marked at
the mid, so the exit pays half the spread and the holder pays nothing), and to its stop or the close (sold at the
bid either way). Saved bps, max drawdown with and without, the share of profitable exits, and false-positive exits
(the mid then rose ``fall_bps`` within the horizon).

Every figure is computed from integers in nano-dollars and nanoseconds up to the final ratios; bps = 1e4 × return.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

import msgspec
import numpy as np

from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from services.offline.backtest.collect import PriceTape, Signal, Tapes, new_york_day
from services.offline.backtest.models import (
    BacktestSettings,
    ExitedTrade,
    ExitSummary,
    FollowingExits,
    HeldTrade,
    HorizonExitSummary,
    HorizonSaving,
)
from services.offline.backtest.positions import Position
from services.offline.backtest.statistics import base_times, rounded, rounded_interval, wilson


def follow_exits(
    positions: list[Position], exits: list[Signal], tapes: Tapes, settings: BacktestSettings
) -> FollowingExits:
    """Each position exits at the bid on its first recommendation after entry, versus holding."""
    by_symbol: dict[str, list[Signal]] = defaultdict(list)
    for signal in sorted(exits, key=lambda s: s.ts):
        by_symbol[signal.symbol].append(signal)
    trades: list[HeldTrade] = []
    for position in positions:
        tape = tapes.get((position.symbol, new_york_day(position.entry_ns)))
        if tape is None or not tape.times:
            continue
        held_end, held_price, held_reason = hold(position, tape)
        held = HeldTrade(
            symbol=position.symbol,
            day=tape.day,
            entry_ns=position.entry_ns,
            entry_price=position.entry_price,
            held_exit_reason=held_reason,
            held_exit_ns=held_end,
            held_bps=_bps(held_price, position.entry_price),
            drawdown_held_bps=_drawdown(tape, position, held_end),
        )
        first_exit = next((s for s in by_symbol[position.symbol] if position.entry_ns < s.ts < held_end), None)
        trades.append(held if first_exit is None else _exited(held, first_exit, position, tape, held_price, settings))
    return FollowingExits(positions=len(trades), trades=trades, summary=_exit_summary(trades, settings))


def _exited(
    held: HeldTrade, signal: Signal, position: Position, tape: PriceTape, held_price: int, settings: BacktestSettings
) -> ExitedTrade:
    """``held`` with the exit at the bid on ``signal`` beside it."""
    quote = tape.at(signal.ts)
    assert quote is not None  # the position entered at or after the tape's first quote, before the signal
    bid, ask = quote
    mid = (bid + ask) / 2
    horizons: dict[str, HorizonSaving | None] = {}
    for horizon in settings.horizons:
        later = (
            tape.mid_at(signal.ts + horizon * NANOSECONDS_PER_SECOND)
            if signal.ts + horizon * NANOSECONDS_PER_SECOND <= tape.close_ns
            else None
        )
        path = tape.path(signal.ts, horizon) if later is not None else np.asarray([])
        horizons[str(horizon)] = (
            None
            if later is None
            else HorizonSaving(
                saved_net_bps=rounded((bid - later) / mid * 1e4),
                false_positive=bool(len(path) and np.nanmax(path) >= mid * (1 + settings.fall_bps / 1e4)),
            )
        )
    chance = [
        _bid_at(tape, ts) for ts in base_times(tape, settings.base_step) if position.entry_ns < ts < held.held_exit_ns
    ]
    return ExitedTrade(
        **msgspec.structs.asdict(held),
        exit_id=signal.id,
        exit_ns=signal.ts,
        exit_bid=bid,
        half_spread_bps=round((ask - bid) / 2 / mid * 1e4, 2),
        exited_bps=_bps(bid, position.entry_price),
        saved_vs_hold_bps=round(_bps(bid, position.entry_price) - held.held_bps, 2),
        chance_saved_vs_hold_bps=rounded(
            float(np.mean([(b - held_price) / position.entry_price * 1e4 for b in chance]))
        )
        if chance
        else None,
        profitable=bid > position.entry_price,
        drawdown_exited_bps=_drawdown(tape, position, signal.ts),
        versus_holding=horizons,
    )


def _bid_at(tape: PriceTape, ts: int) -> int:
    quote = tape.at(ts)
    assert quote is not None  # after the entry, so after the tape's first quote
    return quote[0]


def hold(position: Position, tape: PriceTape) -> tuple[int, int, str]:
    """When and at what bid holding ends: the stop (the first bid at or below it) or the close."""
    start = bisect.bisect_right(tape.times, position.entry_ns)
    if position.stop:
        for index in range(start, len(tape.times)):
            if tape.bids[index] <= position.stop:
                return tape.times[index], tape.bids[index], "stop"
    quote = tape.at(tape.close_ns - 1)
    assert quote is not None  # the caller checked the tape has quotes, all before the close
    bid = quote[0]
    return tape.close_ns, bid, "close"


def _bps(price: float, entry: int) -> float:
    return round((price / entry - 1) * 1e4, 2)


def _drawdown(tape: PriceTape, position: Position, end_ns: int) -> float:
    """Largest fall of the mid from its running peak (bps of entry) between entry and ``end_ns``."""
    first = (position.entry_ns - tape.open_ns) // NANOSECONDS_PER_SECOND
    last = (min(end_ns, tape.close_ns) - tape.open_ns) // NANOSECONDS_PER_SECOND
    mids = tape.mid_each_second()[max(0, first) : max(0, last)]
    mids = mids[~np.isnan(mids)]
    if len(mids) == 0:
        return 0.0
    peak = np.maximum.accumulate(np.concatenate(([position.entry_price], mids)))
    return round(float(np.max(peak[1:] - mids)) / position.entry_price * 1e4, 2)


def _mean(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return rounded(float(np.mean(present))) if present else None


def _exit_summary(trades: list[HeldTrade], settings: BacktestSettings) -> ExitSummary:
    exited = [t for t in trades if isinstance(t, ExitedTrade)]
    by_horizon: dict[str, HorizonExitSummary] = {}
    for horizon in settings.horizons:
        rows = [saving for t in exited if (saving := t.versus_holding.get(str(horizon)))]
        saved = np.asarray([r.saved_net_bps for r in rows])
        false_positives = sum(r.false_positive for r in rows)
        by_horizon[str(horizon)] = HorizonExitSummary(
            exits=len(rows),
            saved_net_bps_mean=rounded(saved.mean()) if len(saved) else None,
            false_positive_share=rounded(false_positives / len(rows), 3) if rows else None,
            false_positive_ci95=rounded_interval(wilson(false_positives, len(rows)), 3),
        )
    return ExitSummary(
        positions=len(trades),
        exited=len(exited),
        profitable_exits_share=rounded(sum(t.profitable for t in exited) / len(exited), 3) if exited else None,
        saved_vs_hold_to_stop_or_close_bps_mean=rounded(float(np.mean([t.saved_vs_hold_bps for t in exited])))
        if exited
        else None,
        chance_saved_vs_hold_to_stop_or_close_bps_mean=_mean([t.chance_saved_vs_hold_bps for t in exited]),
        half_spread_bps_mean=rounded(float(np.mean([t.half_spread_bps for t in exited]))) if exited else None,
        max_drawdown_held_bps_mean=rounded(float(np.mean([t.drawdown_held_bps for t in trades]))) if trades else None,
        max_drawdown_following_bps_mean=rounded(
            float(
                np.mean([t.drawdown_exited_bps if isinstance(t, ExitedTrade) else t.drawdown_held_bps for t in trades])
            )
        )
        if trades
        else None,
        by_horizon=by_horizon,
    )
