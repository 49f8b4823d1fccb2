"""One pass of the rules over the input: the signals (alerts and exit recommendations) and each session's NBBO.

The same normaliser and rules engine as live detection, so the signals' ids are those of a live run. Only the
regular session's quotes make a :class:`PriceTape`: extended hours are too thin to price a move. The groups (formats,
files) are merged by event time, so an index's events (SPY beside the stocks) give each alert its market context as
of the alert; every stock symbol seen is an open position a market_selloff exit names.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from orderflow_client.wire import BookUpdate, ExitRecommendation, FeedStatus, MarketEvent, OrderFlowAlert, Quote
from services.detector.engine import Engine
from services.detector.profiles import SymbolProfile
from services.detector.rule_settings import RuleSettings
from services.ingest.normalise import Normaliser, normalised
from services.ingest.rejects import Reject, RejectCounter
from services.ingest.sources import merged
from shared.conditions import ConditionTable
from shared.config import OrderFlowConfig
from shared.sessions import SessionClock

NEW_YORK = ZoneInfo("America/New_York")


def new_york_day(ts: int) -> str:
    """The New York calendar date of ``ts`` (ns since the epoch), ISO: ``"2013-10-07"``."""
    return datetime.fromtimestamp(ts / NANOSECONDS_PER_SECOND, tz=NEW_YORK).date().isoformat()


@dataclass(frozen=True)
class Signal:
    """An alert (``kind`` = ``large_seller/tape``, ``large_seller/book``, ``red_burst``, ``market_selloff``) or an
    exit (``exit``)."""

    kind: str
    symbol: str
    ts: int
    id: str
    severity: str = ""
    context: str = ""
    """The market context label (``stock_specific``, ``market_wide``, ``mixed``, ``unknown``; ``none``: context off)."""
    applies_to: tuple[str, ...] = ()
    """A market-scope exit: the positions it names (its ``symbol`` is the index)."""


class PriceTape:
    """One symbol's NBBO over one regular session: exact changes plus a per-second mid for path statistics.

    Prices in nano-dollars, times in ns since the epoch; ``day`` is the New York date (ISO)."""

    def __init__(self, symbol: str, day: str, open_ns: int, close_ns: int) -> None:
        self.symbol, self.day, self.open_ns, self.close_ns = symbol, day, open_ns, close_ns
        self.times: list[int] = []
        self.bids: list[int] = []
        self.asks: list[int] = []
        self._mid_seconds: np.ndarray | None = None

    def add(self, ts: int, bid: int, ask: int) -> None:
        if not (0 < bid <= ask):
            return  # one-sided or crossed: not a price to trade or mark at
        if self.times and ts < self.times[-1]:
            return  # out of order: the NBBO in force does not go back
        if self.bids and self.bids[-1] == bid and self.asks[-1] == ask:
            return
        self.times.append(ts)
        self.bids.append(bid)
        self.asks.append(ask)
        self._mid_seconds = None

    def at(self, ts: int) -> tuple[int, int] | None:
        """``(bid, ask)`` in force at ``ts`` (the last change at or before it)."""
        index = bisect.bisect_right(self.times, ts) - 1
        return None if index < 0 else (self.bids[index], self.asks[index])

    def mid_at(self, ts: int) -> float | None:
        quote = self.at(ts)
        return None if quote is None else (quote[0] + quote[1]) / 2

    @property
    def seconds(self) -> int:
        return (self.close_ns - self.open_ns) // NANOSECONDS_PER_SECOND

    def mid_each_second(self) -> np.ndarray:
        """The mid at the end of each second of the session (NaN before the first quote)."""
        if self._mid_seconds is None:
            values = np.full(self.seconds, np.nan)
            times = np.asarray(self.times, dtype=np.int64)
            mids = (np.asarray(self.bids, dtype=np.float64) + np.asarray(self.asks, dtype=np.float64)) / 2
            ends = self.open_ns + (np.arange(self.seconds, dtype=np.int64) + 1) * NANOSECONDS_PER_SECOND
            index = np.searchsorted(times, ends, side="right") - 1
            valid = index >= 0
            values[valid] = mids[index[valid]]
            self._mid_seconds = values
        return self._mid_seconds

    def path(self, ts: int, horizon: int) -> np.ndarray:
        """The mid at each of the ``horizon`` whole-second marks after ``ts`` (element i: open + (k + i + 1) s,
        k the second holding ``ts``)."""
        start = (ts - self.open_ns) // NANOSECONDS_PER_SECOND
        return self.mid_each_second()[start : start + horizon]


Tapes = dict[tuple[str, str], PriceTape]
"""Each regular session's tape by ``(symbol, New York day)``."""


@dataclass
class Collected:
    """What one pass over the input found."""

    signals: list[Signal] = field(default_factory=list)
    tapes: Tapes = field(default_factory=dict)
    events: int = 0
    rejects: RejectCounter = field(default_factory=RejectCounter)
    alerts: list[OrderFlowAlert] = field(default_factory=list)
    exits: list[ExitRecommendation] = field(default_factory=list)


def collect(
    event_groups: Iterable[Iterable[MarketEvent | Reject]],
    config: OrderFlowConfig,
    *,
    conditions: ConditionTable | None = None,
    profiles: dict[str, SymbolProfile] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Collected:
    """Run the rules over the groups of events (each time-ordered; groups hold different symbols) merged by time."""
    conditions = conditions or ConditionTable.bundled()
    engine = Engine(
        RuleSettings.from_config(config), conditions, config=config, profiles=profiles, profile_source="files"
    )
    clock = engine.sessions
    found = Collected()
    symbols: set[str] = set()
    normaliser = Normaliser(conditions, method=config.side_method)  # its state is per symbol
    for event in normalised(merged(event_groups), normaliser, found.rejects):
        found.events += 1
        if not isinstance(event, FeedStatus) and event.symbol not in symbols:
            symbols.add(event.symbol)
            engine.set_open_positions(s for s in symbols if not engine.is_index(s))  # every stock is a position
        if isinstance(event, Quote):
            tape = _tape(found.tapes, clock, event.symbol, event.ts_event)
            if tape is not None:
                tape.add(event.ts_event, event.bid_price, event.ask_price)
        elif isinstance(event, BookUpdate):
            tape = _tape(found.tapes, clock, event.symbol, event.ts_event)
            if tape is not None and event.bids and event.asks:
                tape.add(event.ts_event, event.bids[0][0], event.asks[0][0])
        _signals(engine.process(event), found)
        if on_progress is not None and found.events % 10_000 == 0:
            on_progress(10_000)
    _signals(engine.flush(), found)
    return found


def _tape(tapes: Tapes, clock: SessionClock, symbol: str, ts: int) -> PriceTape | None:
    if clock.session(ts) != "regular":
        return None
    day = clock.day
    tape = tapes.get((symbol, day))
    if tape is None:
        market_open, market_close = clock.regular_hours(ts)
        tape = tapes[(symbol, day)] = PriceTape(symbol, day, market_open, market_close)
    return tape


def _signals(outputs: Iterable[object], found: Collected) -> None:
    for output in outputs:
        if isinstance(output, OrderFlowAlert):
            kind = output.alert_type if output.alert_type != "large_seller" else f"large_seller/{output.source}"
            label = output.context.label if output.context is not None else "none"
            found.signals.append(Signal(kind, output.symbol, output.ts_event, output.id, output.severity, label))
            found.alerts.append(output)
        elif isinstance(output, ExitRecommendation):
            label = output.context.label if output.context is not None else "none"
            named = output.symbols if output.scope == "market" else ()
            found.signals.append(
                Signal("exit", output.symbol, output.ts_event, output.id, output.severity, label, named)
            )
            found.exits.append(output)
