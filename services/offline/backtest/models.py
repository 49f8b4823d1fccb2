"""The backtest's settings and its typed report: what ``report.json`` and ``sweep.json`` hold.

Each report model is a msgspec Struct whose fields are, in order, the keys of the JSON written
(``msgspec.to_builtins`` gives the document). Returns are in basis points (bps = 1e4 × return), prices in
nano-dollars, times in nanoseconds since the epoch, horizons in seconds. A value that cannot be computed (no
signal, no price) is None, written as ``null``.

A ``report.json`` excerpt::

    {"settings": {"horizons_seconds": [30, 60, 300, 900], "fall_bps": 10.0, "base_step_seconds": 30,
                  "bootstrap": 2000, "positions": "one long from each open"},
     "events": 1234567, "sessions": ["AIG 2013-10-07"], "per_day": {"AIG 2013-10-07": {"alerts": 9, "exits": 1}},
     "versus_chance": {"base_samples": {"300": 770}, "by_kind": {"exit": {"300": {"signals": 1, ...}}}},
     "following_exits": {"positions": 1, "trades": [...], "summary": {...}}}
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

DEFAULT_HORIZONS = (30, 60, 300, 900)

Interval = tuple[float | None, float | None]
"""A 95 % interval ``(low, high)``; ``(None, None)`` when there is too little to say."""


@dataclass(frozen=True)
class BacktestSettings:
    """Horizons in seconds; a fall (hit) and a rise (false positive) of ``fall_bps``; base every ``base_step`` s."""

    horizons: tuple[int, ...] = DEFAULT_HORIZONS
    fall_bps: float = 10.0
    base_step: int = 30
    bootstrap: int = 2000
    seed: int = 7


# --- signals versus chance ---------------------------------------------------------------------------


class ChanceComparison(msgspec.Struct, kw_only=True):
    """One signal kind at one horizon against the base (every ``base_step`` s of the same sessions)."""

    signals: int
    censored_past_close: int
    outside_regular_session: int
    mean_forward_bps: float | None
    base_mean_forward_bps: float | None
    difference_bps: float | None
    difference_ci95_bps: Interval
    hit_rate: float | None
    hit_rate_ci95: Interval
    base_hit_rate: float | None
    base_hit_rate_ci95: Interval
    lift: float | None
    lead_seconds_mean: float | None
    lead_seconds_median: float | None


class VersusChance(msgspec.Struct, kw_only=True):
    """Base sample sizes by horizon (``"300"``), and each kind's comparison by horizon."""

    base_samples: dict[str, int]
    by_kind: dict[str, dict[str, ChanceComparison]]


# --- following the exits -----------------------------------------------------------------------------


class HorizonSaving(msgspec.Struct, kw_only=True):
    """An exit at the bid versus the mid ``horizon`` s later; a false positive when the mid then rose."""

    saved_net_bps: float | None
    false_positive: bool


class HeldTrade(msgspec.Struct, kw_only=True):
    """A position held to its stop or the close (no recommendation came in time)."""

    symbol: str
    day: str
    entry_ns: int
    entry_price: int
    held_exit_reason: str  # "stop" | "close"
    held_exit_ns: int
    held_bps: float
    drawdown_held_bps: float


class ExitedTrade(HeldTrade, kw_only=True):
    """A position that exited at the bid on its first recommendation, beside holding it."""

    exit_id: str
    exit_ns: int
    exit_bid: int
    half_spread_bps: float
    exited_bps: float
    saved_vs_hold_bps: float
    chance_saved_vs_hold_bps: float | None
    profitable: bool
    drawdown_exited_bps: float
    versus_holding: dict[str, HorizonSaving | None]


class HorizonExitSummary(msgspec.Struct, kw_only=True):
    exits: int
    saved_net_bps_mean: float | None
    false_positive_share: float | None
    false_positive_ci95: Interval


class ExitSummary(msgspec.Struct, kw_only=True):
    positions: int
    exited: int
    profitable_exits_share: float | None
    saved_vs_hold_to_stop_or_close_bps_mean: float | None
    chance_saved_vs_hold_to_stop_or_close_bps_mean: float | None
    half_spread_bps_mean: float | None
    max_drawdown_held_bps_mean: float | None
    max_drawdown_following_bps_mean: float | None
    by_horizon: dict[str, HorizonExitSummary]


class FollowingExits(msgspec.Struct, kw_only=True):
    positions: int
    trades: list[HeldTrade]  # an ExitedTrade where a recommendation came before the stop or the close
    summary: ExitSummary


# --- the whole report ----------------------------------------------------------------------------------


class ReportSettings(msgspec.Struct, kw_only=True):
    horizons_seconds: list[int]
    fall_bps: float
    base_step_seconds: int
    bootstrap: int
    positions: str  # "given" | "one long from each open"


class DayCounts(msgspec.Struct, kw_only=True):
    alerts: int
    exits: int


class BacktestReport(msgspec.Struct, kw_only=True):
    """``report.json``."""

    settings: ReportSettings
    events: int
    sessions: list[str]  # "SYMBOL YYYY-MM-DD"
    per_day: dict[str, DayCounts]  # "SYMBOL YYYY-MM-DD" → counts, every session
    versus_chance: VersusChance
    following_exits: FollowingExits


class ChartMark(msgspec.Struct, kw_only=True):
    second: float  # since the open
    kind: str
    id: str


class SessionChart(msgspec.Struct, kw_only=True):
    """One session's mid for the page's chart: ``[second since the open, mid in dollars]`` points."""

    symbol: str
    day: str
    points: list[tuple[int, float]]
    marks: list[ChartMark]


# --- the settings sweep ----------------------------------------------------------------------------------


class ExitScore(msgspec.Struct, kw_only=True):
    """Bps saved by exiting at the bid on each recommendation versus the mid ``horizon`` s later, beside chance."""

    exits: int
    saved_net_bps_mean: float | None
    base_saved_net_bps_mean: float | None
    difference_ci95_bps: Interval


class SweepRow(msgspec.Struct, kw_only=True):
    settings: dict[str, str]
    train: ExitScore
    test: ExitScore


class SweepResult(msgspec.Struct, kw_only=True):
    """``sweep.json``: every combination, ranked on the training days, scored on the held-out days too."""

    train_days: list[str]
    test_days: list[str]
    horizon_seconds: int
    ranked_by_train: list[SweepRow]
