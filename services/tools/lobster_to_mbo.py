"""A LOBSTER day → a DBN MBO file: LOBSTER's messages as Databento's order actions, with stand-in orders for the
shares its messages never show.

LOBSTER's message file is order by order, but it is not the whole book: the orders resting before 9:30 and, in a
file of ``L`` levels, the orders that only ever changed beyond the ``L``-th level never appear in it, yet their
shares are in the book rows. Each message becomes the records Databento's MBO gives such an event::

    1 new order          → A  order id, side, price, size
    2 partial cancel     → C  the shares cancelled          (an order the file added; else nothing)
    3 delete             → C  the shares left
    4 visible execution  → T  the aggressor's side, order id 0; F the resting order; C its shares off the book
    5 hidden execution   → T  alone (the order was never on the visible book)
    6 cross              → T  side N
    7 halt               → a StatusMsg

and after each message the book the records build is held to LOBSTER's book row on the ``L`` levels it shows: a
level holding more shares than the orders explain gets a *stand-in* order for the difference (ids from
:data:`STAND_IN_IDS` up: no LOBSTER id is that large); one holding fewer loses shares by cancels, stand-ins first,
then the newest orders (an order whose cancel happened beyond the ``L`` levels, where the file says nothing). The
first message's stand-ins are the book at the open and carry ``F_SNAPSHOT``, after an ``R`` (clear) record. All
records of one message share its time (ts_event = ts_recv) and its row number (sequence); the last carries
``F_LAST``.

So the rebuilt book's first ``L`` levels equal LOBSTER's row after every message (a test holds this on the shared
days), and a trade's order ids are LOBSTER's. Beyond ``L`` levels the rebuilt book holds what the messages showed
there and nothing else: orders that sank below the ``L``-th level and were cancelled there stay on it until their
price comes back into view, so a book shown to 10 levels from a 1- or 5-level day differs from LOBSTER's below
its ``L``-th level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from databento_dbn import F_LAST, F_SNAPSHOT, UNDEF_PRICE, Action, MBOMsg, Schema, Side

from services.ingest.databento_book import OrderBook
from services.ingest.lobster import midnight_ns
from services.tools.dbn_writer import DbnWriter, output_name
from services.tools.lobster_to_dbn import (
    ADD,
    ASK,
    BID,
    CANCEL,
    CLEAR,
    FILL,
    INSTRUMENT_ID,
    NO_SIDE,
    PUBLISHER_ID,
    TRADE,
    ConversionReport,
    Levels,
    LobsterDay,
    LobsterRow,
    aggressor,
    metadata,
    order_side,
    rows_from,
    status,
)

STAND_IN_IDS = 1 << 48
_SIDES = {"B": BID, "A": ASK}

# (action, side, order id, price, size, flags)
_Record = tuple[Action, Side, int, int, int, int]


def convert_mbo(lobster: LobsterDay, folder: Path, *, zstd: bool) -> ConversionReport:
    """Write the MBO file of a LOBSTER day into ``folder``."""
    report = ConversionReport("mbo")
    first = next(lobster.rows, None)
    start = first.ts_event if first is not None else midnight_ns(lobster.day)
    path = folder / output_name(lobster.symbol, lobster.day, "mbo", zstd)
    writer = DbnWriter(path, metadata(Schema("mbo"), lobster.symbol, lobster.day, start), zstd=zstd)
    converter = MboConverter(report)
    try:
        writer.add(converter.clear_record(start))
        for row in rows_from(first, lobster.rows):
            report.rows += 1
            for record in converter.records(row):
                writer.add(record)
    finally:
        writer.close()
    report.invalid_rows = len(lobster.invalid_rows)
    report.records = writer.records
    report.files = [path]
    return report


class MboConverter:
    """LOBSTER rows → MBO records, keeping the book those records build (:class:`OrderBook`) level with each
    row's first ``L`` levels (see the module docstring); records of ``instrument_id``."""

    def __init__(self, report: ConversionReport, instrument_id: int = INSTRUMENT_ID) -> None:
        self.book = OrderBook()
        self.report = report
        self.instrument_id = instrument_id
        self.next_stand_in = STAND_IN_IDS
        self.opening = True

    def clear_record(self, start: int) -> MBOMsg:
        """The record before the first message's (``start`` its time, ns): a clear (``R``), the book empty."""
        return MBOMsg(PUBLISHER_ID, self.instrument_id, start, 0, UNDEF_PRICE, 0, CLEAR, NO_SIDE, start,
                      flags=F_SNAPSHOT)  # fmt: skip

    def records(self, row: LobsterRow) -> list[Any]:
        """The records of one message, in order."""
        if row.kind == 7:
            self.report.halts += 1
            return [status(row, self.instrument_id)]
        planned = self._message(row)
        planned += self._reconcile("B", row.bids, row.depth) + self._reconcile("A", row.asks, row.depth)
        self.opening = False
        records, instrument, ts = [], self.instrument_id, row.ts_event
        for index, (action, side, order_id, price, size, flags) in enumerate(planned):
            last = F_LAST if index == len(planned) - 1 else 0
            records.append(
                MBOMsg(PUBLISHER_ID, instrument, ts, order_id, price, size, action, side, ts, flags=flags | last,
                       sequence=row.number)
            )  # fmt: skip
        return records

    def _message(self, row: LobsterRow) -> list[_Record]:
        book, kind = self.book, row.kind
        planned: list[_Record] = []
        if kind == 1:
            if book.add(row.order_id, str(order_side(row.direction)), row.price, row.size) is None:
                planned.append((ADD, order_side(row.direction), row.order_id, row.price, row.size, 0))
            else:
                self.report.messages_on_unknown_orders += 1
        elif kind in (4, 5, 6):
            side = aggressor(row.direction) if kind != 6 else NO_SIDE
            planned.append((TRADE, side, 0, row.price, row.size, 0))
            self.report.trades += 1
            if kind == 4:
                planned.append((FILL, order_side(row.direction), row.order_id, row.price, row.size, 0))
        if kind in (2, 3, 4):
            order = book.orders.get(row.order_id)
            if order is None:
                self.report.messages_on_unknown_orders += 1
            else:
                size = order.size if kind == 3 else min(row.size, order.size)
                planned.append((CANCEL, _SIDES[order.side], row.order_id, order.price, size, 0))
                book.cancel(row.order_id, size)
        return planned

    def _reconcile(self, side: str, shown: Levels, depth: int) -> list[_Record]:
        """Cancels and stand-ins that make ``side``'s levels in LOBSTER's view equal ``shown``."""
        bound = shown[-1][0] if shown and len(shown) >= depth else None  # fewer levels shown: the side ends there
        wanted = dict(shown)
        planned: list[_Record] = []
        for price, size in self._in_view(side, bound):
            want = wanted.pop(price, 0)
            if size > want:
                planned += self._remove(side, price, size - want)
            elif size < want:
                planned.append(self._stand_in(side, price, want - size))
        planned += [self._stand_in(side, price, want) for price, want in wanted.items()]
        return planned

    def _in_view(self, side: str, bound: int | None) -> list[tuple[int, int]]:
        """The rebuilt book's levels of ``side`` at or better than ``bound`` (all of them when None)."""
        count = 16
        while True:
            levels = self.book.side(side, count)
            if bound is not None:
                inside = [(p, s) for p, s in levels if (p >= bound if side == "B" else p <= bound)]
                if len(inside) < len(levels):
                    return inside
            if len(levels) < count:
                return list(levels)
            count *= 4

    def _remove(self, side: str, price: int, shares: int) -> list[_Record]:
        queue = self.book.queue(side, price)
        ordered = [i for i in reversed(queue) if i >= STAND_IN_IDS] + [i for i in reversed(queue) if i < STAND_IN_IDS]
        planned: list[_Record] = []
        for order_id in ordered:
            if shares <= 0:
                break
            taken = min(shares, self.book.orders[order_id].size)
            self.book.cancel(order_id, taken)
            planned.append((CANCEL, _SIDES[side], order_id, price, taken, 0))
            shares -= taken
            if order_id < STAND_IN_IDS:
                self.report.shares_reconciled_away += taken
        return planned

    def _stand_in(self, side: str, price: int, shares: int) -> _Record:
        order_id = self.next_stand_in
        self.next_stand_in += 1
        self.book.add(order_id, side, price, shares)
        self.report.stand_in_shares_added += shares
        return (ADD, _SIDES[side], order_id, price, shares, F_SNAPSHOT if self.opening else 0)
