"""Databento Live records (as the official ``databento`` client delivers them) → orderflow's events, for live ingest.

The feed (:mod:`services.ingest.databento_feed`) puts the records of each socket read in the inbox as one
:class:`RecordChunk`, stamped with our receive time; :class:`LiveRecordParser` turns a chunk into events, field by
field as :mod:`services.ingest.databento_records` maps them, with two differences from files:

* ``ts_recv`` and ``ts_arrival`` are **our** receive time (ns), as on the Polygon path; ``ts_event`` is the record's;
* a record's symbol comes from the session's ``SymbolMappingMsg`` records (``stype_in_symbol``, the symbol we asked
  for), and a record of a symbol that is not a position now is dropped with the reject ``unsubscribed_symbol``
  (Databento Live cannot unsubscribe mid-session: a closed position's records go on arriving until the next
  connection).

What each record becomes:

* MBP-10 (``mbp-10``): a :class:`BookUpdate` of the ten levels when they changed, before each trade (the book the
  trade met) and after the last record of an event (flag ``F_LAST``); action ``T`` also a :class:`Trade`
  (side ``A`` → sell aggressor, ``B`` → buy, side_source ``feed``; ``N`` → left to inference, counted in
  ``IngestStats.trades_without_side`` and ``orderflow_trades_without_side_total``);
* MBO (``mbo``): each venue's book of an instrument (``publisher_id`` and ``instrument_id``) rebuilt order by order
  (:class:`services.ingest.databento_book.OrderBook`; top-of-book venues' ``F_TOB`` records replace a side), the
  symbol's book (one venue's, or several venues' consolidated: :class:`ShownBooks`) shown after ``F_LAST``; the
  books cleared at each new session (a live session without a snapshot starts from an empty book: cancels of
  orders placed before it are the reject ``unknown_order``); action ``T`` a Trade;
* a trades record (``TradeMsg``) a Trade;
* ``ErrorMsg`` the reject ``vendor_error`` (e.g. ``SYMBOL_RESOLUTION_FAILED``); ``SystemMsg`` a feed status
  (``subscription_ack``…; heartbeats only keep the watchdog quiet); anything else ``unsupported_record``.

A sample: an MBP-10 trade of AMZN received at 1781011800000120000 ns, ``action='T' side='A' price=220300000000
size=100 sequence=1188 ts_event=1781011800000100000`` →
``Trade(symbol="AMZN", ts_event=1781011800000100000, ts_recv=1781011800000120000, ts_arrival=…, price=220_300_000_000,
size=100, side="sell", side_source="feed", trade_id="1188", sequence=1188, …)``, after a BookUpdate of its levels.
"""

from __future__ import annotations

from collections.abc import Callable, Set
from typing import Any, NamedTuple

import msgspec
from databento_dbn import F_LAST, ErrorMsg, MBOMsg, MBP10Msg, SymbolMappingMsg, SystemMsg, TradeMsg

from orderflow_client.wire import BookUpdate, OrderUpdate, Trade
from services.ingest.databento_book import OrderBook
from services.ingest.databento_orders import AskOrderEvents
from services.ingest.databento_records import Book, ShownBooks, book_event, book_key, trade_event
from services.ingest.rejects import Reject
from services.ingest.stats import IngestStats
from shared import service_metrics

SOURCE = "databento_live"  # the reject source (the vendor format), as polygon_ws for Polygon frames
STATUS_SOURCE = "databento"  # the source named on statuses and metrics
BOOK_DEPTH = 10
_BOOK_ACTIONS = frozenset("ACMRNF")
_replace = msgspec.structs.replace


class RecordChunk:
    """The records of one socket read, in order: ``session`` counts the feed's connections (1, 2…), ``size`` is their
    bytes (``len()``: what bounds the inbox, as a Polygon frame's length does)."""

    __slots__ = ("records", "session", "size")

    def __init__(self, session: int, records: list[Any], size: int) -> None:
        self.session, self.records, self.size = session, records, size

    def __len__(self) -> int:
        return self.size


class LiveStatus(NamedTuple):
    """A gateway system message: ``status`` its code (``subscription_ack``…), ``message`` its text."""

    status: str
    message: str


class ParsedRecords(NamedTuple):
    """What one chunk held: market events, gateway statuses, rejects."""

    events: list[Trade | BookUpdate | OrderUpdate]
    statuses: list[LiveStatus]
    rejects: list[Reject]


class LiveRecordParser:
    """Chunks → events for the open positions (``wanted()``: their symbols now); counts into ``stats``."""

    def __init__(self, stats: IngestStats, *, wanted: Callable[[], Set[str]], depth: int = BOOK_DEPTH) -> None:
        self.stats, self.wanted, self.depth = stats, wanted, depth
        self.symbols: dict[int, str] = {}  # instrument id → the symbol asked for (instrument ids last a day)
        self.session = 0
        self.shown = ShownBooks(depth)  # each symbol's last book shown, each venue's levels
        self.books: dict[int, OrderBook] = {}  # book key (publisher, instrument) → the MBO book
        self.offers: dict[int, AskOrderEvents] = {}  # book key → its ask orders' events
        self.without_side = service_metrics.TRADES_WITHOUT_SIDE.labels(source=STATUS_SOURCE)

    def parse(self, chunk: RecordChunk, received: int) -> ParsedRecords:
        """The events of ``chunk``, received at ``received`` (ns, our clock)."""
        if chunk.session != self.session:  # a new connection: books are rebuilt from what it sends
            self.session = chunk.session
            self.books.clear()
            self.offers.clear()
            self.shown.clear()
        parsed = ParsedRecords([], [], [])
        wanted = self.wanted()
        where = f"session{chunk.session}@{received}"
        for record in chunk.records:
            kind = type(record)
            if kind is MBP10Msg or kind is MBOMsg or kind is TradeMsg:
                symbol = self.symbols.get(record.instrument_id)
                if symbol is None:
                    parsed.rejects.append(Reject(SOURCE, "unknown_instrument", where, f"{record.instrument_id}"))
                elif symbol not in wanted:
                    parsed.rejects.append(Reject(SOURCE, "unsubscribed_symbol", where, symbol))
                elif kind is MBP10Msg:
                    self._depth(record, symbol, received, where, parsed)
                elif kind is MBOMsg:
                    self._orders(record, symbol, received, where, parsed)
                elif record.action == "T":
                    self._trade(record, symbol, received, where, parsed)
                else:
                    parsed.rejects.append(Reject(SOURCE, "unknown_action", where, f"{str(record.action)!r}"))
            elif kind is SymbolMappingMsg:
                self.symbols[record.instrument_id] = record.stype_in_symbol
            elif kind is SystemMsg:
                if not record.is_heartbeat():
                    parsed.statuses.append(LiveStatus(str(record.code), str(record.msg)))
            elif kind is ErrorMsg:
                parsed.rejects.append(Reject(SOURCE, "vendor_error", where, str(record.err)[:200]))
            else:
                parsed.rejects.append(Reject(SOURCE, "unsupported_record", where, kind.__name__))
        return parsed

    def _trade(self, record: Any, symbol: str, received: int, where: str, parsed: ParsedRecords) -> None:
        trade = trade_event(record, symbol, where)
        if type(trade) is Trade:
            if trade.side_source == "none":
                self.stats.trades_without_side += 1
                self.without_side.inc()
            self.stats.trades += 1
            parsed.events.append(_replace(trade, ts_recv=received, ts_arrival=received))
        else:
            parsed.rejects.append(trade._replace(source=SOURCE, where=where))  # type: ignore[union-attr]

    def _show(
        self, record: Any, symbol: str, received: int, shown: tuple[Book, str] | None, parsed: ParsedRecords
    ) -> None:
        """Publish :class:`ShownBooks`' answer (the symbol's book and its venue), if any."""
        if shown is not None:
            update = book_event(record, symbol, *shown[0], shown[1])
            parsed.events.append(_replace(update, ts_recv=received, ts_arrival=received))

    def _depth(self, record: Any, symbol: str, received: int, where: str, parsed: ParsedRecords) -> None:
        action = record.action
        if action == "T" or record.flags & F_LAST:
            self._show(record, symbol, received, self.shown.mbp10_changed(record, symbol), parsed)
        if action == "T":
            self._trade(record, symbol, received, where, parsed)
        elif action not in _BOOK_ACTIONS:
            parsed.rejects.append(Reject(SOURCE, "unknown_action", where, f"{str(action)!r}"))

    def _orders(self, record: Any, symbol: str, received: int, where: str, parsed: ParsedRecords) -> None:
        key = book_key(record)
        book = self.books.get(key)
        if book is None:
            book = self.books[key] = OrderBook()
            self.offers[key] = AskOrderEvents()
        if record.action == "T":
            self._trade(record, symbol, received, where, parsed)
        else:
            offer, code = self.offers[key].apply(record, symbol, book)
            if offer is not None:
                parsed.events.append(_replace(offer, ts_recv=received, ts_arrival=received))
            if code is not None:
                detail = f"action {str(record.action)!r} order {record.order_id}"
                parsed.rejects.append(Reject(SOURCE, code, where, detail))
        if record.flags & F_LAST:
            self._show(record, symbol, received, self.shown.changed(record, symbol, book.top(self.depth)), parsed)
