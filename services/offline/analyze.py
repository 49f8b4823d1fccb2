"""Offline analysis: the rules core run in-process over files, no Redis.

The same parsers, normaliser and :class:`Engine` as live ingest + detector,
so the alert ids equal those of a live run over the same data. Writes to
``DIR``:

* ``alerts.jsonl`` — one OrderFlowAlert per line, with its market context (docs/market-context.md);
* ``exits.jsonl`` — one ExitRecommendation per line, with its context and the exit cost rule's action;
* ``statuses.jsonl`` — monitoring halted/resumed and gaps;
* ``profiles.jsonl`` — (adaptive thresholds) each symbol's profile as
  rebuilt after each session, walk-forward;
* ``summary.json`` — event counts, alerts by type and severity and by context label, exits,
  validation errors by code, rejects by code, events/s;
* ``trades.jsonl`` (``--emit-trades``) — every trade with its side and
  ``side_source``.

Index files given beside a stock's (e.g. SPY's trades beside AIG's trades and quotes) are read in the same event
time order, so each alert's context is the index's as of the alert. Every stock symbol seen is an open position
that a market_selloff exit names (the set grows as the input shows new symbols).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, cast

import msgspec

from orderflow_client.wire import ExitRecommendation, FeedStatus, OrderFlowAlert, Trade, to_json
from services.detector.engine import Engine
from services.detector.integrity import ValidationIssue
from services.detector.orders import PulledOrder
from services.detector.outputs import ExpiredAlerts, Output, ProfileUpdate
from services.detector.profiles import SymbolProfile, encode_profile
from services.detector.rule_settings import RuleSettings
from services.ingest.normalise import Normaliser, normalised
from services.ingest.rejects import RejectCounter
from services.ingest.sources import read_events
from shared.conditions import ConditionTable
from shared.config import OrderFlowConfig


class AnalysisReport(msgspec.Struct, kw_only=True):
    """``summary.json``: what one ``orderflow analyze`` run read and found (the fields in the file's key order).

    Counts are events or messages; ``*_ns`` are event times (ns since the epoch) of the first and last market
    event; ``elapsed_seconds`` is wall time. The LOBSTER AMZN 2012-06-21 level-1 day gives::

        {"events": 66490, "events_by_kind": {"trade": 11419, "book": 55071}, "symbols": ["AMZN"], "alerts": 2,
         "alerts_by_type_and_severity": {"red_burst/critical": 1, "red_burst/warning": 1},
         "alerts_by_context": {"unknown": 2}, "exits": 1,
         "validation_errors_by_code": {}, "statuses": {"calibrating": 1, "calibrated": 1, "gap": 3},
         "rejects_by_code": {}, "duplicates_dropped": 0, "alerts_expired_from_window": 0, "named_orders_pulled": 0,
         "first_event_ns": 1340285400017459617, "last_event_ns": 1340308799959359650, "elapsed_seconds": 0.706,
         "events_per_second": 94240}
    """

    events: int
    events_by_kind: dict[str, int]
    symbols: list[str]
    alerts: int
    alerts_by_type_and_severity: dict[str, int]  # "large_seller/high" → count, sorted by key
    alerts_by_context: dict[str, int]  # "stock_specific" → count, sorted by key ("none": context off)
    exits: int
    validation_errors_by_code: dict[str, int]
    statuses: dict[str, int]
    rejects_by_code: dict[str, int]
    duplicates_dropped: int
    alerts_expired_from_window: int
    named_orders_pulled: int  # large orders an alert named, cancelled without trading (order-by-order sources)
    first_event_ns: int | None
    last_event_ns: int | None
    elapsed_seconds: float
    events_per_second: int | None


@dataclass
class AnalysisSummary:
    """The counts an analysis keeps as it runs; :meth:`report` gives them as an :class:`AnalysisReport`."""

    events_by_kind: Counter[str] = field(default_factory=Counter)
    alerts_by_type: Counter[str] = field(default_factory=Counter)
    alerts_by_context: Counter[str] = field(default_factory=Counter)
    exits: int = 0
    validation_errors: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    rejects: RejectCounter = field(default_factory=RejectCounter)
    duplicates: int = 0
    expired_alerts: int = 0
    pulled_orders: int = 0
    elapsed_seconds: float = 0.0
    symbols: set[str] = field(default_factory=set)
    first_event_ns: int | None = None
    last_event_ns: int | None = None

    @property
    def events(self) -> int:
        return sum(self.events_by_kind.values())

    def report(self) -> AnalysisReport:
        return AnalysisReport(
            events=self.events,
            events_by_kind=dict(self.events_by_kind),
            symbols=sorted(self.symbols),
            alerts=sum(self.alerts_by_type.values()),
            alerts_by_type_and_severity=dict(sorted(self.alerts_by_type.items())),
            alerts_by_context=dict(sorted(self.alerts_by_context.items())),
            exits=self.exits,
            validation_errors_by_code=dict(self.validation_errors),
            statuses=dict(self.statuses),
            rejects_by_code=dict(self.rejects.by_code),
            duplicates_dropped=self.duplicates,
            alerts_expired_from_window=self.expired_alerts,
            named_orders_pulled=self.pulled_orders,
            first_event_ns=self.first_event_ns,
            last_event_ns=self.last_event_ns,
            elapsed_seconds=round(self.elapsed_seconds, 3),
            events_per_second=round(self.events / self.elapsed_seconds) if self.elapsed_seconds else None,
        )


def analyze(
    format: str,
    paths: list[Path],
    out_dir: Path,
    config: OrderFlowConfig,
    *,
    symbol: str | None = None,
    day: date | None = None,
    emit_trades: bool = False,
    conditions: ConditionTable | None = None,
    on_progress: Callable[[int], None] | None = None,
    profiles: dict[str, SymbolProfile] | None = None,
) -> AnalysisSummary:
    """Run the rules over the files; write the results to ``out_dir``.

    ``profiles`` seed each symbol's history (as the detector's stored
    profiles do); every day is judged only with sessions before it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    conditions = conditions or ConditionTable.bundled()
    normaliser = Normaliser(conditions, method=config.side_method)
    engine = Engine(
        RuleSettings.from_config(config), conditions, config=config, profiles=profiles, profile_source="files"
    )
    summary = AnalysisSummary()
    multiplier = config.round_lot_size if config.quote_size_unit == "round_lots" else 1
    started = time.perf_counter()
    files = {name: (out_dir / f"{name}.jsonl").open("wb") for name in ("alerts", "exits", "statuses", "profiles")}
    trades_file = (out_dir / "trades.jsonl").open("wb") if emit_trades else None
    try:
        events = read_events(format, paths, symbol=symbol, day=day, quote_size_multiplier=multiplier)
        for count, event in enumerate(normalised(events, normaliser, summary.rejects), start=1):
            summary.events_by_kind[cast(str, type(event).__struct_config__.tag)] += 1
            if not isinstance(event, FeedStatus):
                if event.symbol not in summary.symbols:
                    summary.symbols.add(event.symbol)
                    # every stock of the input is a position (an index is not)
                    engine.set_open_positions(s for s in summary.symbols if not engine.is_index(s))
                if summary.first_event_ns is None:
                    summary.first_event_ns = event.ts_event
                summary.last_event_ns = event.ts_event
            if trades_file is not None and type(event) is Trade:
                trades_file.write(to_json(event) + b"\n")
            _record(engine.process(event), summary, files)
            if on_progress is not None and count % 10_000 == 0:
                on_progress(10_000)
        _record(engine.flush(), summary, files)
    finally:
        for handle in files.values():
            handle.close()
        if trades_file is not None:
            trades_file.close()
    summary.duplicates = normaliser.duplicates
    summary.elapsed_seconds = time.perf_counter() - started
    (out_dir / "summary.json").write_text(json.dumps(msgspec.to_builtins(summary.report()), indent=2) + "\n")
    return summary


def _record(outputs: Iterable[Output], summary: AnalysisSummary, files: Mapping[str, IO[bytes]]) -> None:
    for output in outputs:
        if isinstance(output, OrderFlowAlert):
            summary.alerts_by_type[f"{output.alert_type}/{output.severity}"] += 1
            summary.alerts_by_context[output.context.label if output.context is not None else "none"] += 1
            files["alerts"].write(to_json(output) + b"\n")
        elif isinstance(output, ExitRecommendation):
            summary.exits += 1
            files["exits"].write(to_json(output) + b"\n")
        elif isinstance(output, FeedStatus):
            summary.statuses[output.state] += 1
            files["statuses"].write(to_json(output) + b"\n")
        elif isinstance(output, ValidationIssue):
            summary.validation_errors[output.code] += 1
        elif isinstance(output, ExpiredAlerts):
            summary.expired_alerts += len(output)
        elif isinstance(output, PulledOrder):
            summary.pulled_orders += 1
        elif isinstance(output, ProfileUpdate):
            files["profiles"].write(encode_profile(output.profile) + b"\n")
