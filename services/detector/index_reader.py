"""Each index stream read as a plain tail, for the market context of this detector's alerts.

An index symbol (SPY, a sector ETF: :mod:`shared.market_symbols`) is handled like any symbol by the one detector
holding its lease (its rules run there, so a ``market_selloff`` is published once, and ``Engine.process`` updates
the context there). Every other detector still needs the index's moves for the context of its own symbols' alerts:
it reads the index stream (``{prefix}:md:{SPY}``) with plain XRANGEs after the last entry it read — no consumer
group, no acknowledgement, nothing pending, and no command the detector's Redis user lacks (``shared.acl``) — and
hands each event to ``Engine.observe_index`` (context only: no rules, no outputs). A tail starts from what the
index's state keeps (``context_window_seconds`` + ``context_stale_seconds`` of the stream's event time, and the price
in force before), so the context is warm from the first alert. An index this detector comes to own stops being tailed
(never fed twice); one it gives up is tailed again, its state started afresh (:meth:`MarketWatch.tail_index`).

Each event first passes the index's integrity checks (:class:`~services.detector.integrity.Integrity`, the owner's,
with its settings): one they reject moves no state, as at the owner, and a halt of the index's monitoring they find
gives this detector's alerts the context ``unknown`` from the halt to the resumption, in event time, as the owner's
(:meth:`MarketWatch.tail_halted`). The owner says so only on the status stream, which the detector's Redis user may
append to but not read; the same checks on the same events find the same halt, however far the owner lags.

A dead index is visible: an index whose last entry is older than ``context_stale_seconds`` (receive time, wall
clock) while this detector's own streams still bring events — the market is open, only the index is silent — is
logged once as ``order_flow.index_stream_silent`` (``order_flow.index_stream_resumed`` when it comes back); the
engine then labels the context ``unknown`` by the index's age::

    tail = IndexTail(config, bus, engine)
    await tail.follow(["SPY"])          # start (warm) or stop tails: the index symbols not owned here
    read = await tail.poll()            # events read (those passing the checks handed to the engine), e.g. 12
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from orderflow_client import logs
from orderflow_client.bus.connection import Bus
from orderflow_client.bus.streams import BusEntry, as_text
from orderflow_client.errors import WireDecodeError
from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from orderflow_client.wire import BookUpdate, FeedStatus, Quote, decode
from services.detector.engine import Engine
from services.detector.integrity import Integrity, MarketData
from services.detector.market_entries import Misplaced, market_events
from services.detector.rule_settings import RuleSettings
from shared import service_metrics
from shared.config import OrderFlowConfig

READ_ENTRIES = 1_000  # at most this many entries a stream per read (and per page of a warm start)
log = logs.get_logger(__name__)


class IndexTail:
    """The tails of the index streams this detector does not own (see the module docstring)."""

    def __init__(self, config: OrderFlowConfig, bus: Bus, engine: Engine) -> None:
        self.config = config
        self.bus = bus
        self.keys = bus.keys
        self.engine = engine
        self.window_ns = config.context_window_seconds * NANOSECONDS_PER_SECOND
        self.stale_seconds = config.context_stale_seconds
        self.last_ids: dict[str, str] = {}  # stream → the last entry id read ("": none yet)
        self.symbols: dict[str, str] = {}  # stream → index symbol
        self.arrived: dict[str, float] = {}  # stream → monotonic time its last entry was read (or the tail began)
        self.silent: set[str] = set()  # streams reported silent, not yet resumed
        self.checks: dict[str, Integrity] = {}  # stream → the index's integrity checks, as its owner runs them
        self.observed = 0  # events handed to the engine since start (warm starts included)

    @property
    def tailed(self) -> list[str]:
        """The index symbols tailed now, sorted."""
        return sorted(self.symbols.values())

    async def follow(self, symbols: Iterable[str]) -> None:
        """Tail exactly ``symbols`` (the index symbols this detector reads but does not own): a new one starts warm
        (:meth:`_start`), one no longer listed is dropped."""
        wanted = {self.keys.market(symbol): symbol for symbol in symbols}
        for stream in [stream for stream in self.symbols if stream not in wanted]:
            self._drop(stream)
        for stream, symbol in wanted.items():
            if stream not in self.symbols:
                await self._start(stream, symbol)

    async def _start(self, stream: str, symbol: str) -> None:
        """Feed the stream's last events to the index's state started afresh (:meth:`MarketWatch.tail_index`), oldest
        first, and tail on from its last entry (an empty stream: from its start). They reach as far back as the state
        keeps (``context_window_seconds`` + ``context_stale_seconds`` of event time) and on to the last quote or book
        before that, the price in force then (a trades-only stream: at most one more window of its trades), so the
        state equals one engine's that ran every event, for an alert up to the staleness limit behind it too."""
        market = self.engine.market
        reach = market.keep_ns if market is not None else self.window_ns
        history: list[MarketData] = []
        newest_id: str | None = None
        newest_ts: int | None = None
        end = "+"
        while True:
            rows = await self.bus.read_range_reverse(stream, end=end, count=READ_ENTRIES)
            newest_id = newest_id or (as_text(rows[0].entry_id) if rows else None)
            far_enough = False
            for row in rows:
                for event in reversed(_events(row, symbol)):
                    newest_ts = event.ts_event if newest_ts is None else newest_ts
                    age = newest_ts - event.ts_event
                    if age > reach + self.window_ns:
                        far_enough = True
                        break
                    history.append(event)
                    if age > reach and isinstance(event, Quote | BookUpdate):  # the price in force at the reach
                        far_enough = True
                        break
                if far_enough:
                    break
            if far_enough or len(rows) < READ_ENTRIES:
                break
            end = f"({as_text(rows[-1].entry_id)}"
        if market is not None:  # nothing awaited from here on: no alert sees the state half rebuilt
            market.tail_index(symbol)
        self.checks[stream] = Integrity(symbol, RuleSettings.from_config(self.config, symbol).integrity)
        self.observed += sum(self._observe(stream, event) for event in reversed(history))
        self.symbols[stream] = symbol
        service_metrics.INDEX_SILENT.labels(symbol=symbol).set(0)
        self.last_ids[stream] = newest_id or ""
        self.arrived[stream] = time.monotonic()
        log.info(
            "order_flow.index_tail_started", symbol=symbol, events=len(history), after=self.last_ids[stream] or "-"
        )

    def _drop(self, stream: str) -> None:
        symbol = self.symbols.pop(stream)
        self.last_ids.pop(stream, None)
        self.checks.pop(stream, None)
        if self.engine.market is not None:
            self.engine.market.untail_index(symbol)
        self.arrived.pop(stream, None)
        if stream in self.silent:
            self.silent.discard(stream)
            service_metrics.INDEX_SILENT.labels(symbol=symbol).set(0)
        log.info("order_flow.index_tail_stopped", symbol=symbol, detail="owned by this detector, or no longer wanted")

    async def poll(self) -> int:
        """One read of every tail (an XRANGE after its last entry: an index or two, one command each); its events
        that pass the checks handed to ``Engine.observe_index``, oldest first. Returns how many events it read."""
        entries: list[BusEntry] = []
        for stream, last in list(self.last_ids.items()):
            entries += await self.bus.read_range(stream, start=f"({last}" if last else "-", count=READ_ENTRIES)
        read = observed = 0
        now = time.monotonic()
        for entry in entries:
            symbol = self.symbols.get(entry.stream)
            if symbol is None:
                continue
            self.last_ids[entry.stream] = as_text(entry.entry_id)
            self.arrived[entry.stream] = now
            for event in _events(entry, symbol):
                observed += self._observe(entry.stream, event)
                read += 1
            if entry.stream in self.silent:
                self.silent.discard(entry.stream)
                service_metrics.INDEX_SILENT.labels(symbol=symbol).set(0)
                log.info("order_flow.index_stream_resumed", symbol=symbol)
        self.observed += observed
        return read

    def _observe(self, stream: str, event: MarketData) -> bool:
        """Hand ``event`` to the engine when it passes the index's integrity checks (the owner's: an event they
        reject moves neither its state nor this one); a halt or resumption they find is the market watch's (its
        context ``unknown`` in between). True when handed on."""
        verdict = self.checks[stream].check(event, self.engine.sessions.session(event.ts_event))
        if verdict is not None:
            market = self.engine.market
            for status in verdict.statuses:
                if market is not None and status.state in ("monitoring_halted", "monitoring_resumed"):
                    market.tail_halted(event.symbol, status.ts_event, status.state == "monitoring_halted")
            if not verdict.usable:
                return False
        self.engine.observe_index(event)
        return True

    def check_silence(self, others_arrived: float | None) -> list[str]:
        """Report each tailed index silent for ``context_stale_seconds`` while this detector's own streams brought
        an event since (``others_arrived``: monotonic time of their last batch; None: none yet). Returns the index
        symbols silent now, sorted."""
        now = time.monotonic()
        for stream, symbol in self.symbols.items():
            arrived = self.arrived.get(stream, now)
            if stream in self.silent or now - arrived < self.stale_seconds:
                continue
            if others_arrived is None or others_arrived <= arrived + self.stale_seconds:
                continue  # the whole market is quiet (closed): not the index's failure
            self.silent.add(stream)
            service_metrics.INDEX_SILENT.labels(symbol=symbol).set(1)
            log.warning(
                "order_flow.index_stream_silent",
                code="index_silent",
                symbol=symbol,
                silent_seconds=round(now - arrived, 1),
                detail="no entry on the index stream while the positions' streams go on: its context is unknown",
            )
        return sorted(self.symbols[stream] for stream in self.silent)


def _events(entry: BusEntry, symbol: str) -> tuple[MarketData, ...]:
    """The market events of an index stream's entry; nothing for an entry that does not decode or does not belong
    (its owner dead-letters it) and for a feed's statuses (they reset the owner's rule windows, not its market
    state; the owner's halts are found by the tail's own checks)."""
    try:
        events = market_events(decode(entry.payload), entry, symbol)
    except WireDecodeError:
        return ()
    if isinstance(events, Misplaced):
        return ()
    return tuple(event for event in events if not isinstance(event, FeedStatus))
