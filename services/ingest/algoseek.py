"""AlgoSeek US equity ticks (as published in QuantConnect Lean) → events.

Trades, ``<day>_<sym>_Trade_Tick.csv`` inside ``<day>_trade.zip``::

    time_ms_after_midnight,price (×10,000),size,exchange (letter),condition (hex flags),suspicious
    34200123,139400,500,P,20000020,0

Quotes, ``<day>_<sym>_Quote_Tick.csv`` inside ``<day>_quote.zip``; each row
sets ONE side of the NBBO (the other side is 0), with the exchange quoting it::

    time_ms,bid_price,bid_size,ask_price,ask_size,exchange,condition,suspicious
    34200074,139000,41000,0,0,K,1,0
    34200074,0,0,139100,2200,Z,1,0

Time is milliseconds after midnight New York. The rows are NBBO side
updates, not per-exchange quotes (the data's own description reads them as
per-exchange quotes; the data disagree): on BAC 2013-10-07, taking the latest
bid row and the latest ask row gives 463,780 normal, 8,472 locked and 0
crossed markets in regular hours, while the best of each exchange's latest
quote is locked or crossed at every one of the 472,252 updates. A
:class:`Quote` is emitted when either side changes. Condition flags are Lean's ``TradeConditionFlags`` bits, mapped to
Polygon condition ids so one condition table serves every source. Rows
marked ``suspicious`` by the vendor are rejected (code ``vendor_suspicious``).
Trades carry no side: it must be inferred.
"""

from __future__ import annotations

import heapq
import io
import re
import zipfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path

from orderflow_client.prices import price_from_scaled
from orderflow_client.timestamps import NANOSECONDS_PER_MILLISECOND
from orderflow_client.wire import Quote, Trade
from services.ingest.lobster import midnight_ns
from services.ingest.rejects import Reject

SOURCE = "algoseek"
_MEMBER = re.compile(r"(?P<day>\d{8})_(?P<symbol>[a-zA-Z.]+)_(?P<kind>Trade|Quote)_Tick\.csv$")

# Lean TradeConditionFlags bit → Polygon trade condition id.
LEAN_FLAG_TO_POLYGON = {
    0: 0,  # Regular → Regular Sale
    1: 7,  # Cash → Cash Sale
    2: 20,  # NextDay → Next Day
    3: 29,  # Seller → Seller
    4: 36,  # YellowFlag → Yellow Flag Regular Trade
    5: 14,  # IntermarketSweep → Intermarket Sweep
    6: 25,  # OpeningPrints → Opening Prints
    7: 8,  # ClosingPrints → Closing Prints
    8: 28,  # ReOpeningPrints → Re-Opening Prints
    9: 10,  # DerivativelyPriced → Derivatively Priced
    10: 12,  # FormT → Form T/Extended Hours
    11: 30,  # Sold → Sold Last
    12: 27,  # Stopped → Stopped Stock (Regular Trade)
    13: 12,  # ExtendedHours → Form T/Extended Hours
    14: 32,  # OutOfSequence → Sold (Out Of Sequence)
    15: 34,  # Split → Split Trade
    16: 1,  # Acquisition → Acquisition
    17: 4,  # Bunched → Bunched Trade
    18: 35,  # StockOption → Stock Option
    19: 11,  # Distribution → Distribution
    20: 2,  # AveragePrice → Average Price Trade
    21: 9,  # Cross → Cross Trade
    22: 21,  # PriceVariation → Price Variation Trade
    23: 23,  # Rule155 → Rule 155 Trade (AMEX)
    24: 15,  # OfficialClose → Market Center Official Close
    25: 22,  # PriorReferencePrice → Prior Reference Price
    26: 16,  # OfficialOpen → Market Center Official Open
    27: 6,  # CapElection → CAP Election
    28: 3,  # AutoExecution → Automatic Execution
    29: 41,  # TradeThroughExempt → Trade Thru Exempt
    31: 37,  # OddLot → Odd Lot Trade
}
UNDOCUMENTED_FLAG = 30  # present in the raw data, described nowhere: ignored

# CTA/UTP participant letter → Polygon exchange id.
PARTICIPANT_TO_POLYGON = {
    "A": 1,
    "B": 2,
    "C": 3,
    "D": 4,
    "I": 6,
    "J": 7,
    "K": 8,
    "M": 9,
    "N": 10,
    "P": 11,
    "T": 12,
    "Q": 12,
    "V": 15,
    "W": 16,
    "X": 17,
    "Y": 18,
    "Z": 19,
}


def conditions_from_flags(text: str) -> tuple[int, ...]:
    """Lean's hex flag string → Polygon condition ids, e.g. ``"20000020"`` → ``(14, 41)``."""
    flags = int(text, 16)
    codes = []
    bit = 0
    while flags:
        if flags & 1 and bit != UNDOCUMENTED_FLAG:
            code = LEAN_FLAG_TO_POLYGON.get(bit)
            if code is None:
                raise ValueError(f"unknown condition flag bit {bit} in {text!r}")
            if code not in codes:
                codes.append(code)
        flags >>= 1
        bit += 1
    return tuple(sorted(codes))


def describe(member: str) -> tuple[str, date, str]:
    match = _MEMBER.search(member)
    if match is None:
        raise ValueError(f"{member} is not an AlgoSeek tick file name (YYYYMMDD_sym_Trade_Tick.csv)")
    day = match["day"]
    return match["symbol"].upper(), date(int(day[:4]), int(day[4:6]), int(day[6:])), match["kind"]


def _members(path: Path) -> Iterator[tuple[str, io.TextIOBase]]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith(".csv"):
                    with io.TextIOWrapper(archive.open(name), encoding="ascii") as stream:
                        yield name, stream
    else:
        with path.open(encoding="ascii") as stream:
            yield path.name, stream


def read_algoseek_file(path: Path, symbol: str | None = None) -> Iterator[Trade | Quote | Reject]:
    """Stream one trade or quote file (zip or CSV)."""
    for member, stream in _members(path):
        try:
            file_symbol, day, kind = describe(member)
        except ValueError as error:
            yield Reject(SOURCE, "unknown_file", member, str(error))
            continue
        if symbol is not None and file_symbol != symbol:
            continue
        reader = _read_trades if kind == "Trade" else _read_quotes
        yield from reader(stream, file_symbol, midnight_ns(day), member)


def read_algoseek_rows(paths: list[Path], symbol: str | None = None) -> Iterator[Trade | Quote | Reject]:
    """Trades and quotes of the given files merged in time order (quotes first on equal milliseconds), row by row.
    :func:`services.ingest.algoseek_columns.read_algoseek` gives the same events faster, and falls back to this
    reader for anything out of the ordinary."""
    streams = [read_algoseek_file(path, symbol) for path in quotes_first(paths)]
    return heapq.merge(*streams, key=time_order)


def quotes_first(paths: list[Path]) -> list[Path]:
    """The files in merge order: quote files first (their rows come first on equal milliseconds), else as given."""
    return sorted(paths, key=lambda path: 0 if "quote" in path.name.lower() else 1)


def time_order(item: Trade | Quote | Reject) -> int:
    """The merge's key: an event's time; a reject goes out at once."""
    return item.ts_event if not isinstance(item, Reject) else 0


def _read_trades(stream: io.TextIOBase, symbol: str, midnight: int, member: str) -> Iterator[Trade | Reject]:
    for number, line in enumerate(stream, start=1):
        try:
            time_text, price_text, size_text, exchange, condition_text, suspicious = line.rstrip("\r\n").split(",")
            if suspicious != "0":
                yield Reject(SOURCE, "vendor_suspicious", f"{member}:{number}", line.strip())
                continue
            ts_event = midnight + int(time_text) * NANOSECONDS_PER_MILLISECOND
            yield Trade(
                symbol=symbol,
                ts_event=ts_event,
                ts_recv=ts_event,
                ts_arrival=ts_event,
                price=price_from_scaled(int(price_text), 10_000),
                size=int(size_text),
                exchange=PARTICIPANT_TO_POLYGON.get(exchange, 0),
                trade_id=str(number),
                conditions=conditions_from_flags(condition_text),
                sequence=number,
            )
        except ValueError as error:
            yield Reject(SOURCE, "invalid_row", f"{member}:{number}", str(error)[:200])


def _read_quotes(stream: io.TextIOBase, symbol: str, midnight: int, member: str) -> Iterator[Quote | Reject]:
    bid = ask = (0, 0, "")
    for number, line in enumerate(stream, start=1):
        try:
            time_text, bid_text, bid_size_text, ask_text, ask_size_text, exchange, _condition, suspicious = line.rstrip(
                "\r\n"
            ).split(",")
            if suspicious != "0":
                yield Reject(SOURCE, "vendor_suspicious", f"{member}:{number}", line.strip())
                continue
            bid_price, bid_size, ask_price, ask_size = (
                int(bid_text),
                int(bid_size_text),
                int(ask_text),
                int(ask_size_text),
            )
            if bid_price < 0 or ask_price < 0 or bid_size < 0 or ask_size < 0:
                raise ValueError("negative quote field")
            before = (bid, ask)
            if bid_price or bid_size:
                bid = (bid_price, bid_size, exchange)
            if ask_price or ask_size:
                ask = (ask_price, ask_size, exchange)
            if (bid, ask) == before:
                continue
            ts_event = midnight + int(time_text) * NANOSECONDS_PER_MILLISECOND
            yield Quote(
                symbol=symbol,
                ts_event=ts_event,
                ts_recv=ts_event,
                ts_arrival=ts_event,
                bid_price=price_from_scaled(bid[0], 10_000),
                bid_size=bid[1],
                ask_price=price_from_scaled(ask[0], 10_000),
                ask_size=ask[1],
                bid_exchange=PARTICIPANT_TO_POLYGON.get(bid[2], 0),
                ask_exchange=PARTICIPANT_TO_POLYGON.get(ask[2], 0),
            )
        except ValueError as error:
            yield Reject(SOURCE, "invalid_row", f"{member}:{number}", str(error)[:200])
