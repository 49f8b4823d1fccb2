"""A LOBSTER day as Databento records, for the local gateway until LOBSTER days are converted to DBN files.

:func:`lobster_records` is the one function :mod:`services.tools.databento_gateway_market` calls for a LOBSTER zip;
a DBN converter can replace it without touching the gateway. It reads the message and orderbook CSVs row by row
(see :mod:`services.ingest.lobster` for their columns) and builds ``databento_dbn`` records of dataset XNAS.ITCH
(publisher 2, ``XNAS.ITCH.XNAS``), prices in 1e-9 dollars (LOBSTER's ×10,000 dollars × 100,000), ``ts_recv`` equal to
``ts_event`` (LOBSTER has one clock), ``sequence`` the row number, ``F_LAST`` on the last record of each row. Per
row, by LOBSTER type (1 add, 2 partial cancel, 3 delete, 4 visible execution, 5 hidden execution, 6 cross, 7 halt):

=========  ==========================================================================================================
schema     records
=========  ==========================================================================================================
mbo        1 → Add; 2, 3 → Cancel (the size removed); 4 → Trade (aggressor side, order id 0), Fill and Cancel of the
           resting order; 5 → Trade; 6 → Trade with side N
mbp-10     1 → Add; 2, 3 → Cancel; 4 → Trade (book before) then Cancel (book after); 5 → Trade; 6 → Trade side N
           (5 and 6 leave the visible book as it is).
           Levels from the orderbook row (5 at most in the samples), the rest undefined (price ``UNDEF_PRICE``, size
           0); order counts 0 (LOBSTER gives none). ``depth`` is the level of the price on its side, else 0
mbp-1      as mbp-10 with the top level only
tbbo       an MBP-1 record for each trade (4, 5, 6), with the top level before it
trades     a Trade for each of 4, 5, 6
=========  ==========================================================================================================

The aggressor of an execution is the side opposite the resting order's ``direction``: a buy order (1) executed is a
sell, side ``A``. Halts (7) make no record. A real sample: the AMZN 5-level day's first add (row 2, 09:30:00.189607670
New York time), as MBP-10::

    MBP10Msg(publisher_id=2, instrument_id=2879268766, ts_event=1340285400189607670, action='A', side='B', depth=0,
             price=223810000000, size=21, flags=F_LAST, sequence=2,
             levels=[BidAskPair(bid_px=223810000000, bid_sz=21, ask_px=223950000000, ask_sz=100), …])
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

from services.ingest.lobster import describe, midnight_ns, seconds_text_to_ns

LOBSTER_SCHEMAS = ("mbo", "mbp-1", "mbp-10", "tbbo", "trades")
XNAS_PUBLISHER = 2  # XNAS.ITCH.XNAS
_TO_NANO_DOLLARS = 100_000  # LOBSTER prices are dollars × 10,000
_EMPTY = 9_999_999_999
_MBP_DEPTH = 10


def lobster_symbol(path: Path) -> str:
    """The symbol a LOBSTER zip or message CSV holds, from its name (``AMZN`` for ``…_AMZN_2012-06-21_5.zip``)."""
    with _open_rows(path) as (named, _messages, _books):
        return describe(named)[0]


def lobster_records(path: Path, instrument_id: int, schemas: frozenset[str]) -> Iterator[tuple[str, Any]]:
    """``(schema, record)`` for each record of ``schemas`` the LOBSTER day at ``path`` makes, in row order."""
    import databento_dbn as dbn

    unknown = schemas - set(LOBSTER_SCHEMAS)
    if unknown:
        raise ValueError(f"a LOBSTER day makes no {', '.join(sorted(unknown))} records")
    pairs: dict[tuple[str, ...], Any] = {}  # a day holds few distinct levels: each is made once, keyed by its text
    padding = [_pair(("0", "0", "0", "0"), dbn)] * _MBP_DEPTH
    book_schemas = bool(schemas - {"trades", "mbo"})

    def levels_of(line: str) -> list[Any]:
        fields = line.rstrip("\r\n").split(",")
        levels = []
        for index in range(0, min(len(fields), 4 * _MBP_DEPTH), 4):
            key = tuple(fields[index : index + 4])
            pair = pairs.get(key)
            if pair is None:
                pair = pairs[key] = _pair(key, dbn)
            levels.append(pair)
        return levels + padding[len(levels) :]

    with _open_rows(path) as (named, messages, books):
        _symbol, day, _depth = describe(named)
        midnight = midnight_ns(day)
        previous = padding
        for sequence, (message, book) in enumerate(zip(messages, books, strict=False), start=1):
            time_text, kind_text, order_text, size_text, price_text, direction_text = message.rstrip("\r\n").split(",")
            kind = int(kind_text)
            if kind == 7:
                continue
            levels = levels_of(book) if book_schemas else padding
            event = _Event(
                dbn,
                instrument_id=instrument_id,
                ts=midnight + seconds_text_to_ns(time_text),
                order_id=int(order_text),
                price=int(price_text) * _TO_NANO_DOLLARS,
                size=int(size_text),
                resting=dbn.Side.BID if direction_text.strip() == "1" else dbn.Side.ASK,
                sequence=sequence,
            )
            aggressor = dbn.Side.NONE if kind == 6 else event.opposite()
            for schema in sorted(schemas):
                yield from ((schema, record) for record in _records(schema, kind, event, aggressor, previous, levels))
            previous = levels


def _records(schema: str, kind: int, event: _Event, aggressor: Any, before: list[Any], after: list[Any]) -> list[Any]:
    """The records of one LOBSTER row in one schema (F_LAST set on the last)."""
    action = event.dbn.Action
    book_change = action.ADD if kind == 1 else action.CANCEL
    records: list[Any]
    if schema == "trades":
        records = [event.trade(aggressor)] if kind in (4, 5, 6) else []
    elif schema == "mbo":
        if kind in (1, 2, 3):
            records = [event.order(book_change, event.resting, event.order_id)]
        else:
            records = [event.order(action.TRADE, aggressor, 0)]
            if kind == 4:
                records += [event.order(action.FILL, event.resting, event.order_id)]
                records += [event.order(action.CANCEL, event.resting, event.order_id)]
    elif schema == "tbbo":
        records = [event.book(action.TRADE, aggressor, (before if kind == 4 else after)[:1], 0)] if kind > 3 else []
    else:
        depth = _MBP_DEPTH if schema == "mbp-10" else 1
        if kind in (1, 2, 3):
            records = [event.book(book_change, event.resting, after[:depth], event.depth_in(after))]
        elif kind == 4:  # the trade shows the book it hit, the cancel the book after
            records = [event.book(action.TRADE, aggressor, before[:depth], event.depth_in(before))]
            records += [event.book(action.CANCEL, event.resting, after[:depth], event.depth_in(after))]
        else:  # a hidden execution or a cross leaves the visible book as it was
            records = [event.book(action.TRADE, aggressor, after[:depth], event.depth_in(after))]
    if records:
        records[-1].flags = records[-1].flags | event.dbn.F_LAST
    return records


class _Event:
    """One LOBSTER row's fields, and the records made of them."""

    def __init__(self, dbn: Any, **fields: Any) -> None:
        self.dbn = dbn
        self.instrument_id: int = fields["instrument_id"]
        self.ts: int = fields["ts"]
        self.order_id: int = fields["order_id"]
        self.price: int = fields["price"]
        self.size: int = fields["size"]
        self.resting: Any = fields["resting"]
        self.sequence: int = fields["sequence"]

    def opposite(self) -> Any:
        return self.dbn.Side.ASK if self.resting == self.dbn.Side.BID else self.dbn.Side.BID

    def depth_in(self, levels: list[Any]) -> int:
        """The level (0 = best) of this row's price on its resting side, 0 when it is not in the book."""
        bid = self.resting == self.dbn.Side.BID
        for depth, level in enumerate(levels):
            if (level.bid_px if bid else level.ask_px) == self.price:
                return depth
        return 0

    def _common(self) -> dict[str, Any]:
        return {
            "publisher_id": XNAS_PUBLISHER,
            "instrument_id": self.instrument_id,
            "ts_event": self.ts,
            "ts_recv": self.ts,
            "price": self.price,
            "size": self.size,
            "sequence": self.sequence,
        }

    def trade(self, side: Any) -> Any:
        return self.dbn.TradeMsg(**self._common(), action=self.dbn.Action.TRADE, side=side, depth=0)

    def order(self, action: Any, side: Any, order_id: int) -> Any:
        return self.dbn.MBOMsg(**self._common(), order_id=order_id, action=action, side=side)

    def book(self, action: Any, side: Any, levels: list[Any], depth: int) -> Any:
        kind = self.dbn.MBP10Msg if len(levels) == _MBP_DEPTH else self.dbn.MBP1Msg
        return kind(**self._common(), action=action, side=side, depth=depth, levels=levels)


def _pair(text: tuple[str, ...], dbn: Any) -> Any:
    """One level of a LOBSTER book row (``ask_price, ask_size, bid_price, bid_size``) as a ``BidAskPair``; an empty
    side (price ±9999999999 or size 0) is ``UNDEF_PRICE`` with size 0."""
    ask, ask_size, bid, bid_size = (int(field) for field in text)
    bid_empty, ask_empty = abs(bid) == _EMPTY or bid_size == 0, abs(ask) == _EMPTY or ask_size == 0
    return dbn.BidAskPair(
        bid_px=dbn.UNDEF_PRICE if bid_empty else bid * _TO_NANO_DOLLARS,
        ask_px=dbn.UNDEF_PRICE if ask_empty else ask * _TO_NANO_DOLLARS,
        bid_sz=0 if bid_empty else bid_size,
        ask_sz=0 if ask_empty else ask_size,
        bid_ct=0,
        ask_ct=0,
    )


@contextmanager
def _open_rows(path: Path) -> Iterator[tuple[Path, IO[str], IO[str]]]:
    """``with _open_rows(path) as (name, messages, books)``: a LOBSTER zip's (or message CSV's) two row streams."""
    with ExitStack() as stack:
        if zipfile.is_zipfile(path):
            archive = stack.enter_context(zipfile.ZipFile(path))
            names = archive.namelist()
            message = next((name for name in names if "_message_" in name and name.endswith(".csv")), None)
            book = next((name for name in names if "_orderbook_" in name and name.endswith(".csv")), None)
            if message is None or book is None:
                raise ValueError(f"{path.name} holds no LOBSTER message and orderbook CSVs")
            messages: IO[str] = io.TextIOWrapper(stack.enter_context(archive.open(message)), encoding="ascii")
            books: IO[str] = io.TextIOWrapper(stack.enter_context(archive.open(book)), encoding="ascii")
            yield Path(message), messages, books
            return
        book_path = path.with_name(path.name.replace("_message_", "_orderbook_"))
        messages = stack.enter_context(path.open(encoding="ascii"))
        books = stack.enter_context(book_path.open(encoding="ascii"))
        yield path, messages, books
