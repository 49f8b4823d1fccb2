"""Polygon/Massive flat files (one day, all tickers; CSV or CSV.gz) → events.

Columns are found by header name, never by position. Trades::

    ticker,conditions,correction,exchange,id,participant_timestamp,price,
    sequence_number,sip_timestamp,size,tape,trf_id,trf_timestamp
    AAPL,"12,37",0,11,183276,1651181822461636600,156.43,7179341,1651181822461979400,10,3,3,1651181557090806500

Quotes carry ``ask_exchange,ask_price,ask_size,bid_exchange,bid_price,
bid_size,conditions,indicators,participant_timestamp,sequence_number,
sip_timestamp,tape,...``. Timestamps are nanoseconds. Files are streamed row
by row; rows of other tickers are skipped before any conversion.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from pathlib import Path

from orderflow_client.prices import price_from_text, size_from_text
from orderflow_client.timestamps import checked_timestamp
from orderflow_client.wire import Quote, Trade
from services.ingest.rejects import Reject

SOURCE = "polygon_flat"
TRADE_COLUMNS = ("ticker", "price", "size", "sip_timestamp")
QUOTE_COLUMNS = ("ticker", "bid_price", "bid_size", "ask_price", "ask_size", "sip_timestamp")


def _codes(text: str) -> tuple[int, ...]:
    return tuple(int(code) for code in text.replace(" ", "").split(",") if code) if text else ()


def _open_text(path: Path) -> io.TextIOBase:
    """The file as text, decompressed when its name ends in ``.gz``; the caller's ``with`` closes it."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="", encoding="utf-8")
    return path.open(newline="", encoding="utf-8")


def file_kind(header: list[str]) -> str | None:
    """``trades`` or ``quotes`` from a header row, None when neither."""
    names = set(header)
    if all(column in names for column in TRADE_COLUMNS) and "bid_price" not in names:
        return "trades"
    if all(column in names for column in QUOTE_COLUMNS):
        return "quotes"
    return None


def read_flat_file(
    path: Path, symbol: str | None, *, quote_size_multiplier: int = 1
) -> Iterator[Trade | Quote | Reject]:
    """Stream one flat file, keeping rows of ``symbol`` (all when None)."""
    with _open_text(path) as stream:
        reader = csv.reader(stream)
        header: list[str] = next(reader, [])
        kind = file_kind(header)
        if kind is None:
            yield Reject(SOURCE, "unknown_header", f"{path.name}:1", ",".join(header)[:120])
            return
        column = {name: index for index, name in enumerate(header)}
        convert = _trade_row if kind == "trades" else _quote_row
        ticker = column["ticker"]
        for number, row in enumerate(reader, start=2):
            if symbol is not None and (len(row) <= ticker or row[ticker] != symbol):
                continue
            try:
                yield convert(row, column, quote_size_multiplier)
            except (ValueError, IndexError, OverflowError) as error:
                yield Reject(SOURCE, "invalid_row", f"{path.name}:{number}", str(error)[:200])


def _cell(row: list[str], column: dict[str, int], name: str, default: str = "") -> str:
    index = column.get(name)
    return row[index] if index is not None and index < len(row) else default


def _trade_row(row: list[str], column: dict[str, int], _multiplier: int) -> Trade:
    ts_event = checked_timestamp(int(row[column["sip_timestamp"]]))
    return Trade(
        symbol=row[column["ticker"]],
        ts_event=ts_event,
        ts_recv=ts_event,
        ts_arrival=ts_event,
        price=price_from_text(row[column["price"]]),
        size=size_from_text(row[column["size"]]),
        exchange=int(_cell(row, column, "exchange", "0") or 0),
        trade_id=_cell(row, column, "id"),
        trf_id=int(_cell(row, column, "trf_id", "0") or 0),
        conditions=_codes(_cell(row, column, "conditions")),
        sequence=int(_cell(row, column, "sequence_number", "0") or 0),
        tape=int(_cell(row, column, "tape", "0") or 0),
        correction=int(_cell(row, column, "correction", "0") or 0),
    )


def _quote_row(row: list[str], column: dict[str, int], multiplier: int) -> Quote:
    ts_event = checked_timestamp(int(row[column["sip_timestamp"]]))
    return Quote(
        symbol=row[column["ticker"]],
        ts_event=ts_event,
        ts_recv=ts_event,
        ts_arrival=ts_event,
        bid_price=price_from_text(row[column["bid_price"]]),
        bid_size=size_from_text(row[column["bid_size"]]) * multiplier,
        ask_price=price_from_text(row[column["ask_price"]]),
        ask_size=size_from_text(row[column["ask_size"]]) * multiplier,
        bid_exchange=int(_cell(row, column, "bid_exchange", "0") or 0),
        ask_exchange=int(_cell(row, column, "ask_exchange", "0") or 0),
        conditions=_codes(_cell(row, column, "conditions")),
        sequence=int(_cell(row, column, "sequence_number", "0") or 0),
        tape=int(_cell(row, column, "tape", "0") or 0),
    )
