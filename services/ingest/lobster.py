"""LOBSTER message + orderbook files (Nasdaq TotalView-ITCH rebuilt) → events.

Row *i* of ``<SYM>_<day>_<start>_<end>_message_<L>.csv`` is the event, row *i*
of ``..._orderbook_<L>.csv`` the book after it. Message columns::

    time (s after midnight, New York, up to ns), type, order_id, size, price (×10,000), direction
    34200.004241176,1,16113575,18,5853300,1

Types: 1 new order, 2 partial cancel, 3 delete, 4 visible execution, 5 hidden
execution, 6 cross, 7 halt. For executions ``direction`` is the side of the
*resting* order, so the aggressor is the other side: direction 1 (a buy
order) executed is a **sell**. Book rows hold ``ask_price, ask_size,
bid_price, bid_size`` per level; empty levels are ±9999999999 with size 0.

Emitted, in file order: a :class:`BookUpdate` whenever the book row changes,
a :class:`Trade` with ``side_source="feed"`` for every execution (type 6
crosses carry the Cross Trade condition and no side), and
:class:`FeedStatus` for halts (price −1 halt, 0 quoting, 1 resume).
Reads plain CSVs or the zip, streaming row by row.
"""

from __future__ import annotations

import io
import itertools
import re
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any, NamedTuple
from zoneinfo import ZoneInfo

from orderflow_client.prices import PRICE_SCALE, price_from_scaled
from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from orderflow_client.wire import BookUpdate, FeedStatus, Side, SideSource, Trade
from services.ingest.rejects import Reject

SOURCE = "lobster"
NASDAQ = 12  # Polygon exchange id of Nasdaq
CROSS_TRADE_CONDITION = 9  # Polygon "Cross Trade"
EMPTY_LEVEL = 9_999_999_999
NEW_YORK = ZoneInfo("America/New_York")
_NAME = re.compile(
    r"(?P<symbol>[A-Z.]+)_(?P<day>\d{4}-\d{2}-\d{2})_\d+_\d+_(?P<kind>message|orderbook)_(?P<levels>\d+)\.csv$"
)


def midnight_ns(day: date) -> int:
    """UTC ns of midnight New York time on ``day`` (DST-aware, exact)."""
    return int(datetime(day.year, day.month, day.day, tzinfo=NEW_YORK).timestamp()) * NANOSECONDS_PER_SECOND


def seconds_text_to_ns(text: str) -> int:
    """``"34200.004241176"`` → 34_200_004_241_176 ns, exactly (no float).

    Digits past the ninth decimal (LOBSTER writes a few, e.g.
    ``43002.632812672004``) are below a nanosecond and truncated.
    """
    whole, _, fraction = text.partition(".")
    if not whole.isdigit() or (fraction and not fraction.isdigit()):
        raise ValueError(f"bad LOBSTER time {text!r}")
    return int(whole) * NANOSECONDS_PER_SECOND + (int(fraction[:9].ljust(9, "0")) if fraction else 0)


def describe(path: Path) -> tuple[str, date, int]:
    """Symbol, day and levels from a LOBSTER file (or zip member) name."""
    match = _NAME.search(path.name)
    if match is None:
        raise ValueError(f"{path.name} is not a LOBSTER file name (SYM_YYYY-MM-DD_start_end_message_L.csv)")
    return match["symbol"], date.fromisoformat(match["day"]), int(match["levels"])


class LobsterStreams(NamedTuple):
    """A LOBSTER day's two files, open for reading (ASCII text, a row a line): ``message_file`` names the message
    CSV (a zip member's name, for :func:`describe`), ``book_file`` the orderbook CSV."""

    message_file: Path
    book_file: Path
    messages: IO[str]
    books: IO[str]


def open_lobster_streams(path: Path, stack: ExitStack) -> LobsterStreams:
    """Open a LOBSTER zip, or a message CSV with its orderbook CSV beside it, the files closed with ``stack``.
    ValueError when the zip lacks either CSV or no orderbook CSV is beside the message CSV; OSError when a file
    cannot be read. For ``LOBSTER_SampleFile_AMZN_2012-06-21_5.zip``: ``message_file`` is
    ``AMZN_2012-06-21_34200000_57600000_message_5.csv``, ``book_file`` its ``_orderbook_5.csv``."""
    if zipfile.is_zipfile(path):
        archive = stack.enter_context(zipfile.ZipFile(path))
        names = archive.namelist()
        message_name = next((n for n in names if "_message_" in n and n.endswith(".csv")), None)
        book_name = next((n for n in names if "_orderbook_" in n and n.endswith(".csv")), None)
        if message_name is None or book_name is None:
            raise ValueError(f"{path.name} lacks a message or orderbook CSV")
        messages: IO[str] = stack.enter_context(io.TextIOWrapper(archive.open(message_name), encoding="ascii"))
        books: IO[str] = stack.enter_context(io.TextIOWrapper(archive.open(book_name), encoding="ascii"))
        return LobsterStreams(Path(message_name), Path(book_name), messages, books)
    book_path = path.with_name(path.name.replace("_message_", "_orderbook_"))
    if book_path == path:
        raise ValueError(f"{path.name} is neither a zip nor a LOBSTER message CSV (…_message_<levels>.csv)")
    if not book_path.exists():
        raise ValueError(f"no orderbook file {book_path.name} beside {path.name}")
    messages = stack.enter_context(path.open(encoding="ascii"))
    books = stack.enter_context(book_path.open(encoding="ascii"))
    return LobsterStreams(path, book_path, messages, books)


def read_lobster(
    path: Path, *, symbol: str | None = None, day: date | None = None
) -> Iterator[BookUpdate | Trade | FeedStatus | Reject]:
    """Stream a LOBSTER zip, or a message CSV with its orderbook CSV beside it."""
    with ExitStack() as stack:
        try:
            named, _book_file, messages, books = open_lobster_streams(path, stack)
        except ValueError as error:
            yield Reject(SOURCE, "missing_file", path.name, str(error))
            return
        try:
            file_symbol, file_day, _levels = describe(named)
        except ValueError as error:
            if symbol is None or day is None:
                yield Reject(SOURCE, "unknown_symbol_or_day", path.name, f"{error}; pass --symbol and --date")
                return
            file_symbol, file_day = symbol, day
        yield from _parse_rows(messages, books, symbol or file_symbol, midnight_ns(day or file_day), path.name)


_TO_NANO = PRICE_SCALE // 10_000


class _LevelParser:
    """Book row text → (bids, asks). A day holds few distinct (price, size)
    pairs (36k of 1.56M on the AMZN sample), so each converted level is
    cached by its text; empty levels map to None and are dropped."""

    def __init__(self, capacity: int = 500_000) -> None:
        self.cache: dict[tuple[str, str], tuple[int, int] | None] = {}
        self.capacity = capacity

    def convert(self, pair: tuple[str, str]) -> tuple[int, int] | None:
        price, size = int(pair[0]), int(pair[1])
        # LOBSTER's sentinels bound every price; within them, x 100,000 stays exact.
        if not -EMPTY_LEVEL <= price <= EMPTY_LEVEL or size < 0:
            raise ValueError(f"book level out of range: {pair}")
        level = None if size == 0 or abs(price) == EMPTY_LEVEL else (price * _TO_NANO, size)
        if len(self.cache) >= self.capacity:
            self.cache.clear()
        self.cache[pair] = level
        return level

    def __call__(self, line: str) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
        fields = line.rstrip("\r\n").split(",")
        get, convert = self.cache.get, self.convert
        levels: list[Any] = [get(pair, _MISSING) for pair in zip(fields[0::2], fields[1::2], strict=False)]
        if _MISSING in levels:
            pairs = list(zip(fields[0::2], fields[1::2], strict=False))
            levels = [convert(pairs[i]) if level is _MISSING else level for i, level in enumerate(levels)]
        asks, bids = levels[0::2], levels[1::2]
        if None in levels:
            return tuple(level for level in bids if level), tuple(level for level in asks if level)
        return tuple(bids), tuple(asks)


_MISSING = object()


_HALT_DETAIL = {-1: "halt", 0: "quoting", 1: "resume"}


def _parse_rows(
    messages: IO[str], books: IO[str], symbol: str, midnight: int, name: str
) -> Iterator[BookUpdate | Trade | FeedStatus | Reject]:
    previous_book = ""
    second = NANOSECONDS_PER_SECOND
    levels = _LevelParser()
    for number, (message_line, book_line) in enumerate(itertools.zip_longest(messages, books), start=1):
        if message_line is None or book_line is None:  # the two files differ in length: every extra row says so
            missing = "orderbook" if book_line is None else "message"
            yield Reject(SOURCE, "unmatched_row", f"{name}:{number}", f"row {number} has no row in the {missing} file")
            continue
        try:
            time_text, kind_text, _order_id, size_text, price_text, direction_text = message_line.split(",")
            whole, _, fraction = time_text.partition(".")
            if not whole.isdigit() or (fraction and not fraction.isdigit()):
                raise ValueError(f"bad LOBSTER time {time_text!r}")
            # digits past the ninth decimal are below a nanosecond: truncated
            ts_event = midnight + int(whole) * second + (int(fraction[:9].ljust(9, "0")) if fraction else 0)
            kind = int(kind_text)
            if kind in (4, 5, 6):
                size, price, direction = int(size_text), int(price_text), int(direction_text)
                side: Side
                side_source: SideSource
                conditions: tuple[int, ...]
                if kind == 6:
                    side, side_source, conditions = "unknown", "none", (CROSS_TRADE_CONDITION,)
                else:
                    side, side_source, conditions = ("sell" if direction == 1 else "buy"), "feed", ()
                yield Trade(
                    symbol=symbol,
                    ts_event=ts_event,
                    ts_recv=ts_event,
                    ts_arrival=ts_event,
                    price=price_from_scaled(price, 10_000),
                    size=size,
                    exchange=NASDAQ,
                    trade_id=str(number),
                    conditions=conditions,
                    sequence=number,
                    side=side,
                    side_source=side_source,
                )
            elif kind == 7:
                price = int(price_text)
                yield FeedStatus(
                    source=SOURCE,
                    state="trading_resumed" if price == 1 else "trading_halted",
                    ts_event=ts_event,
                    ts_recv=ts_event,
                    symbols=(symbol,),
                    code="lobster_halt",
                    detail=_HALT_DETAIL.get(price, f"price={price}"),
                )
                continue
            elif kind not in (1, 2, 3):
                yield Reject(SOURCE, "unknown_message_type", f"{name}:{number}", message_line.strip()[:80])
                continue
            if book_line != previous_book:
                previous_book = book_line
                bids, asks = levels(book_line)
                yield BookUpdate(
                    symbol=symbol,
                    ts_event=ts_event,
                    ts_recv=ts_event,
                    ts_arrival=ts_event,
                    bids=bids,
                    asks=asks,
                    venue="XNAS",
                )
        except ValueError as error:
            yield Reject(SOURCE, "invalid_row", f"{name}:{number}", str(error)[:200])
