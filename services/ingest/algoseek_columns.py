"""AlgoSeek tick files read as columns: the same events as the row reader (:mod:`services.ingest.algoseek`), in the
same order, about twice as fast.

A day's files are parsed by pandas' C CSV parser into integer columns; the NBBO side updates are forward-filled
with numpy (each quote row's bid is the last row that set a bid, its ask the last that set an ask), the rows where
either side changed are kept, exchange letters and condition flags are decoded once per distinct value, and the
day's trades and quotes are merged by time with one stable sort (quotes first on the same millisecond, then the
files in the order given — exactly the row reader's merge). Only then is one ``Trade`` or ``Quote`` built per
event, a chunk at a time, so a day's events are never all in memory as objects.

Everything out of the ordinary goes to the row reader, which has a reject code for it: a file that is not a zip of
one ``<day>_<sym>_<Kind>_Tick.csv``, bytes that are not plain ASCII CSV (quotes, spaces, blank lines, a row with
another number of fields, a value past 32-bit integers), a row the vendor marked suspicious, a negative quote
field, a price out of range, an unknown condition flag, rows out of time order. That fallback is per day: the
events are the same either way, and only where a reject is counted in the stream can differ.
``python -m bench.algoseek_reader_bench`` times the two readers; ``tests/integration/test_algoseek_columns.py``
holds them equal on every shared day.
"""

from __future__ import annotations

import heapq
import io
import itertools
import zipfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import NamedTuple

import numpy as np

from orderflow_client.prices import MAX_PRICE, PRICE_SCALE
from orderflow_client.timestamps import NANOSECONDS_PER_MILLISECOND
from orderflow_client.wire import Quote, Trade
from services.ingest.algoseek import (
    PARTICIPANT_TO_POLYGON,
    conditions_from_flags,
    describe,
    quotes_first,
    read_algoseek_file,
    time_order,
)
from services.ingest.lobster import midnight_ns
from services.ingest.rejects import Reject

PRICE_UNIT = PRICE_SCALE // 10_000  # AlgoSeek prices are dollars × 10,000
CHUNK_EVENTS = 65_536  # events built into objects at a time
CHUNK_ROWS = 262_144  # CSV rows parsed at a time
TRADE_FIELDS = 6
QUOTE_FIELDS = 8


class Columns(NamedTuple):
    """One file's events as columns, in file order, each as narrow as its values allow (~45 bytes an event).
    ``kind`` 0 is a quote, 1 a trade; for a quote ``price``/``size``/``exchange`` are the bid's, for a trade
    ``ask*`` are 0. ``number`` is the trade's row number (its id and sequence); ``conditions`` the index of its
    condition tuple in the day's list."""

    kind: np.ndarray
    ts: np.ndarray
    price: np.ndarray
    size: np.ndarray
    exchange: np.ndarray
    ask: np.ndarray
    ask_size: np.ndarray
    ask_exchange: np.ndarray
    number: np.ndarray
    conditions: np.ndarray
    symbol: str


class Unusual(Exception):
    """Something in a file the columns do not handle; the row reader reads that day (with its reject codes)."""


def read_algoseek(paths: list[Path], symbol: str | None = None) -> Iterator[Trade | Quote | Reject]:
    """Trades and quotes of the given files merged in time order (quotes first on equal milliseconds), day by
    day; the same events as :func:`services.ingest.algoseek.read_algoseek_rows`."""
    ordered = quotes_first(paths)
    days: dict[date, list[Path]] = {}
    for path in ordered:
        day = _single_member_day(path)
        if day is None:  # not one tick file in a zip: the row reader merges everything, as it always has
            return heapq.merge(*(read_algoseek_file(path, symbol) for path in ordered), key=time_order)
        days.setdefault(day, []).append(path)
    return itertools.chain.from_iterable(_day_events(days[day], symbol) for day in sorted(days))


def _single_member_day(path: Path) -> date | None:
    """The day of a zip holding exactly one AlgoSeek tick file; None for anything else."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        members = [name for name in archive.namelist() if name.endswith(".csv")]
    if len(members) != 1:
        return None
    try:
        return describe(members[0])[1]
    except ValueError:
        return None


def _day_events(paths: list[Path], symbol: str | None) -> Iterator[Trade | Quote | Reject]:
    conditions: list[tuple[int, ...]] = []
    try:
        files = [columns for path in paths if (columns := _file_columns(path, symbol, conditions)) is not None]
    except Unusual:
        yield from heapq.merge(*(read_algoseek_file(path, symbol) for path in paths), key=time_order)
        return
    if not files:
        return
    stream = np.concatenate([np.full(len(columns.ts), index) for index, columns in enumerate(files)])
    order = np.lexsort((stream, np.concatenate([columns.ts for columns in files])))  # by time, then file order
    symbols = stream[order]  # each file holds one symbol
    names = [columns.symbol for columns in files]
    remaining = [columns._asdict() for columns in files]
    del files, stream
    fields = []
    for name in Columns._fields[:-1]:  # one column at a time, each file's copy let go as soon as it is merged
        fields.append(np.concatenate([columns.pop(name) for columns in remaining])[order])
    del remaining, order
    for start in range(0, len(symbols), CHUNK_EVENTS):
        chunk = [field[start : start + CHUNK_EVENTS].tolist() for field in fields]
        for kind, ts_event, price, size, exchange, ask, ask_size, ask_exchange, number, condition, index in zip(
            *chunk, symbols[start : start + CHUNK_EVENTS].tolist(), strict=True
        ):
            if kind:
                yield Trade(
                    symbol=names[index],
                    ts_event=ts_event,
                    ts_recv=ts_event,
                    ts_arrival=ts_event,
                    price=price,
                    size=size,
                    exchange=exchange,
                    trade_id=str(number),
                    conditions=conditions[condition],
                    sequence=number,
                )
            else:
                yield Quote(
                    symbol=names[index],
                    ts_event=ts_event,
                    ts_recv=ts_event,
                    ts_arrival=ts_event,
                    bid_price=price,
                    bid_size=size,
                    ask_price=ask,
                    ask_size=ask_size,
                    bid_exchange=exchange,
                    ask_exchange=ask_exchange,
                )


def _file_columns(path: Path, symbol: str | None, conditions: list[tuple[int, ...]]) -> Columns | None:
    """One file as columns (None when ``symbol`` excludes it); :class:`Unusual` for anything the columns do not
    handle. Condition tuples are appended to ``conditions`` (the day's list)."""
    with zipfile.ZipFile(path) as archive:
        member = next(name for name in archive.namelist() if name.endswith(".csv"))
        file_symbol, day, kind = describe(member)
        if symbol is not None and file_symbol != symbol:
            return None
        data = archive.read(member)
    field_count = TRADE_FIELDS if kind == "Trade" else QUOTE_FIELDS
    tables = _tables(data, field_count)
    midnight = midnight_ns(day)
    if kind == "Trade":
        columns = _trade_columns(tables, file_symbol, midnight, conditions)
    else:
        columns = _quote_columns(tables, file_symbol, midnight)
    _in_time_order(columns.ts)
    return columns


class _Table(NamedTuple):
    """A chunk of a CSV's rows as columns: the integer ones as int32 arrays, the text ones as codes that mean the
    same text in every chunk of the file (``values[column][code]`` is the text)."""

    integers: dict[int, np.ndarray]
    codes: dict[int, np.ndarray]
    values: dict[int, list[str]]
    rows: int


def _tables(data: bytes, field_count: int) -> Iterator[_Table]:
    """Parse a plain CSV whose every row has ``field_count`` fields, ``CHUNK_ROWS`` rows at a time; columns 0–4
    (trades: 0–2) are integers, the rest text. :class:`Unusual` for anything but plain ASCII rows of exactly that
    many fields, with 32-bit integers."""
    import pandas as pd  # only for AlgoSeek files: its C parser is most of this reader's speed

    if not data.isascii() or any(mark in data for mark in (b'"', b" ", b"\t", b"\n\n", b"\r\n\r\n")):
        raise Unusual("not plain CSV")
    if data.startswith((b"\n", b"\r")):
        raise Unusual("a blank first line")
    rows = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    if data.count(b",") != rows * (field_count - 1):
        raise Unusual("a row with another number of fields")
    integer_columns = range(3) if field_count == TRADE_FIELDS else range(5)
    text_columns = range(len(integer_columns), field_count)
    text_codes: dict[int, dict[str, int]] = {column: {} for column in text_columns}
    parsed = 0
    chunks = pd.read_csv(
        io.BytesIO(data),
        header=None,
        names=list(range(field_count)),
        na_filter=False,
        chunksize=CHUNK_ROWS,
        # 32-bit integers halve the memory (a value past them is a ValueError: the row reader takes the day); text
        # as categories, so no Python string per row
        dtype={column: (np.int32 if column in integer_columns else "category") for column in range(field_count)},
    )
    while True:
        try:
            frame = next(chunks)
        except StopIteration:
            break
        except (ValueError, OverflowError) as error:  # a field that is not a 32-bit integer
            raise Unusual(str(error)) from None
        codes = {}
        for column in text_columns:
            known = text_codes[column]
            file_code = np.array(
                [known.setdefault(str(text), len(known)) for text in frame[column].cat.categories], dtype=np.int64
            )
            chunk_code = frame[column].cat.codes.to_numpy()
            codes[column] = file_code[chunk_code] if len(file_code) else np.zeros(len(frame), dtype=np.int64)
        parsed += len(frame)
        yield _Table(
            {column: frame[column].to_numpy() for column in integer_columns},
            codes,
            {column: list(text_codes[column]) for column in text_columns},
            len(frame),
        )
    if parsed != rows:
        raise Unusual("rows lost in parsing")


def _not_suspicious(table: _Table, column: int) -> None:
    if any(value != "0" for value in table.values[column]):
        raise Unusual("a row the vendor marked suspicious")


def _checked_prices(scaled: np.ndarray) -> np.ndarray:
    """AlgoSeek's dollars × 10,000 as nano-dollars (int64); :class:`Unusual` past the price range."""
    prices = scaled.astype(np.int64) * PRICE_UNIT
    if len(prices) and (prices.max() >= MAX_PRICE or prices.min() <= -MAX_PRICE):
        raise Unusual("a price out of range")
    return prices


def _exchange_ids(table: _Table, column: int) -> np.ndarray:
    by_code = np.array([PARTICIPANT_TO_POLYGON.get(letter, 0) for letter in table.values[column]], dtype=np.int16)
    return by_code[table.codes[column]] if len(by_code) else np.zeros(table.rows, dtype=np.int16)


def _joined(parts: list[Columns], symbol: str) -> Columns:
    """One file's chunks as one set of columns."""
    joined = {
        name: np.concatenate([getattr(part, name) for part in parts]) if parts else np.zeros(0, dtype=np.int64)
        for name in Columns._fields[:-1]
    }
    return Columns(**joined, symbol=symbol)


def _trade_columns(tables: Iterator[_Table], symbol: str, midnight: int, conditions: list[tuple[int, ...]]) -> Columns:
    first = len(conditions)  # this file's condition codes start here in the day's list
    decoded: list[tuple[int, ...]] = []
    parts = []
    number = 1
    for table in tables:
        _not_suspicious(table, 5)
        try:
            decoded += [conditions_from_flags(text) for text in table.values[4][len(decoded) :]]
        except ValueError as error:  # an unknown flag: the row reader's invalid_row
            raise Unusual(str(error)) from None
        parts.append(
            Columns(
                kind=np.ones(table.rows, dtype=np.int8),
                ts=midnight + table.integers[0].astype(np.int64) * NANOSECONDS_PER_MILLISECOND,
                price=_checked_prices(table.integers[1]),
                size=table.integers[2],
                exchange=_exchange_ids(table, 3),
                ask=np.zeros(table.rows, dtype=np.int64),
                ask_size=np.zeros(table.rows, dtype=np.int32),
                ask_exchange=np.zeros(table.rows, dtype=np.int16),
                number=np.arange(number, number + table.rows, dtype=np.int32),
                conditions=(table.codes[4] + first).astype(np.int32),
                symbol=symbol,
            )
        )
        number += table.rows
    conditions.extend(decoded)
    return _joined(parts, symbol)


class _Side(NamedTuple):
    """One side of the NBBO as the row reader holds it: price (dollars × 10,000), size, exchange id, and the
    quoting exchange's letter (its code in the file). ``NEVER_SET`` before any row set it."""

    price: int
    size: int
    exchange: int
    letter: int


NEVER_SET = _Side(0, 0, 0, -1)


def _quote_columns(tables: Iterator[_Table], symbol: str, midnight: int) -> Columns:
    """The rows where either side of the NBBO changed, with both sides' values, chunk by chunk (each side's last
    values carried into the next chunk)."""
    held = [NEVER_SET, NEVER_SET]  # bid, ask at the end of the chunks so far
    parts = []
    for table in tables:
        _not_suspicious(table, 7)
        held_before = list(held)
        exchange, letter = _exchange_ids(table, 5), table.codes[5]
        changed = np.zeros(table.rows, dtype=bool)
        holders = []  # per side: each row's index of the row whose values hold (-1: those held before the chunk)
        for side, (price_column, size_column) in enumerate(((1, 2), (3, 4))):
            price, size = table.integers[price_column], table.integers[size_column]
            if len(price) and (price.min() < 0 or size.min() < 0):
                raise Unusual("a negative quote field")
            sets = np.flatnonzero((price != 0) | (size != 0))  # the rows that set this side
            if len(sets):
                # a setting row changes the side when its price, size or quoting letter differs from what held
                before = held_before[side]
                previous_price = np.concatenate(([before.price], price[sets[:-1]]))
                previous_size = np.concatenate(([before.size], size[sets[:-1]]))
                previous_letter = np.concatenate(([before.letter], letter[sets[:-1]]))
                differs = (price[sets] != previous_price) | (size[sets] != previous_size)
                differs |= letter[sets] != previous_letter
                changed[sets[differs]] = True
                last = sets[-1]
                held[side] = _Side(int(price[last]), int(size[last]), int(exchange[last]), int(letter[last]))
            holder = np.full(table.rows, -1, dtype=np.int64)
            holder[sets] = sets
            holders.append(np.maximum.accumulate(holder) if table.rows else holder)
        keep = np.flatnonzero(changed)
        values = []
        for side, (price_column, size_column) in enumerate(((1, 2), (3, 4))):
            at = holders[side][keep]
            from_chunk = at >= 0
            at = np.where(from_chunk, at, 0)
            before = held_before[side]
            values.append(
                (
                    _checked_prices(np.where(from_chunk, table.integers[price_column][at], before.price)),
                    np.where(from_chunk, table.integers[size_column][at], before.size).astype(np.int32),
                    np.where(from_chunk, exchange[at], before.exchange),
                )
            )
        (bid, bid_size, bid_exchange), (ask, ask_size, ask_exchange) = values
        count = len(keep)
        parts.append(
            Columns(
                kind=np.zeros(count, dtype=np.int8),
                ts=midnight + table.integers[0][keep].astype(np.int64) * NANOSECONDS_PER_MILLISECOND,
                price=bid,
                size=bid_size,
                exchange=bid_exchange,
                ask=ask,
                ask_size=ask_size,
                ask_exchange=ask_exchange,
                number=np.zeros(count, dtype=np.int32),
                conditions=np.zeros(count, dtype=np.int32),
                symbol=symbol,
            )
        )
    return _joined(parts, symbol)


def _in_time_order(ts: np.ndarray) -> None:
    """The merge by one stable sort equals the row reader's merge only when each file is in time order."""
    if len(ts) > 1 and (np.diff(ts) < 0).any():
        raise Unusual("rows out of time order")
