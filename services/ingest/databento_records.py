"""Databento DBN records → orderflow's events, field by field (the records as ``databento_dbn`` decodes them).

Fields, as Databento documents them, and what each becomes::

    ts_event (ns, matching engine)    → ts_event
    ts_recv (ns, Databento's capture) → ts_recv and ts_arrival (ts_event when the flag F_BAD_TS_RECV is set)
    price, bid_px_NN / ask_px_NN      → prices as they are: int64 in units of 1e-9 dollar, orderflow's nano-dollars;
      (int64, 1e-9 $)                   UNDEF_PRICE (2**63 - 1) is no price: an empty level; a trade without one
                                        is rejected (``undefined_price``)
    size, bid_sz_NN / ask_sz_NN       → size (shares); a trade of 0 shares is rejected (``invalid_size``)
    side of a trade (action T)        → the aggressor: A → "sell", B → "buy" (side_source "feed"); N → "unknown",
                                        side_source "none", for the classifier to infer (counted); any other
                                        letter is rejected (``unknown_side``)
    sequence (the venue's number)     → Trade.sequence and, in decimal, Trade.trade_id (0: no trade id)
    publisher_id                      → Trade.exchange and trf_id, a book's venue (:mod:`.databento_venues`)
    bid_ct / ask_ct, depth, channel   → not used

Databento's side of a trade is the side that initiated it: "Ask for a sell aggressor in a trade, Bid for a buy
aggressor" (its trades schema). A trades record of XNAS ``action='T' side='A' price=220300000000 size=100
sequence=1188`` is a seller who hit the bid: ``Trade(price=220_300_000_000, size=100, side="sell",
side_source="feed", exchange=12, trade_id="1188", sequence=1188)``, 100 shares at $220.30.

MBP-10 levels become a BookUpdate (up to ``depth`` levels a side, best first, empty ones dropped); MBP-1 and TBBO
levels a Quote (0 and size 0 for an empty side; one venue's best bid and offer, the NBBO only for a consolidated
dataset).

A book is one venue's: records are told apart by :func:`book_key` (``publisher_id`` and ``instrument_id``, as
Databento's own order-book example keys them). :class:`ShownBooks` decides when a symbol's book is shown: when it
changed since the last one shown; a symbol fed by several venues is shown as their consolidated book (each price's
shares summed over the venues; ``venue`` the venues' codes joined by ``+``, e.g. ``IEXG+XCIS``).
"""

from __future__ import annotations

import struct
from typing import Any

from databento_dbn import F_BAD_TS_RECV, UNDEF_PRICE, MBP10Msg

from orderflow_client.wire import BookUpdate, Quote, Side, SideSource, Trade
from services.ingest.databento_venues import venue_of
from services.ingest.rejects import Reject

SOURCE = "dbn"
AGGRESSORS: dict[str, tuple[Side, SideSource]] = {
    "A": ("sell", "feed"),
    "B": ("buy", "feed"),
    "N": ("unknown", "none"),
}
_CODES = {"u1": "B", "u2": "H", "u4": "I", "u8": "Q", "i4": "i", "i8": "q", "S1": "c"}

Levels = tuple[tuple[int, int], ...]
Book = tuple[Levels, Levels]
NO_BOOK: Book = ((), ())  # before the first book shown: an empty book is no change


def record_layout(dtypes: list[tuple[str, str]]) -> struct.Struct:
    """A record's C layout (little-endian, packed) as a struct, from databento_dbn's own field list, e.g.
    ``MBP10Msg._dtypes``."""
    return struct.Struct("<" + "".join(_CODES[kind] for _, kind in dtypes))


_LEVELS_FIELD = [name for name, _ in MBP10Msg._dtypes].index("bid_px_00")
LEVELS_START = record_layout(MBP10Msg._dtypes[:_LEVELS_FIELD]).size
"""Where an MBP-10 record's ten levels start in its bytes (48): bid_px, ask_px, bid_sz, ask_sz, bid_ct, ask_ct each."""
LEVELS = record_layout(MBP10Msg._dtypes[_LEVELS_FIELD:])
"""The ten levels as one struct: reading them from the record's bytes takes a fifth of the time of reading their
forty attributes."""


def reject(code: str, name: str, record: Any, detail: str) -> Reject:
    """A record refused, where it was: ``<name>:<ts_event>`` (``name``: the file, or the live source)."""
    return Reject(SOURCE, code, f"{name}:{record.ts_event}", detail[:200])


def times(record: Any) -> tuple[int, int]:
    """``(ts_event, ts_recv)`` of a record, ts_recv replaced by ts_event when Databento flags it as bad."""
    ts_event = record.ts_event
    return ts_event, ts_event if record.flags & F_BAD_TS_RECV else record.ts_recv


def trade_event(record: Any, symbol: str, name: str) -> Trade | Reject:
    """The Trade of a record whose action is T (trades, TBBO, MBP-1, MBP-10, MBO), or why it cannot be one."""
    price, size = record.price, record.size
    if price == UNDEF_PRICE:
        return reject("undefined_price", name, record, "trade without a price")
    if price <= 0:
        return reject("invalid_price", name, record, f"trade at {price} nano-dollars")
    if size <= 0:
        return reject("invalid_size", name, record, f"trade of {size} shares")
    sides = AGGRESSORS.get(record.side)
    if sides is None:
        return reject("unknown_side", name, record, f"side {str(record.side)!r}")
    ts_event, ts_recv = times(record)
    _venue, exchange, trf = venue_of(record.publisher_id)
    sequence = record.sequence
    return Trade(
        symbol=symbol,
        ts_event=ts_event,
        ts_recv=ts_recv,
        ts_arrival=ts_recv,
        price=price,
        size=size,
        exchange=exchange,
        trade_id=str(sequence) if sequence else "",
        trf_id=trf,
        sequence=sequence,
        side=sides[0],
        side_source=sides[1],
    )


def mbp10_levels(raw: bytes, depth: int) -> tuple[Levels, Levels]:
    """``(bids, asks)`` of an MBP-10 record's bytes: empty levels (UNDEF_PRICE or size 0) dropped, then the first
    ``depth`` of the others."""
    fields = LEVELS.unpack_from(raw, LEVELS_START)
    return _side(fields[0::6], fields[2::6], depth), _side(fields[1::6], fields[3::6], depth)


def _side(prices: tuple[int, ...], sizes: tuple[int, ...], depth: int) -> Levels:
    end = prices.index(UNDEF_PRICE) if UNDEF_PRICE in prices else len(prices)
    if prices.count(UNDEF_PRICE) == len(prices) - end and 0 not in sizes[:end]:  # the usual: empty levels last
        end = min(end, depth)
        return tuple(zip(prices[:end], sizes[:end], strict=True))
    kept = [(price, size) for price, size in zip(prices, sizes, strict=True) if price != UNDEF_PRICE and size]
    return tuple(kept[:depth])


def book_event(record: Any, symbol: str, bids: Levels, asks: Levels, venue: str | None = None) -> BookUpdate:
    """The BookUpdate of a record's time; ``venue`` the record's publisher's unless given."""
    ts_event, ts_recv = times(record)
    return BookUpdate(
        symbol=symbol,
        ts_event=ts_event,
        ts_recv=ts_recv,
        ts_arrival=ts_recv,
        bids=bids,
        asks=asks,
        venue=venue_of(record.publisher_id)[0] if venue is None else venue,
    )


def quote_event(
    record: Any, symbol: str, top: tuple[int, int, int, int], exchanges: tuple[int, int] | None = None
) -> Quote:
    """The Quote of an MBP-1 or TBBO record's level ``top`` = (bid_px, bid_sz, ask_px, ask_sz); ``exchanges`` the
    bid's and the ask's (Polygon ids), the record's publisher's unless given."""
    bid_price, bid_size, ask_price, ask_size = top
    if bid_price == UNDEF_PRICE or not bid_size:
        bid_price, bid_size = 0, 0
    if ask_price == UNDEF_PRICE or not ask_size:
        ask_price, ask_size = 0, 0
    ts_event, ts_recv = times(record)
    exchange = venue_of(record.publisher_id)[1]
    bid_exchange, ask_exchange = exchanges if exchanges is not None else (exchange, exchange)
    return Quote(
        symbol=symbol,
        ts_event=ts_event,
        ts_recv=ts_recv,
        ts_arrival=ts_recv,
        bid_price=bid_price,
        bid_size=bid_size,
        ask_price=ask_price,
        ask_size=ask_size,
        bid_exchange=bid_exchange,
        ask_exchange=ask_exchange,
        sequence=record.sequence,
    )


def book_key(record: Any) -> int:
    """One venue's instrument: ``publisher_id`` (uint16) and ``instrument_id`` (uint32) as one int, e.g.
    ``2 << 32 | 101`` for instrument 101 of XNAS.ITCH (instrument ids are not unique across a dataset's venues)."""
    return record.publisher_id << 32 | record.instrument_id


def merged_book(books: list[Book], depth: int) -> Book:
    """Several venues' books (``(bids, asks)`` each) as one: each price's shares summed, the best
    ``depth`` levels a side. Exact when each book holds its best ``depth`` levels: a venue's level among the merged
    best ``depth`` is among its own best ``depth``."""
    bid_sizes: dict[int, int] = {}
    ask_sizes: dict[int, int] = {}
    for bids, asks in books:
        for price, size in bids:
            bid_sizes[price] = bid_sizes.get(price, 0) + size
        for price, size in asks:
            ask_sizes[price] = ask_sizes.get(price, 0) + size
    return tuple(sorted(bid_sizes.items(), reverse=True)[:depth]), tuple(sorted(ask_sizes.items())[:depth])


class ShownBooks:
    """The books last shown, per symbol, and each venue's levels: :meth:`changed` says whether a record's book is
    an event. One venue per symbol (the usual: XNAS.ITCH) shows that venue's book; several show their
    consolidated book (:func:`merged_book`)."""

    __slots__ = ("depth", "raw", "shown", "venues")

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.raw: dict[int, bytes] = {}  # book key → an MBP-10 record's level bytes last read
        self.venues: dict[str, dict[int, Book]] = {}  # symbol → publisher id → that venue's levels now
        self.shown: dict[str, Book] = {}  # symbol → the book last shown

    def changed(self, record: Any, symbol: str, book: Book) -> tuple[Book, str] | None:
        """``book`` is the levels of the record's venue now: the symbol's book to show and its venue, or None when
        it is the one last shown."""
        venues = self.venues.get(symbol)
        if venues is None:
            venues = self.venues[symbol] = {}
        venues[record.publisher_id] = book
        if len(venues) > 1:
            book = merged_book(list(venues.values()), self.depth)
        if self.shown.get(symbol, NO_BOOK) == book:
            return None
        self.shown[symbol] = book
        if len(venues) == 1:
            return book, venue_of(record.publisher_id)[0]
        return book, "+".join(sorted({venue_of(publisher)[0] for publisher in venues}))

    def mbp10_changed(self, record: Any, symbol: str) -> tuple[Book, str] | None:
        """:meth:`changed` for an MBP-10 record, its levels read only when their bytes changed."""
        raw = bytes(record)
        levels = raw[LEVELS_START : LEVELS_START + LEVELS.size]
        key = book_key(record)
        if self.raw.get(key) == levels:
            return None
        self.raw[key] = levels
        return self.changed(record, symbol, mbp10_levels(raw, self.depth))

    def clear(self) -> None:
        self.raw.clear()
        self.venues.clear()
        self.shown.clear()


Top = tuple[int, int, int, int]  # an MBP-1 or TBBO level: bid_px, bid_sz, ask_px, ask_sz
NO_TOP: Top = (UNDEF_PRICE, 0, UNDEF_PRICE, 0)


def best_across(tops: dict[int, Top]) -> tuple[Top, tuple[int, int]]:
    """Several venues' quotes (publisher id → level) as one: the highest bid and the lowest offer across them, each
    price's sizes summed over the venues quoting it, and the Polygon exchange id of the venue with the most shares
    there (the first publisher id on a tie; 0 for an empty side). For example XNAS 100 x 220.10 / 220.12 x 300 and
    IEXG 200 x 220.10 / 220.11 x 50 give 300 x 220.10 / 220.11 x 50 (bid: both sizes, IEX's id 15)."""
    bids = [(bid, size, publisher) for publisher, (bid, size, _, _) in tops.items() if bid != UNDEF_PRICE and size]
    asks = [(ask, size, publisher) for publisher, (_, _, ask, size) in tops.items() if ask != UNDEF_PRICE and size]
    bid_price = max((price for price, _size, _publisher in bids), default=UNDEF_PRICE)
    ask_price = min((price for price, _size, _publisher in asks), default=UNDEF_PRICE)
    at_bid = sorted((-size, publisher) for price, size, publisher in bids if price == bid_price)
    at_ask = sorted((-size, publisher) for price, size, publisher in asks if price == ask_price)
    top = (bid_price, -sum(size for size, _ in at_bid), ask_price, -sum(size for size, _ in at_ask))
    exchanges = (venue_of(at_bid[0][1])[1] if at_bid else 0, venue_of(at_ask[0][1])[1] if at_ask else 0)
    return top, exchanges


class ShownQuotes:
    """The quote last shown per symbol, and each venue's: :meth:`changed` says whether a record's quote is an event.
    One venue per symbol shows that venue's quote; several show their best bid and offer across them
    (:func:`best_across`), so the detector's NBBO is never the last venue's alone."""

    __slots__ = ("shown", "venues")

    def __init__(self) -> None:
        self.venues: dict[str, dict[int, Top]] = {}  # symbol → publisher id → that venue's level now
        self.shown: dict[str, tuple[Top, tuple[int, int] | None]] = {}  # symbol → the quote last shown

    def changed(self, record: Any, symbol: str, top: Top) -> tuple[Top, tuple[int, int] | None] | None:
        """``top`` is the record's venue's level now: the symbol's quote to show and its exchanges (None: the
        record's own venue's), or None when it is the one last shown."""
        venues = self.venues.get(symbol)
        if venues is None:
            venues = self.venues[symbol] = {}
        venues[record.publisher_id] = top
        shown: tuple[Top, tuple[int, int] | None] = (top, None) if len(venues) == 1 else best_across(venues)
        if self.shown.get(symbol, (NO_TOP, None)) == shown:
            return None
        self.shown[symbol] = shown
        return shown
