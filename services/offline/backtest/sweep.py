"""The settings sweep: a grid of settings ranked on earlier days, scored on held-out days never used to rank."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from services.offline.backtest.collect import Collected
from services.offline.backtest.heart_moments import exit_instances, instance_tape, saved_at
from services.offline.backtest.models import ExitScore, SweepResult, SweepRow, WalkForwardStep
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


OBJECTIVE = (
    "mean bps saved by selling at the bid on each acted-on exit recommendation (action exit), on every stock it "
    "applies to, versus the mid {horizon} s later (net of the half spread), beside the same at every {step} s of "
    "the same stock sessions (chance); ranked by the mean (chance is the same for every setting on the same days)"
)


@dataclass
class DayScores:
    """One run's saved bps by New York day: its acted-on exits' and chance's (every ``base_step`` s)."""

    saved: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    base: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


def day_scores(
    found: Collected, horizon: int, *, index_symbols: tuple[str, ...] = ("SPY",), base_step: int = 30
) -> DayScores:
    """What :data:`OBJECTIVE` measures in ``found``, kept by day so any set of days can be scored."""
    scores = DayScores()
    for instance in exit_instances(found.exits, found.tapes, index_symbols):
        tape = instance_tape(found.tapes, instance)
        if instance.action == "exit" and tape is not None:
            value = saved_at(tape, instance.ts, horizon)
            if value is not None:
                scores.saved[tape.day].append(value)
    for (symbol, day), tape in found.tapes.items():
        if symbol not in index_symbols:
            for ts in base_times(tape, base_step):
                value = saved_at(tape, ts, horizon)
                if value is not None:
                    scores.base[day].append(value)
    return scores


def exit_score(scores: DayScores, days: list[str], *, reps: int = 2000, seed: int = 7) -> ExitScore:
    """:data:`OBJECTIVE` over ``days``, with a bootstrap 95 % interval of the difference from chance."""
    saved = [value for day in days for value in scores.saved.get(day, [])]
    base = [value for day in days for value in scores.base.get(day, [])]
    difference = bootstrap_difference(np.asarray(saved), np.asarray(base), reps, seed)
    return ExitScore(
        exits=len(saved),
        saved_net_bps_mean=rounded(float(np.mean(saved))) if saved else None,
        base_saved_net_bps_mean=rounded(float(np.mean(base))) if base else None,
        difference_ci95_bps=rounded_interval(difference),
    )


def _rank_key(score: ExitScore) -> float:
    return -(score.saved_net_bps_mean if score.saved_net_bps_mean is not None else -math.inf)


def _mean_rank(scores: DayScores, days: list[str]) -> float:
    """The ranking of :func:`_rank_key` without the interval (first in the grid wins a tie)."""
    saved = [value for day in days for value in scores.saved.get(day, [])]
    return -float(np.mean(saved)) if saved else math.inf


def sweep(
    grid: dict[str, list[str]],
    run: Callable[[dict[str, str]], Collected],
    *,
    test_days: int,
    horizon: int,
    index_symbols: tuple[str, ...] = ("SPY",),
    base_step: int = 30,
) -> SweepResult:
    """Run every combination, score each on the training days and on the held-out days; rank by training score.
    Then walk forward: each held-out day is scored with the combination ranked first on every day before it.

    ``run(overrides)`` returns what one pass with those settings found. The held-out days are never used to
    rank: the table shows how the ranking held up on them."""
    keys = sorted(grid)
    runs: list[tuple[dict[str, str], DayScores]] = []
    days: set[str] = set()
    for values in itertools.product(*(grid[key] for key in keys)):
        overrides = dict(zip(keys, values, strict=True))
        found = run(overrides)
        days |= {day for _symbol, day in found.tapes}
        runs.append((overrides, day_scores(found, horizon, index_symbols=index_symbols, base_step=base_step)))
    train, test = split_days(sorted(days), test_days)
    results = [
        SweepRow(settings=overrides, train=exit_score(scores, train), test=exit_score(scores, test))
        for overrides, scores in runs
    ]
    results.sort(key=lambda row: _rank_key(row.train))
    steps, held_saved = [], DayScores()
    for day in test:
        before = [d for d in sorted(days) if d < day]
        overrides, scores = min(runs, key=lambda item: _mean_rank(item[1], before))
        steps.append(
            WalkForwardStep(test_day=day, ranked_on=before, chosen=overrides, held_out=exit_score(scores, [day]))
        )
        held_saved.saved[day] = scores.saved.get(day, [])
        held_saved.base[day] = scores.base.get(day, [])
    return SweepResult(
        objective=OBJECTIVE.format(horizon=horizon, step=base_step),
        train_days=train,
        test_days=test,
        horizon_seconds=horizon,
        ranked_by_train=results,
        walk_forward=steps,
        walk_forward_held_out=exit_score(held_saved, test),
    )
