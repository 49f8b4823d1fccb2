"""The settings sweep: a grid of settings ranked on earlier days, scored on held-out days never used to rank."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from services.offline.backtest.collect import Collected, PriceTape, new_york_day
from services.offline.backtest.models import ExitScore, SweepResult, SweepRow
from services.offline.backtest.statistics import base_times, bootstrap_difference, rounded, rounded_interval


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
) -> ExitScore:
    """Bps saved by exiting at the bid on every recommendation of ``days`` versus the mid ``horizon`` s later,
    beside the same for an exit at every ``base_step`` s of those sessions (chance), with a bootstrap 95 % interval."""

    def saved_at(tape: PriceTape, ts: int) -> float | None:
        if not tape.open_ns <= ts or ts + horizon * NANOSECONDS_PER_SECOND > tape.close_ns:
            return None
        quote, later = tape.at(ts), tape.mid_at(ts + horizon * NANOSECONDS_PER_SECOND)
        if quote is None or later is None:
            return None
        return (quote[0] - later) / ((quote[0] + quote[1]) / 2) * 1e4

    saved = [
        value
        for signal in found.signals
        if signal.kind == "exit" and new_york_day(signal.ts) in days
        for tape in [found.tapes.get((signal.symbol, new_york_day(signal.ts)))]
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
    difference = bootstrap_difference(np.asarray(saved), np.asarray(base), reps, seed)
    return ExitScore(
        exits=len(saved),
        saved_net_bps_mean=rounded(float(np.mean(saved))) if saved else None,
        base_saved_net_bps_mean=rounded(float(np.mean(base))) if base else None,
        difference_ci95_bps=rounded_interval(difference),
    )


def sweep(
    grid: dict[str, list[str]], run: Callable[[dict[str, str]], Collected], *, test_days: int, horizon: int
) -> SweepResult:
    """Run every combination, score each on the training days and on the held-out days; rank by training score.

    ``run(overrides)`` returns what one pass with those settings found. The held-out days are never used to
    rank: the table shows how the ranking held up on them."""
    keys = sorted(grid)
    results = []
    train: list[str] = []
    test: list[str] = []
    for values in itertools.product(*(grid[key] for key in keys)):
        overrides = dict(zip(keys, values, strict=True))
        found = run(overrides)
        if not train:
            train, test = split_days([day for _symbol, day in found.tapes], test_days)
        results.append(
            SweepRow(settings=overrides, train=exit_score(found, train, horizon), test=exit_score(found, test, horizon))
        )
    results.sort(
        key=lambda row: -(row.train.saved_net_bps_mean if row.train.saved_net_bps_mean is not None else -math.inf)
    )
    return SweepResult(train_days=train, test_days=test, horizon_seconds=horizon, ranked_by_train=results)
