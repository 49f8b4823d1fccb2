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
    """Horizons in seconds; a fall (hit) and a rise (false positive) of ``fall_bps``; base every ``base_step`` s.

    The success metrics: a drop of ``drop_pct`` % from the running peak, a rise of ``rise_pct`` % (false positive),
    a stop ``stop_loss_pct`` % under entry for positions without one, exits scored over ``exit_horizon`` s, and the
    ``index_symbols`` (no position is opened in an index)."""

    horizons: tuple[int, ...] = DEFAULT_HORIZONS
    fall_bps: float = 10.0
    base_step: int = 30
    bootstrap: int = 2000
    seed: int = 7
    drop_pct: float = 1.0
    rise_pct: float = 1.0
    stop_loss_pct: float = 2.0
    exit_horizon: int = 300
    index_symbols: tuple[str, ...] = ("SPY",)


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
    """Base sample sizes by horizon (``"300"``), and each kind's (and each market context's) comparison by horizon."""

    base_samples: dict[str, int]
    by_kind: dict[str, dict[str, ChanceComparison]]
    by_context: dict[str, dict[str, ChanceComparison]] = {}
    """The stocks' alerts and exits by market context label (``"alerts, market_wide"``, ``"exits, market scope"``)."""


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


# --- the success metrics (HEART) -------------------------------------------------------------------------

CONTEXTS = ("all", "stock_specific", "market_wide", "mixed", "unknown")
"""The columns of every success metric: all exits, then only the exits (or alerts) of each market context."""


class ShareRow(msgspec.Struct, kw_only=True):
    """``hits`` of ``total`` (share, Wilson 95 %) beside ``chance``: the same share for random moments."""

    hits: int
    total: int
    share: float | None
    ci95: Interval
    chance: float | None
    chance_ci95: Interval  # Wilson when chance is sampled; (None, None) when it is computed exactly


class MeanRow(msgspec.Struct, kw_only=True):
    """A mean in bps of ``n`` values (bootstrap 95 %) beside chance's, and the difference's bootstrap interval."""

    n: int
    mean_bps: float | None
    ci95: Interval
    chance_mean_bps: float | None
    difference_ci95: Interval


class AlertRate(msgspec.Struct, kw_only=True):
    """Alerts per stock symbol-day (every session): mean (bootstrap 95 %), median, shares in 5–15 and above 50."""

    symbol_days: int
    alerts: int
    mean: float | None
    mean_ci95: Interval
    median: float | None
    in_band_share: float | None
    in_band_ci95: Interval
    above_fifty_share: float | None
    above_fifty_ci95: Interval


class PnlRow(msgspec.Struct, kw_only=True):
    """Each position sold (a) at its stop or the close only, (b) also on the first exit: mean bps per position,
    the paired difference b − a (bootstrap 95 %), and the same for an exit at a random moment instead (chance)."""

    positions: int
    exited_on_order_flow: int
    stop_only_bps: float | None
    following_bps: float | None
    difference_bps: float | None
    difference_ci95: Interval
    chance_difference_bps: float | None
    chance_difference_ci95: Interval
    versus_chance_ci95: Interval  # of (b − random exit) per position


class ExitReasons(msgspec.Struct, kw_only=True):
    """How each position of (b) ended: on an order-flow exit, at its stop, at the close; the first's share."""

    order_flow: int
    stop: int
    close: int
    order_flow_share: float | None
    order_flow_ci95: Interval


class HeartRow(msgspec.Struct, kw_only=True):
    """One line of the success-metrics table: the value over all exits with its interval, chance, the target."""

    metric: str
    unit: str  # "share" | "bps" | "alerts"
    value: float | None
    ci95: Interval
    chance: float | None
    target: str
    met: bool | None
    by_context: dict[str, float | None]


class SuccessMetrics(msgspec.Struct, kw_only=True):
    """The product's success metrics, each by context (:data:`CONTEXTS`); definitions in docs/success-metrics.md."""

    positions: int
    drop_pct: float
    rise_pct: float
    stop_loss_pct: float
    exit_horizon_seconds: int
    table: list[HeartRow]
    exited_before_drop: dict[str, ShareRow]  # action "exit"
    watched_before_drop: dict[str, ShareRow]  # action "watch"
    false_positive_exits: dict[str, ShareRow]
    alerts_per_symbol_day: dict[str, AlertRate]
    index_alerts: int
    exit_pnl: dict[str, PnlRow]
    exit_reasons: dict[str, ExitReasons]
    cost_rule: dict[str, dict[str, MeanRow]]  # "exit" | "watch" | "all" → context → saved bps vs horizon


# --- the whole report ----------------------------------------------------------------------------------


class ReportSettings(msgspec.Struct, kw_only=True):
    horizons_seconds: list[int]
    fall_bps: float
    base_step_seconds: int
    bootstrap: int
    positions: str  # "given" | "one long from each open"
    stop_loss_pct: float = 2.0  # the stop of a position without one, % under its entry


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
    success_metrics: SuccessMetrics | None = None


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


class WalkForwardStep(msgspec.Struct, kw_only=True):
    """One held-out day: the settings ranked first on every day before it, and their score on it."""

    test_day: str
    ranked_on: list[str]
    chosen: dict[str, str]
    held_out: ExitScore


class SweepResult(msgspec.Struct, kw_only=True):
    """``sweep.json``: every combination, ranked on the training days, scored on the held-out days too; then walk
    forward: each held-out day scored with the settings chosen on the days before it, and those scores together."""

    objective: str
    train_days: list[str]
    test_days: list[str]
    horizon_seconds: int
    ranked_by_train: list[SweepRow]
    walk_forward: list[WalkForwardStep]
    walk_forward_held_out: ExitScore
