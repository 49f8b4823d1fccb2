"""Every report the command line prints, drawn in one place from typed models (Rich tables and lines).

The commands compute; these functions only lay out. None prints: each returns what the command prints, so a
table's columns and wording are read here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from orderflow_client.positions import Position
    from services.ingest.replay import ReplaySummary
    from services.offline.analyze import AnalysisReport
    from services.offline.backtest.models import BacktestReport, SweepResult
    from services.offline.calibrate import CalibrationReport
    from services.tools.scenario_expectations import Expectation

WIDE_COLUMNS = 150
"""Files and pipes get whole backtest rows: at least this many columns when stdout is not a terminal."""


def wide(console: Console) -> Console:
    """``console`` on a terminal; else a console at least :data:`WIDE_COLUMNS` wide on stdout."""
    return Console(width=max(console.width, WIDE_COLUMNS)) if not console.is_terminal else console


def configuration_table(rows: Iterable[tuple[str, str, str, str]]) -> Table:
    """``orderflow config show``: (setting, environment variable, value, origin) rows, secrets already masked."""
    table = Table(title="orderflow configuration", title_justify="left")
    for column in ("setting", "environment variable", "value", "origin"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


def scenarios_table(expectations: Mapping[str, Expectation]) -> Table:
    """``orderflow scenario --list``: each scenario with what a correct detector reports."""
    table = Table(title="scenarios (expected detector output with default settings)", title_justify="left")
    for column in ("name", "alerts", "exits", "statuses"):
        table.add_column(column, overflow="fold")
    for name, expected in expectations.items():
        alerts = ", ".join(
            f"{kind}/{source}/{severity}{'/two-sided' if two_sided else ''}"
            for kind, source, severity, two_sided in expected.alerts
        )
        table.add_row(name, alerts or "none", ", ".join(expected.exits) or "none", ", ".join(expected.statuses) or "-")
    return table


def replay_table(summary: ReplaySummary) -> Table:
    """``orderflow replay``: what was published, rejected and dropped, and how fast."""
    table = Table(title="replay summary", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for kind, count in sorted(summary.events_by_kind.items()):
        table.add_row(f"events: {kind}", f"{count:,}")
    table.add_row("events published", f"{summary.published:,}")
    for code, count in sorted(summary.rejects.by_code.items()):
        table.add_row(f"rejected: {code}", f"{count:,}")
    table.add_row("duplicates dropped", f"{summary.duplicates:,}")
    table.add_row("symbols", ", ".join(sorted(summary.symbols)) or "-")
    table.add_row("elapsed", f"{summary.elapsed_seconds:.2f} s")
    table.add_row("rate", f"{summary.events_per_second:,.0f} events/s")
    return table


def analysis_table(report: AnalysisReport, out: Path) -> Table:
    """``orderflow analyze``: the counts of ``summary.json`` written to ``out``."""
    table = Table(title=f"analysis written to {out}", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("events", f"{report.events:,}")
    table.add_row("symbols", ", ".join(report.symbols) or "-")
    for key, count in report.alerts_by_type_and_severity.items():
        table.add_row(f"alerts: {key}", f"{count:,}")
    for label, count in report.alerts_by_context.items():
        table.add_row(f"alerts: context {label}", f"{count:,}")
    table.add_row("exit recommendations", f"{report.exits:,}")
    for code, count in report.validation_errors_by_code.items():
        table.add_row(f"validation errors: {code}", f"{count:,}")
    for code, count in report.rejects_by_code.items():
        table.add_row(f"rejected: {code}", f"{count:,}")
    table.add_row("rate", f"{report.events_per_second or 0:,} events/s")
    return table


def versus_chance_table(report: BacktestReport, out: Path) -> Table:
    """``orderflow backtest``: each signal kind at each horizon against the base (``report.json`` in ``out``)."""
    table = Table(title=f"signals versus chance (written to {out})", title_justify="left")
    for column in (
        "signal",
        "horizon",
        "n",
        "mean fwd bps",
        "base",
        "difference [95%]",
        "fall rate",
        "base rate",
        "lift",
    ):
        table.add_column(column, justify="left" if column == "signal" else "right")
    for kind, by_horizon in report.versus_chance.by_kind.items():
        for horizon, row in by_horizon.items():
            low, high = row.difference_ci95_bps
            table.add_row(
                kind,
                f"{horizon} s",
                str(row.signals),
                str(row.mean_forward_bps),
                str(row.base_mean_forward_bps),
                f"{row.difference_bps} [{low}, {high}]",
                str(row.hit_rate),
                str(row.base_hit_rate),
                str(row.lift),
            )
    return table


def following_exits_line(report: BacktestReport) -> str:
    """``orderflow backtest``: what following the exits saved, beside a random exit in the same sessions."""
    summary = report.following_exits.summary
    five_minutes = summary.by_horizon.get("300")
    saved_five_minutes = five_minutes.saved_net_bps_mean if five_minutes is not None else None
    return (
        f"following exits: {summary.exited} of {summary.positions} positions exited; "
        f"saved vs holding 5 min, net of half spread: {saved_five_minutes} bps; "
        f"vs holding to stop/close: {summary.saved_vs_hold_to_stop_or_close_bps_mean} bps "
        f"(a random exit in the same sessions: {summary.chance_saved_vs_hold_to_stop_or_close_bps_mean} bps)"
    )


def success_metrics_table(report: BacktestReport) -> Table | None:
    """``orderflow backtest``: the success metrics over all exits (95 % interval, chance, the spec's target) and
    by market context; None when the report has none."""
    from services.offline.backtest.heart import shown, shown_interval
    from services.offline.backtest.models import CONTEXTS

    metrics = report.success_metrics
    if metrics is None:
        return None
    table = Table(
        title=f"success metrics over {metrics.positions} positions (regular session, ET; definitions: "
        "docs/success-metrics.md)",
        title_justify="left",
    )
    for column in ("metric", "all", "95%", "chance", "target", "met", *CONTEXTS[1:]):
        table.add_column(column, justify="left" if column == "metric" else "right", no_wrap=column == "metric")
    for row in metrics.table:
        table.add_row(
            row.metric,
            shown(row.unit, row.value),
            shown_interval(row.unit, row.ci95),
            shown(row.unit, row.chance),
            row.target,
            "-" if row.met is None else "yes" if row.met else "no",
            *(shown(row.unit, row.by_context[context]) for context in CONTEXTS[1:]),
        )
    return table


def sweep_table(result: SweepResult) -> Table:
    """``orderflow backtest --sweep``: the settings ranked on the training days, with the held-out score."""
    table = Table(
        title=f"sweep: ranked on {', '.join(result.train_days)}; held out {', '.join(result.test_days)}",
        title_justify="left",
    )
    for column in (
        "settings",
        "train: exits, saved bps (chance)",
        "held out: exits, saved bps (chance) [95% vs chance]",
    ):
        table.add_column(column)
    for row in result.ranked_by_train:
        train, test = row.train, row.test
        table.add_row(
            " ".join(f"{key}={value}" for key, value in row.settings.items()),
            f"{train.exits}, {train.saved_net_bps_mean} ({train.base_saved_net_bps_mean})",
            f"{test.exits}, {test.saved_net_bps_mean} ({test.base_saved_net_bps_mean}) "
            f"{list(test.difference_ci95_bps)}",
        )
    for step in result.walk_forward:
        held = step.held_out
        table.add_row(
            f"walk forward {step.test_day}: " + " ".join(f"{key}={value}" for key, value in step.chosen.items()),
            f"chosen on {', '.join(step.ranked_on)}",
            f"{held.exits}, {held.saved_net_bps_mean} ({held.base_saved_net_bps_mean}) "
            f"{list(held.difference_ci95_bps)}",
        )
    return table


def calibration_table(report: CalibrationReport) -> Table:
    """``orderflow calibrate``: each profile built (its sessions, large sizes, daily volume, spread, curve)."""
    table = Table(title="profiles", title_justify="left")
    for column in (
        "symbol",
        "sessions",
        "large order (shares)",
        "large offer (shares)",
        "daily volume",
        "spread (bps)",
        "curve",
    ):
        table.add_column(column, justify="left" if column in ("symbol", "sessions") else "right")
    for profile in report.profiles:
        table.add_row(
            profile.symbol,
            f"{profile.first_day}..{profile.last_day} ({profile.sessions})",
            f"{profile.large_order_shares:,} (q0.999)",
            f"{profile.large_offer_shares:,} (q0.999)",
            f"{profile.daily_volume:,}",
            f"{profile.spread_bps:g}",
            "yes" if profile.has_volume_curve else "no (no full session)",
        )
    return table


def positions_table(positions: Iterable[Position]) -> Table:
    """``orderflow positions list``: the open positions, prices in dollars."""
    from orderflow_client.prices import format_price

    table = Table(title="open positions", title_justify="left")
    for column in ("symbol", "quantity", "entry", "stop loss"):
        table.add_column(column)
    for position in positions:
        table.add_row(
            position.symbol,
            f"{position.quantity:,}",
            format_price(position.entry_price),
            format_price(position.stop_loss) if position.stop_loss else "-",
        )
    return table
