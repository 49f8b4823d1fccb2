"""A LOBSTER day → Databento DBN files, records written with ``databento_dbn``, so the shared days serve as DBN input.

Three schemas (``orderflow convert-lobster --schema``):

* ``mbp-10`` — ``<SYM>_<day>_mbp-10.dbn`` and ``<SYM>_<day>_trades.dbn``. Each LOBSTER message with its book row
  (the book after it) becomes MBP-10 records as Databento's MBP-10 of Nasdaq shows an event: a new order ``A``, a
  partial cancel or delete ``C``, each with the ten levels after it (LOBSTER's ``L`` levels, the rest empty:
  ``UNDEF_PRICE``, size 0; order counts 0, LOBSTER has none); an execution a trade ``T`` carrying the book it met
  (the row before) then the ``C`` that takes the shares off the book; a hidden execution a ``T`` alone; a cross a
  ``T`` with side ``N``; a halt a StatusMsg. The trades file holds the same ``T`` records as the trades schema;
  read with the MBP-10 file, each print is dropped once as a duplicate.
* ``mbo`` — ``<SYM>_<day>_mbo.dbn``: the orders themselves (:mod:`services.tools.lobster_to_mbo`).
* ``mbp-1`` — ``<SYM>_<day>_mbp-1.dbn``: the same records cut to the best level, prints included (action ``T``);
  with ``--no-sides`` every print has side ``N`` (``…_mbp-1-no-sides.dbn``): the day as a consolidated feed shows
  it, the NBBO and trades whose aggressor is inferred — the view to compare the full one with.

Mapping, LOBSTER → DBN (one message, e.g. ``34200.189608,4,11885113,21,2238100,1`` after the row
``2238200,100,2238100,21``: 21 shares of buy order 11885113 at $223.81 executed)::

    time (s after midnight, New York)  → ts_event = ts_recv (ns since the epoch, UTC)
    price (×10,000)                    → price (×1e9): 2238100 → 223_810_000_000
    direction of the resting order     → side: of a trade the aggressor, the other side (1, a buy order
                                         executed: 'A', a seller); of an add or cancel, the order's
    row number (1 = the first message) → sequence, so a trade's id is the one ``--format lobster`` gives it
    the file's symbol                  → instrument_id 1, named in the metadata's symbology (XNAS.ITCH, publisher 2)

``--zstd`` compresses with zstd through ``databento_dbn``'s Transcoder (``.dbn.zst``). The records come a row at a
time from :class:`Mbp10Records`, :class:`TopOfBookRecords` and :class:`services.tools.lobster_to_mbo.MboConverter`,
for any instrument id: the local Databento gateway replays LOBSTER days with them, each symbol its own id.
A message file and an orderbook file of different lengths are a ValueError naming both and the row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import zip_longest
from pathlib import Path
from typing import Any, cast

from databento_dbn import (
    F_LAST,
    UNDEF_PRICE,
    Action,
    BidAskPair,
    MBP1Msg,
    MBP10Msg,
    Metadata,
    Schema,
    Side,
    StatusAction,
    StatusMsg,
    SType,
    TradeMsg,
)

from orderflow_client.prices import PRICE_SCALE
from services.ingest.lobster import (
    EMPTY_LEVEL,
    LobsterStreams,
    describe,
    midnight_ns,
    open_lobster_streams,
    seconds_text_to_ns,
)
from services.tools.dbn_writer import DbnWriter, metadata_mapping, output_name

DATASET = "XNAS.ITCH"
PUBLISHER_ID = 2  # XNAS.ITCH.XNAS
INSTRUMENT_ID = 1
LEVELS = 10
_TO_NANO = PRICE_SCALE // 10_000
# databento_dbn's enums made from their values: its type stubs give the members as plain str / int
ADD, CANCEL, MODIFY, TRADE, FILL, CLEAR = (Action(code) for code in "ACMTFR")
BID, ASK, NO_SIDE = Side("B"), Side("A"), Side("N")
_HALT_ACTIONS = {-1: StatusAction(8), 0: StatusAction(3), 1: StatusAction(7)}  # HALT, QUOTING, TRADING

Levels = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class LobsterRow:
    """One message with the book after it: ``number`` is the row (1 first), ``ts_event`` ns since the epoch,
    ``kind`` LOBSTER's type 1–7, ``price`` nano-dollars, ``direction`` 1 a buy order, -1 a sell order; ``bids`` and
    ``asks`` the book after the message, best first, ``(price, size)`` per non-empty level, of the ``depth``
    levels the file shows a side."""

    number: int
    ts_event: int
    kind: int
    order_id: int
    size: int
    price: int
    direction: int
    bids: Levels
    asks: Levels
    depth: int


@dataclass
class LobsterDay:
    """A LOBSTER file's symbol, day, levels and its rows (read once, streaming); ``invalid_rows`` counts the rows
    ``--format lobster`` would reject too, skipped."""

    symbol: str
    day: date
    levels: int
    rows: Iterator[LobsterRow]
    invalid_rows: list[int] = field(default_factory=list)


@dataclass
class ConversionReport:
    """What a conversion wrote: files, records by kind, and (MBO) what the orders did not explain."""

    schema: str
    files: list[Path] = field(default_factory=list)
    rows: int = 0
    records: int = 0
    trades: int = 0
    halts: int = 0
    invalid_rows: int = 0
    messages_on_unknown_orders: int = 0
    stand_in_shares_added: int = 0
    shares_reconciled_away: int = 0


def open_lobster(path: Path, stack: ExitStack, *, symbol: str | None = None, day: date | None = None) -> LobsterDay:
    """Open a LOBSTER zip (or a message CSV with its orderbook CSV beside it) for :class:`LobsterRow` rows;
    ValueError when a file is missing or the name gives no symbol and day (and none are passed)."""
    streams = open_lobster_streams(path, stack)
    try:
        file_symbol, file_day, levels = describe(streams.message_file)
    except ValueError:
        if symbol is None or day is None:
            raise
        file_symbol, file_day, levels = symbol, day, 0
    lobster = LobsterDay(symbol or file_symbol, day or file_day, levels, iter(()))
    lobster.rows = _rows(streams, midnight_ns(lobster.day), lobster.invalid_rows)
    return lobster


def _rows(streams: LobsterStreams, midnight: int, invalid: list[int]) -> Iterator[LobsterRow]:
    """The rows; ValueError (naming both files and the row) when one file has a row the other lacks."""
    last_line = ""
    last_book: tuple[Levels, Levels, int] = ((), (), 0)
    for number, (message, line) in enumerate(zip_longest(streams.messages, streams.books), start=1):
        if message is None or line is None:
            longer, shorter = (streams.book_file, streams.message_file) if message is None else streams[:2]
            raise ValueError(
                f"{streams.message_file.name} and {streams.book_file.name} differ in length: "
                f"row {number} of {longer.name} has no row in {shorter.name}"
            )
        try:
            time_text, kind, order_id, size, price, direction = message.strip().split(",")
            if line != last_line:
                last_line, last_book = line, _book_row(line)
            bids, asks, depth = last_book
            yield LobsterRow(
                number,
                midnight + seconds_text_to_ns(time_text),
                int(kind),
                int(order_id),
                int(size),
                int(price) * _TO_NANO,
                int(direction),
                bids,
                asks,
                depth,
            )
        except ValueError:
            last_line = ""
            invalid.append(number)


def _book_row(line: str) -> tuple[Levels, Levels, int]:
    """``(bids, asks, levels)`` of a book row (ask price, ask size, bid price, bid size per level), empty levels
    (size 0, price ±9999999999) dropped; ValueError when it is not one."""
    fields = [int(value) for value in line.strip().split(",")]
    prices, sizes = fields[0::2], fields[1::2]
    if len(fields) % 4 or max(map(abs, prices)) > EMPTY_LEVEL or min(sizes) < 0:
        raise ValueError(f"not a LOBSTER book row: {line.strip()[:80]}")
    levels = [(price * _TO_NANO, size) for price, size in zip(prices, sizes, strict=True)]
    shown = [size > 0 and abs(price) != EMPTY_LEVEL for price, size in zip(prices, sizes, strict=True)]
    asks = tuple(level for level, keep in zip(levels[0::2], shown[0::2], strict=True) if keep)
    bids = tuple(level for level, keep in zip(levels[1::2], shown[1::2], strict=True) if keep)
    return bids, asks, len(fields) // 4


def metadata(schema: Schema, symbol: str, day: date, start: int) -> Metadata:
    """The DBN metadata of a converted day: XNAS.ITCH, raw symbol → instrument id 1 for the day."""
    return Metadata(
        dataset=DATASET,
        start=start,
        stype_in=SType("raw_symbol"),
        stype_out=SType("instrument_id"),
        schema=schema,
        symbols=[symbol],
        mappings=[metadata_mapping(symbol, INSTRUMENT_ID, day, day + timedelta(days=1))],
    )


def book_levels(bids: Levels, asks: Levels) -> list[BidAskPair]:
    """Ten MBP levels from ``(price, size)`` pairs, the missing ones empty (UNDEF_PRICE, size 0)."""
    pairs = []
    for level in range(LEVELS):
        bid_price, bid_size = bids[level] if level < len(bids) else (UNDEF_PRICE, 0)
        ask_price, ask_size = asks[level] if level < len(asks) else (UNDEF_PRICE, 0)
        pairs.append(BidAskPair(bid_px=bid_price, ask_px=ask_price, bid_sz=bid_size, ask_sz=ask_size))
    return pairs


_UNKNOWN_BOOK = book_levels((), ())  # the book before the day's first message: LOBSTER does not give it


def aggressor(direction: int) -> Side:
    """The aggressor of an execution of a resting order of ``direction`` (1 buy, -1 sell): the other side."""
    return ASK if direction == 1 else BID


def order_side(direction: int) -> Side:
    return BID if direction == 1 else ASK


def status(row: LobsterRow, instrument_id: int = INSTRUMENT_ID) -> StatusMsg:
    """A halt message (price -1 halt, 0 quoting, 1 trading again) as a StatusMsg."""
    action = _HALT_ACTIONS.get(row.price // _TO_NANO, StatusAction(0))
    return StatusMsg(PUBLISHER_ID, instrument_id, row.ts_event, row.ts_event, action=action)


class Mbp10Records:
    """LOBSTER rows → the MBP-10, trade and status records of ``instrument_id``, a row at a time (the mapping in
    the module docstring; a row's book before it is the previous row's book after)."""

    def __init__(self, instrument_id: int = INSTRUMENT_ID) -> None:
        self.instrument_id = instrument_id
        self.previous: list[BidAskPair] | None = None
        self.previous_key: tuple[Levels, Levels] | None = None

    def records(self, row: LobsterRow) -> list[Any]:
        key = (row.bids, row.asks)
        previous = self.previous
        after = previous if key == self.previous_key and previous is not None else book_levels(row.bids, row.asks)
        before = after if row.kind in (5, 6) else previous or _UNKNOWN_BOOK  # hidden: the visible book stays
        self.previous, self.previous_key = after, key
        return list(_mbp10_records(row, before, after, self.instrument_id))


class TopOfBookRecords:
    """LOBSTER rows → MBP-1 and status records of ``instrument_id``: :class:`Mbp10Records`' records cut to the
    best level, each print an MBP-1 record (action ``T``, the top it met), side ``N`` when ``sides`` is False."""

    def __init__(self, instrument_id: int = INSTRUMENT_ID, *, sides: bool = True) -> None:
        self.instrument_id = instrument_id
        self.sides = sides
        self.previous = _UNKNOWN_BOOK

    def records(self, row: LobsterRow) -> list[Any]:
        after = book_levels(row.bids[:1], row.asks[:1])
        before = after if row.kind in (5, 6) else self.previous
        self.previous = after
        records: list[Any] = []
        for record in _mbp10_records(row, before, after, self.instrument_id):
            if isinstance(record, TradeMsg):
                continue  # MBP-1 carries the print itself (action T)
            if isinstance(record, MBP10Msg):
                action = cast(Action, record.action)  # an Action at run time (its stub: Action | str)
                side = cast(Side, record.side) if self.sides or action != TRADE else NO_SIDE
                top = record.levels[0]  # MBP-1 takes its one level as a BidAskPair at run time (its stub: a list)
                record = MBP1Msg(
                    PUBLISHER_ID, self.instrument_id, record.ts_event, record.price, record.size, action, side,
                    0, record.ts_recv, record.flags, 0, record.sequence, top,  # type: ignore[arg-type]
                )  # fmt: skip
            records.append(record)
        return records


def convert_mbp10(lobster: LobsterDay, folder: Path, *, zstd: bool) -> ConversionReport:
    """Write the MBP-10 file and the trades file of a LOBSTER day into ``folder``."""
    report = ConversionReport("mbp-10")
    first = next(lobster.rows, None)
    start = first.ts_event if first is not None else midnight_ns(lobster.day)
    book_path = folder / output_name(lobster.symbol, lobster.day, "mbp-10", zstd)
    trades_path = folder / output_name(lobster.symbol, lobster.day, "trades", zstd)
    books = DbnWriter(book_path, metadata(Schema("mbp-10"), lobster.symbol, lobster.day, start), zstd=zstd)
    trades = DbnWriter(trades_path, metadata(Schema("trades"), lobster.symbol, lobster.day, start), zstd=zstd)
    maker = Mbp10Records()
    try:
        for row in rows_from(first, lobster.rows):
            report.rows += 1
            for record in maker.records(row):
                (trades if isinstance(record, TradeMsg) else books).add(record)
                report.trades += isinstance(record, TradeMsg)
                report.halts += isinstance(record, StatusMsg)
    finally:
        books.close()
        trades.close()
    report.invalid_rows = len(lobster.invalid_rows)
    report.records = books.records + trades.records
    report.files = [book_path, trades_path]
    return report


def _mbp10_records(
    row: LobsterRow, before: list[BidAskPair], after: list[BidAskPair], instrument: int
) -> Iterator[Any]:
    ts, number, price, size = row.ts_event, row.number, row.price, row.size
    if row.kind in (4, 5, 6):
        side = aggressor(row.direction) if row.kind != 6 else NO_SIDE
        last = F_LAST if row.kind != 4 else 0
        yield MBP10Msg(PUBLISHER_ID, instrument, ts, price, size, TRADE, side, 0, ts, last, 0, number, before)
        yield TradeMsg(PUBLISHER_ID, instrument, ts, price, size, TRADE, side, 0, ts, F_LAST, 0, number)
        if row.kind == 4:
            side, depth = order_side(row.direction), _depth(row, before)
            yield MBP10Msg(PUBLISHER_ID, instrument, ts, price, size, CANCEL, side, depth, ts, F_LAST, 0, number, after)
    elif row.kind in (1, 2, 3):
        action, side = ADD if row.kind == 1 else CANCEL, order_side(row.direction)
        depth = _depth(row, after if row.kind == 1 else before)
        yield MBP10Msg(PUBLISHER_ID, instrument, ts, price, size, action, side, depth, ts, F_LAST, 0, number, after)
    elif row.kind == 7:
        yield status(row, instrument)


def convert_top_of_book(lobster: LobsterDay, folder: Path, *, zstd: bool, sides: bool = True) -> ConversionReport:
    """Write the MBP-1 file of a LOBSTER day into ``folder``: the top of the book after each message and every
    print (action ``T``, the top it met), as ``mbp-10`` writes them cut to the best level. ``sides=False`` writes
    every print with side ``N``: the day as a consolidated feed shows it (the NBBO and trades without an aggressor,
    left to inference), ``<SYM>_<day>_mbp-1-no-sides.dbn``."""
    report = ConversionReport("mbp-1")
    first = next(lobster.rows, None)
    start = first.ts_event if first is not None else midnight_ns(lobster.day)
    name = "mbp-1" if sides else "mbp-1-no-sides"
    path = folder / output_name(lobster.symbol, lobster.day, name, zstd)
    tops = DbnWriter(path, metadata(Schema("mbp-1"), lobster.symbol, lobster.day, start), zstd=zstd)
    maker = TopOfBookRecords(sides=sides)
    try:
        for row in rows_from(first, lobster.rows):
            report.rows += 1
            for record in maker.records(row):
                report.trades += isinstance(record, MBP1Msg) and record.action == TRADE
                report.halts += isinstance(record, StatusMsg)
                tops.add(record)
    finally:
        tops.close()
    report.invalid_rows = len(lobster.invalid_rows)
    report.records = tops.records
    report.files = [path]
    return report


def _depth(row: LobsterRow, levels: list[BidAskPair]) -> int:
    """The level (0 best) of the message's price on its order's side, 0 when outside the ten."""
    prices = [level.bid_px if row.direction == 1 else level.ask_px for level in levels]
    return prices.index(row.price) if row.price in prices else 0


def rows_from(first: LobsterRow | None, rest: Iterable[LobsterRow]) -> Iterator[LobsterRow]:
    """``first`` (the row read to date the metadata) then the rest."""
    if first is not None:
        yield first
        yield from rest
