"""Databento DBN files (``.dbn``, ``.dbn.zst``) → market events: MBP-10, MBP-1, TBBO, trades and MBO records.

Decoded by ``databento_dbn``'s :class:`DBNDecoder` (zstd or not, told from the file's first bytes; DBN versions 1–3
upgraded as they are read), not through the ``databento`` package: its ``DBNStore`` uses the same decoder and costs
a 1 s import. Each record becomes events as :mod:`services.ingest.databento_records` maps its fields:

* a trade (action ``T``) of any schema → a :class:`Trade`; the aggressor's side from the record, or inferred
  later when the side is ``N`` (the reader counts those: ``trades_without_side``);
* MBP-10 levels → a :class:`BookUpdate` of up to ``depth`` levels a side; MBP-1 and TBBO levels → a :class:`Quote`;
* MBO records → each venue's book of an instrument (``publisher_id`` and ``instrument_id``) rebuilt order by order
  (:func:`services.ingest.databento_book.apply_order`: add, cancel, modify, clear, ``F_TOB`` top-of-book sides; the
  order ids kept) → the same BookUpdate; a symbol sent by several venues is shown as their consolidated book
  (:class:`services.ingest.databento_records.ShownBooks`);
* a StatusMsg halt (quoting, halt, pause, suspend, not available) or resumption (trading) → a :class:`FeedStatus`;
* symbology: the file's metadata maps each instrument id to its symbol by UTC date; SymbolMappingMsg records too.

A book is shown when it changed: before each trade (the book the trade met, which MBP and TBBO records carry) and
after the last record of each event (flag ``F_LAST``: the records of one event are applied together). Nothing raises
on bad data: a record that cannot be used is a :class:`Reject` (source ``dbn``), one of ``undefined_price``,
``invalid_price``, ``invalid_size``, ``unknown_side``, ``unknown_action``, ``unknown_instrument``,
``unsupported_record`` (a schema not read here), ``vendor_error`` (an ErrorMsg) and, from the MBO book,
``order_without_side``, ``duplicate_order``, ``unknown_order``, ``modify_changes_side``; bytes the decoder refuses
are ``undecodable`` (the records of the same 8 KiB chunk before the damage are lost with it) and a partial last
record ``truncated``. Several files are merged by ``ts_recv``, the files' order breaking ties. At the end of each
file one log line, ``order_flow.dbn_file_read``, gives the counts (:class:`DbnCounts`).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from databento_dbn import (
    F_LAST,
    Compression,
    DBNDecoder,
    DBNError,
    ErrorMsg,
    MBOMsg,
    MBP1Msg,
    MBP10Msg,
    Metadata,
    StatusMsg,
    SymbolMappingMsg,
    SystemMsg,
    TradeMsg,
)

from orderflow_client.logs import get_logger
from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from orderflow_client.wire import FeedState, FeedStatus, MarketEvent, Trade
from services.ingest.databento_book import OrderBook
from services.ingest.databento_orders import AskOrderEvents
from services.ingest.databento_records import (
    SOURCE,
    Book,
    ShownBooks,
    ShownQuotes,
    book_event,
    book_key,
    quote_event,
    reject,
    trade_event,
)
from services.ingest.databento_venues import venue_of
from services.ingest.rejects import Reject

log = get_logger(__name__)

BOOK_DEPTH = 10
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK_BYTES = 1 << 13
_BOOK_ACTIONS = frozenset("ACMRNF")  # besides T: add, cancel, modify, clear, none, fill
_HALTED, _TRADING = (3, 8, 9, 10, 15), 7  # StatusAction QUOTING, HALT, PAUSE, SUSPEND, NOT_AVAILABLE…; TRADING

Item = MarketEvent | Reject


@dataclass
class DbnCounts:
    """What a read saw: records decoded, events made by kind, rejects, and the trades whose record gave no side
    (side ``N``, left to the classifier)."""

    records: int = 0
    trades: int = 0
    trades_without_side: int = 0
    books: int = 0
    quotes: int = 0
    statuses: int = 0
    rejects: int = 0

    def add(self, other: DbnCounts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


def read_dbn(
    paths: list[Path], symbol: str | None = None, *, depth: int = BOOK_DEPTH, counts: DbnCounts | None = None
) -> Iterator[Item]:
    """Stream the events of DBN files (merged by ``ts_recv`` when several), keeping ``symbol`` only when given;
    books cut to ``depth`` levels a side. ``counts``, when given, adds up what every file saw."""
    readers = [_FileReader(path, symbol, depth, counts).events() for path in paths]
    if len(readers) == 1:
        return readers[0]
    return heapq.merge(*readers, key=_merge_time)


def _merge_time(item: Item) -> int:
    return 0 if isinstance(item, Reject) else item.ts_recv


def decoded_records(path: Path) -> Iterator[Any]:
    """The file's Metadata, then its records as databento_dbn objects, with a :class:`Reject` where the decoder
    refuses bytes (it goes on after them while it can; the records decoded in the same call, up to
    :data:`CHUNK_BYTES` before the damage, are lost with them) or the file ends inside a record. The metadata is
    decoded on its own first, so damage in the first records never loses the symbology."""
    with path.open("rb") as handle:
        start = handle.read(8)
        zstd = start[:4] == ZSTD_MAGIC
        decoder = DBNDecoder(compression=Compression("zstd" if zstd else "none"))
        pieces: Iterator[bytes]
        if zstd:  # the metadata's size is inside the compressed frame: feed small pieces until it is decoded
            pieces = itertools.chain((start,), (handle.read(256) for _ in range(64)))
        else:  # "DBN", version, then the metadata's length (uint32, little-endian)
            pieces = iter((start + handle.read(int.from_bytes(start[4:8], "little") if start[:3] == b"DBN" else 0),))
        for piece in pieces:
            decoded = yield from _decoded(decoder, piece, path.name, handle.tell())
            if decoded is None:
                return
            if decoded:
                break
        while chunk := handle.read(CHUNK_BYTES):
            if (yield from _decoded(decoder, chunk, path.name, handle.tell())) is None:
                return
        if decoder.buffer():
            yield Reject(SOURCE, "truncated", path.name, f"{len(decoder.buffer())} bytes after the last record")


def _decoded(decoder: DBNDecoder, data: bytes, name: str, offset: int) -> Generator[Any, None, int | None]:
    """Write ``data`` to ``decoder`` and yield what it can decode now; return how many items, or None when it
    cannot go on (zstd data it cannot decompress: DBNDecoder raises RuntimeError for those)."""
    try:
        decoder.write(data)
    except (DBNError, RuntimeError) as error:
        yield Reject(SOURCE, "undecodable", f"{name}@{offset}", str(error)[:200])
        return None
    while True:
        before = len(decoder.buffer())
        try:
            items = decoder.decode()
        except (DBNError, RuntimeError) as error:
            yield Reject(SOURCE, "undecodable", f"{name}@{offset}", str(error)[:200])
            if len(decoder.buffer()) >= before:  # no progress: the rest cannot be read
                return None
            continue
        yield from items
        return len(items)


class _FileReader:
    """One file's records → events; its state: the symbology, each symbol's last book shown and each venue's
    instrument's last quote (:func:`book_key`), and the MBO books (one per venue and instrument)."""

    def __init__(self, path: Path, symbol: str | None, depth: int, total: DbnCounts | None) -> None:
        self.path, self.name, self.wanted, self.depth = path, path.name, symbol, depth
        self.counts, self.total = DbnCounts(), total
        self.intervals: dict[int, list[tuple[int, int, str]]] = {}  # instrument → (from ns, to ns, symbol)
        self.resolved: dict[int, tuple[int, int, str]] = {}
        self.only_symbol = ""
        self.shown = ShownBooks(depth)
        self.quotes = ShownQuotes()  # each symbol's quote last shown, each venue's level
        self.halted: dict[str, set[int]] = {}  # symbol → the venues' instruments (book keys) a status halted
        self.books: dict[int, OrderBook] = {}  # book key → the MBO book
        self.offers: dict[int, AskOrderEvents] = {}  # book key → its ask orders' events
        self.handlers = {
            MBP10Msg: self._depth_record,
            MBP1Msg: self._top_record,
            TradeMsg: self._trades,
            MBOMsg: self._mbo,
            StatusMsg: self._status,
        }

    def events(self) -> Iterator[Item]:
        counts = self.counts
        for record in decoded_records(self.path):
            if isinstance(record, Reject):
                counts.rejects += 1
                yield record
                continue
            kind = type(record)
            if kind is Metadata:
                self._symbology(record)
                continue
            counts.records += 1
            handler = self.handlers.get(kind)
            if handler is None:
                items = self._other(record)
            else:
                symbol = self._symbol(record.instrument_id, record.ts_recv)
                if not symbol:
                    items = [reject("unknown_instrument", self.name, record, f"instrument {record.instrument_id}")]
                elif self.wanted is not None and symbol != self.wanted:
                    continue
                else:
                    items = handler(record, symbol)
            for item in items:
                if type(item) is Trade:
                    counts.trades += 1
                    counts.trades_without_side += item.side_source == "none"
                elif isinstance(item, Reject):
                    counts.rejects += 1
                yield item
        self._finish()

    def _finish(self) -> None:
        counts = self.counts
        share = round(counts.trades_without_side / counts.trades, 4) if counts.trades else 0.0
        log.info("order_flow.dbn_file_read", file=self.name, side_none_share=share, **asdict(counts))
        if self.total is not None:
            self.total.add(counts)

    # --- symbology -------------------------------------------------------------------------------------------

    def _symbology(self, metadata: Metadata) -> None:
        for raw_symbol, intervals in metadata.mappings.items():
            for interval in intervals:
                if interval["symbol"].isdigit():
                    start, end = _midnight(interval["start_date"]), _midnight(interval["end_date"])
                    self.intervals.setdefault(int(interval["symbol"]), []).append((start, end, raw_symbol))
        if not self.intervals and len(metadata.symbols) == 1 and str(metadata.stype_in) == "raw_symbol":
            self.only_symbol = metadata.symbols[0]

    def _symbol(self, instrument_id: int, ts: int) -> str:
        """The instrument's symbol at ``ts`` ("" when the file does not say)."""
        known = self.resolved.get(instrument_id)
        if known is not None and known[0] <= ts < known[1]:
            return known[2]
        for interval in self.intervals.get(instrument_id, ()):
            if interval[0] <= ts < interval[1]:
                self.resolved[instrument_id] = interval
                return interval[2]
        return self.only_symbol

    def _other(self, record: Any) -> list[Item]:
        if isinstance(record, SymbolMappingMsg):
            self.intervals[record.instrument_id] = [(0, 2**63, record.stype_in_symbol)]
            self.resolved.pop(record.instrument_id, None)
            return []
        if isinstance(record, SystemMsg):  # heartbeats, subscription acknowledgements
            return []
        if isinstance(record, ErrorMsg):
            return [reject("vendor_error", self.name, record, str(record.err))]
        return [reject("unsupported_record", self.name, record, type(record).__name__)]

    # --- records ---------------------------------------------------------------------------------------------

    def _show(self, record: Any, symbol: str, shown: tuple[Book, str] | None, items: list[Item]) -> None:
        """Append the BookUpdate of ``shown`` (:class:`ShownBooks`' answer: the book and its venue, or None)."""
        if shown is not None:
            self.counts.books += 1
            items.append(book_event(record, symbol, *shown[0], shown[1]))

    def _trades(self, record: Any, symbol: str) -> list[Item]:
        if record.action != "T":
            return [reject("unknown_action", self.name, record, f"action {str(record.action)!r} in trades")]
        return [trade_event(record, symbol, self.name)]

    def _depth_record(self, record: Any, symbol: str) -> list[Item]:
        action = record.action
        items: list[Item] = []
        if action == "T" or record.flags & F_LAST:
            self._show(record, symbol, self.shown.mbp10_changed(record, symbol), items)
        if action == "T":
            items.append(trade_event(record, symbol, self.name))
        elif action not in _BOOK_ACTIONS:
            items.append(reject("unknown_action", self.name, record, f"action {str(action)!r}"))
        return items

    def _top_record(self, record: Any, symbol: str) -> list[Item]:
        action = record.action
        items: list[Item] = []
        if action == "T" or record.flags & F_LAST:
            level = record.levels[0]
            shown = self.quotes.changed(record, symbol, (level.bid_px, level.bid_sz, level.ask_px, level.ask_sz))
            if shown is not None:
                self.counts.quotes += 1
                items.append(quote_event(record, symbol, *shown))
        if action == "T":
            items.append(trade_event(record, symbol, self.name))
        elif action not in _BOOK_ACTIONS:
            items.append(reject("unknown_action", self.name, record, f"action {str(action)!r}"))
        return items

    def _mbo(self, record: Any, symbol: str) -> list[Item]:
        key = book_key(record)
        book = self.books.get(key)
        if book is None:
            book = self.books[key] = OrderBook()
            self.offers[key] = AskOrderEvents()
        items: list[Item] = []
        if record.action == "T":
            items.append(trade_event(record, symbol, self.name))
        else:
            offer, code = self.offers[key].apply(record, symbol, book)
            if offer is not None:
                items.append(offer)
            if code is not None:
                detail = f"action {str(record.action)!r} order {record.order_id}"
                items.append(reject(code, self.name, record, detail))
        if record.flags & F_LAST:
            self._show(record, symbol, self.shown.changed(record, symbol, book.top(self.depth)), items)
        return items

    def _status(self, record: Any, symbol: str) -> list[Item]:
        """A halt, or the resumption of a halted symbol. Each venue's status is its own (``publisher_id`` and
        ``instrument_id``): the symbol is halted from the first venue's halt until every venue that halted it trades
        again, each change said once (a TRADING status of a venue that was trading says nothing: reporting it would
        reset the detector's windows for no reason; nor does a second venue's halt of a halted symbol)."""
        action, key = int(record.action), book_key(record)
        halted = self.halted.setdefault(symbol, set())
        state: FeedState | None = None
        if action in _HALTED:
            state = None if halted else "trading_halted"
            halted.add(key)
        elif action == _TRADING and key in halted:
            halted.discard(key)
            state = None if halted else "trading_resumed"
        if state is None:
            return []
        self.counts.statuses += 1
        return [
            FeedStatus(
                source=SOURCE,
                state=state,
                ts_event=record.ts_event,
                ts_recv=record.ts_recv,
                symbols=(symbol,),
                code="dbn_status",
                detail=f"action={action} reason={int(record.reason)} venue={venue_of(record.publisher_id)[0]}",
            )
        ]


def _midnight(day: date) -> int:
    """ns since the epoch of 00:00 UTC on ``day``: Databento's symbology intervals are UTC dates."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * NANOSECONDS_PER_SECOND
