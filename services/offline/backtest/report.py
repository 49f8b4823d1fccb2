"""The backtest's findings as files: ``report.json`` (a :class:`BacktestReport`), ``report.html`` (with its
charts' data) and ``sweep.json`` (a :class:`SweepResult`)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import msgspec
import numpy as np

from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from services.offline.backtest.collect import Collected, Signal, new_york_day
from services.offline.backtest.exits import follow_exits
from services.offline.backtest.heart import success_metrics
from services.offline.backtest.models import (
    BacktestReport,
    BacktestSettings,
    ChartMark,
    DayCounts,
    ReportSettings,
    SessionChart,
    SweepResult,
)
from services.offline.backtest.positions import Position, positions_from_open, with_stops
from services.offline.backtest.report_html import render_page
from services.offline.backtest.statistics import base_times, outcome, versus_chance


def per_day(signals: list[Signal]) -> dict[str, DayCounts]:
    """Alerts and exits per symbol and day (every session, not only the regular)."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for signal in signals:
        counts[f"{signal.symbol} {new_york_day(signal.ts)}"]["exits" if signal.kind == "exit" else "alerts"] += 1
    return {key: DayCounts(alerts=value["alerts"], exits=value["exits"]) for key, value in sorted(counts.items())}


def report(found: Collected, settings: BacktestSettings, positions: list[Position] | None = None) -> BacktestReport:
    """The backtest's findings (``positions`` None: one long from each stock's open, no index); a position
    without a stop gets one ``settings.stop_loss_pct`` % under its entry."""
    exits = [s for s in found.signals if s.kind == "exit"]
    chosen = (
        with_stops(positions, settings.stop_loss_pct)
        if positions is not None
        else positions_from_open(found.tapes, stop_loss_pct=settings.stop_loss_pct, exclude=settings.index_symbols)
    )
    return BacktestReport(
        settings=ReportSettings(
            horizons_seconds=list(settings.horizons),
            fall_bps=settings.fall_bps,
            base_step_seconds=settings.base_step,
            bootstrap=settings.bootstrap,
            positions="given" if positions is not None else "one long from each open",
            stop_loss_pct=settings.stop_loss_pct,
        ),
        events=found.events,
        sessions=sorted(f"{symbol} {day}" for symbol, day in found.tapes),
        per_day=per_day(found.signals),
        versus_chance=versus_chance(found.signals, found.tapes, settings),
        following_exits=follow_exits(chosen, exits, found.tapes, settings),
        success_metrics=success_metrics(found, chosen, settings),
    )


def chart_data(found: Collected, max_points: int = 400) -> list[SessionChart]:
    """Each session's mid (sampled to at most ``max_points``) with its signals, for the report's charts."""
    sessions = []
    for (symbol, day), tape in sorted(found.tapes.items()):
        mids = tape.mid_each_second()
        step = max(1, len(mids) // max_points)
        points = [
            (int(i), round(float(mids[i]) / NANOSECONDS_PER_SECOND, 4))
            for i in range(0, len(mids), step)
            if not np.isnan(mids[i])
        ]
        marks = [
            ChartMark(second=(s.ts - tape.open_ns) / NANOSECONDS_PER_SECOND, kind=s.kind, id=s.id)
            for s in found.signals
            if s.symbol == symbol and new_york_day(s.ts) == day and tape.open_ns <= s.ts < tape.close_ns
        ]
        sessions.append(SessionChart(symbol=symbol, day=day, points=points, marks=marks))
    return sessions


def session_opens(found: Collected) -> dict[str, int]:
    """Each session's regular open (Unix seconds), keyed ``"SYMBOL DAY"``: the charts' points are seconds after it."""
    return {f"{symbol} {day}": tape.open_ns // NANOSECONDS_PER_SECOND for (symbol, day), tape in found.tapes.items()}


def forward_distributions(found: Collected, settings: BacktestSettings, horizon: int) -> dict[str, list[float]]:
    """Forward returns (bps) at ``horizon`` of each signal kind and of the base (``"base"``), for the histograms."""
    series: dict[str, list[float]] = defaultdict(list)
    for tape in found.tapes.values():
        for ts in base_times(tape, settings.base_step):
            result = outcome(tape, ts, horizon, settings.fall_bps)
            if result is not None:
                series["base"].append(round(result.forward_bps, 2))
    for signal in found.signals:
        signal_tape = found.tapes.get((signal.symbol, new_york_day(signal.ts)))
        if signal_tape is not None:
            result = outcome(signal_tape, signal.ts, horizon, settings.fall_bps)
            if result is not None:
                series[signal.kind].append(round(result.forward_bps, 2))
    return dict(series)


def chart_horizon(settings: BacktestSettings) -> int:
    """The horizon the page's histograms show: 5 min when asked for, else the first."""
    return 300 if 300 in settings.horizons else settings.horizons[0]


def write_report(
    out: Path, found: Collected, settings: BacktestSettings, positions: list[Position] | None = None
) -> BacktestReport:
    """Write ``report.json`` and ``report.html`` into ``out`` (created); returns the report."""
    findings = report(found, settings, positions)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(msgspec.to_builtins(findings), indent=2) + "\n")
    horizon = chart_horizon(settings)
    (out / "report.html").write_text(
        render_page(
            findings, chart_data(found), forward_distributions(found, settings, horizon), horizon, session_opens(found)
        )
    )
    return findings


def write_sweep(out: Path, result: SweepResult) -> None:
    """Write ``sweep.json`` into ``out``."""
    (out / "sweep.json").write_text(json.dumps(msgspec.to_builtins(result), indent=2) + "\n")
