"""Databento books of several venues and of top-of-book venues: hand-made records (databento_dbn's constructors) of
two publishers for one symbol, read from a file and live, never mixed into one order book and shown as their
consolidated book; ``F_TOB`` records (IEX, NYSE National) replacing a side; a property test of the consolidation."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from databento_dbn import (
    F_LAST,
    F_TOB,
    UNDEF_PRICE,
    Action,
    BidAskPair,
    MBOMsg,
    MBP1Msg,
    MBP10Msg,
    Metadata,
    Schema,
    Side,
    StatusAction,
    StatusMsg,
    SType,
    SymbolMappingMsg,
)
from hypothesis import given
from hypothesis import strategies as st

from orderflow_client.wire import BookUpdate, FeedStatus, Quote
from services.ingest.databento_book import OrderBook, apply_order
from services.ingest.databento_files import read_dbn
from services.ingest.databento_live import LiveRecordParser, RecordChunk
from services.ingest.databento_records import merged_book
from services.ingest.rejects import Reject
from services.ingest.stats import IngestStats
from services.tools.dbn_writer import metadata_mapping

DAY = date(2024, 3, 5)
T0 = 1_709_649_000_000_000_000  # 2024-03-05 14:30:00 UTC, 09:30 New York
D = 1_000_000_000  # one dollar in nano-dollars
XCHI, XCIS, IEXG = 39, 40, 41  # DBEQ.BASIC's publishers: NYSE Texas (full depth), NYSE National, IEX (top of book)
AAPL = 101
ADD, CANCEL, MODIFY, CLEAR, TRADE, FILL = (Action(code) for code in "ACMRTF")
BID, ASK, NONE = Side("B"), Side("A"), Side("N")


def mbo(publisher: int, action: Action, order_id: int, side: Side, price: int, size: int, *, ts: int = T0,
        flags: int = F_LAST) -> Any:  # fmt: skip
    return MBOMsg(publisher, AAPL, ts, order_id, price, size, action, side, ts, flags=flags, sequence=9)


def write_dbn(path: Path, records: list[Any], schema: str) -> Path:
    """A DBN file of ``records`` whose metadata maps AAPL → 101 on DAY (DBEQ.BASIC: one instrument id, three
    publishers)."""
    metadata = Metadata(
        dataset="DBEQ.BASIC",
        start=T0,
        stype_in=SType("raw_symbol"),
        stype_out=SType("instrument_id"),
        schema=Schema(schema),
        symbols=["AAPL"],
        mappings=[metadata_mapping("AAPL", AAPL, DAY, date(2024, 3, 6))],
    )
    path.write_bytes(bytes(metadata) + b"".join(bytes(record) for record in records))
    return path


def books_of(items: list[Any]) -> list[tuple[int, Any, Any, str]]:
    return [(item.ts_event - T0, item.bids, item.asks, item.venue) for item in items if type(item) is BookUpdate]


# --- F_TOB: a top-of-book venue's adds replace the side ----------------------------------------------------------
def test_a_top_of_book_add_replaces_its_side_and_one_without_a_price_empties_it():
    book = OrderBook()
    assert apply_order(book, mbo(IEXG, ADD, 0, BID, 187 * D, 300, flags=F_TOB)) is None
    assert apply_order(book, mbo(IEXG, ADD, 0, ASK, 188 * D, 200, flags=F_TOB)) is None
    assert book.top(10) == (((187 * D, 300),), ((188 * D, 200),))
    assert book.queue("B", 187 * D) == ()  # a top-of-book level stands for no order
    assert apply_order(book, mbo(IEXG, ADD, 0, BID, 186 * D, 100, flags=F_TOB)) is None  # the bid moved down
    assert book.top(10) == (((186 * D, 100),), ((188 * D, 200),))
    assert apply_order(book, mbo(IEXG, ADD, 0, ASK, UNDEF_PRICE, 0, flags=F_TOB)) is None  # no offer any more
    assert book.top(10) == (((186 * D, 100),), ())
    assert apply_order(book, mbo(IEXG, MODIFY, 0, BID, 186 * D, 400, flags=F_TOB)) is None  # as Databento's modify
    assert book.top(10) == (((186 * D, 400),), ())
    assert apply_order(book, mbo(IEXG, CANCEL, 0, BID, UNDEF_PRICE, 0, flags=F_TOB)) is None
    assert book.top(10) == ((), ())
    assert apply_order(book, mbo(IEXG, ADD, 0, NONE, 186 * D, 400, flags=F_TOB)) == "order_without_side"


def test_without_f_tob_the_same_records_are_ordinary_orders():
    book = OrderBook()
    assert apply_order(book, mbo(XCHI, ADD, 1, BID, 187 * D, 300)) is None
    assert apply_order(book, mbo(XCHI, ADD, 2, BID, 186 * D, 100)) is None  # joins the book, replaces nothing
    assert book.top(10) == (((187 * D, 300), (186 * D, 100)), ())
    assert apply_order(book, mbo(XCHI, ADD, 3, ASK, UNDEF_PRICE, 0)) == "undefined_price"
    assert apply_order(book, mbo(XCHI, TRADE, 0, ASK, 187 * D, 10)) is None
    assert apply_order(book, mbo(XCHI, FILL, 1, BID, 187 * D, 10)) is None
    assert book.top(10) == (((187 * D, 300), (186 * D, 100)), ())  # trades and fills change nothing
    assert apply_order(book, mbo(XCHI, CANCEL, 9, BID, 187 * D, 10)) == "unknown_order"
    assert apply_order(book, mbo(XCHI, CLEAR, 0, NONE, UNDEF_PRICE, 0)) is None
    assert book.top(10) == ((), ()) and book.orders == {}


def test_a_top_of_book_add_takes_the_sides_orders_off_the_book():
    book = OrderBook()
    book.add(1, "B", 187 * D, 300)
    book.add(2, "A", 188 * D, 100)
    assert apply_order(book, mbo(IEXG, ADD, 0, BID, 186 * D, 50, flags=F_TOB)) is None
    assert set(book.orders) == {2}
    assert book.top(10) == (((186 * D, 50),), ((188 * D, 100),))


# --- two publishers of one symbol, from a file --------------------------------------------------------------------
def test_two_venues_books_stay_apart_and_are_shown_consolidated(tmp_path):
    records = [
        mbo(XCHI, ADD, 1, BID, 187 * D, 100),  # NYSE Texas: order 1
        mbo(XCIS, ADD, 1, BID, 187 * D, 40, ts=T0 + 1),  # NYSE National's own order 1: not a duplicate
        mbo(XCIS, ADD, 2, ASK, 188 * D, 60, ts=T0 + 2),
        mbo(XCHI, CANCEL, 1, BID, 187 * D, 100, ts=T0 + 3),  # NYSE Texas's order 1 leaves; National's stays
        mbo(XCIS, CANCEL, 2, ASK, 188 * D, 60, ts=T0 + 4),
    ]
    items = list(read_dbn([write_dbn(tmp_path / "dbeq.mbo.dbn", records, "mbo")]))
    assert [item for item in items if isinstance(item, Reject)] == []
    assert books_of(items) == [
        (0, ((187 * D, 100),), (), "XCHI"),
        (1, ((187 * D, 140),), (), "XCHI+XCIS"),  # each price's shares summed over the venues
        (2, ((187 * D, 140),), ((188 * D, 60),), "XCHI+XCIS"),
        (3, ((187 * D, 40),), ((188 * D, 60),), "XCHI+XCIS"),
        (4, ((187 * D, 40),), (), "XCHI+XCIS"),
    ]


def test_a_top_of_book_venue_beside_a_full_depth_venue(tmp_path):
    records = [
        mbo(XCHI, ADD, 1, ASK, 188 * D, 100),
        mbo(XCHI, ADD, 2, ASK, 189 * D, 500, ts=T0 + 1),
        mbo(IEXG, ADD, 0, ASK, 188 * D, 300, ts=T0 + 2, flags=F_TOB | F_LAST),  # IEX's best offer
        mbo(IEXG, ADD, 0, ASK, 187 * D, 200, ts=T0 + 3, flags=F_TOB | F_LAST),  # IEX's new best replaces it
        mbo(IEXG, ADD, 0, ASK, UNDEF_PRICE, 0, ts=T0 + 4, flags=F_TOB | F_LAST),  # IEX has no offer
    ]
    items = list(read_dbn([write_dbn(tmp_path / "dbeq.mbo.dbn", records, "mbo")]))
    assert [item for item in items if isinstance(item, Reject)] == []
    assert books_of(items) == [
        (0, (), ((188 * D, 100),), "XCHI"),
        (1, (), ((188 * D, 100), (189 * D, 500)), "XCHI"),
        (2, (), ((188 * D, 400), (189 * D, 500)), "IEXG+XCHI"),
        (3, (), ((187 * D, 200), (188 * D, 100), (189 * D, 500)), "IEXG+XCHI"),
        (4, (), ((188 * D, 100), (189 * D, 500)), "IEXG+XCHI"),
    ]


def mbp10(publisher: int, asks: list[tuple[int, int]], ts: int) -> Any:
    pairs = [
        BidAskPair(bid_px=UNDEF_PRICE, ask_px=asks[index][0], bid_sz=0, ask_sz=asks[index][1])
        if index < len(asks)
        else BidAskPair(bid_px=UNDEF_PRICE, ask_px=UNDEF_PRICE, bid_sz=0, ask_sz=0)
        for index in range(10)
    ]
    return MBP10Msg(publisher, AAPL, ts, 0, 0, ADD, ASK, 0, ts, flags=F_LAST, sequence=7, levels=pairs)


def test_mbp10_books_of_two_venues_are_consolidated_and_unchanged_ones_not_repeated(tmp_path):
    records = [
        mbp10(XCHI, [(188 * D, 100)], T0),
        mbp10(XCIS, [(188 * D, 50), (189 * D, 10)], T0 + 1),
        mbp10(XCHI, [(188 * D, 100)], T0 + 2),  # NYSE Texas unchanged: no book
        mbp10(XCHI, [(187 * D, 5)], T0 + 3),
    ]
    items = list(read_dbn([write_dbn(tmp_path / "dbeq.mbp-10.dbn", records, "mbp-10")]))
    assert books_of(items) == [
        (0, (), ((188 * D, 100),), "XCHI"),
        (1, (), ((188 * D, 150), (189 * D, 10)), "XCHI+XCIS"),
        (3, (), ((187 * D, 5), (188 * D, 50), (189 * D, 10)), "XCHI+XCIS"),
    ]


def test_quotes_of_several_venues_are_their_best_bid_and_offer(tmp_path):
    def top(publisher: int, ts: int, bid: int = 187 * D, bid_size: int = 100, ask_size: int = 200) -> Any:
        level = BidAskPair(bid_px=bid, ask_px=188 * D, bid_sz=bid_size, ask_sz=ask_size)
        return MBP1Msg(publisher, AAPL, ts, 0, 0, ADD, BID, 0, ts, flags=F_LAST, sequence=7, levels=level)

    records = [
        top(XCHI, T0),  # one venue: its own quote
        top(XCIS, T0 + 1),  # a second at the same prices: the sizes summed
        top(XCHI, T0 + 2),  # nothing changed: not shown again
        top(XCIS, T0 + 3, bid=187 * D + D // 100, bid_size=50),  # NYSE National alone bids a cent higher
        top(XCIS, T0 + 4, bid=UNDEF_PRICE, bid_size=0, ask_size=0),  # and leaves both sides
    ]
    items = list(read_dbn([write_dbn(tmp_path / "dbeq.mbp-1.dbn", records, "mbp-1")]))
    quotes = [
        (item.ts_event - T0, item.bid_price, item.bid_size, item.bid_exchange, item.ask_size, item.ask_exchange)
        for item in items
        if type(item) is Quote
    ]
    assert quotes == [  # Polygon ids: NYSE Texas 9, NYSE National 3
        (0, 187 * D, 100, 9, 200, 9),
        (1, 187 * D, 200, 9, 400, 9),  # a tie in size: the first publisher's
        (3, 187 * D + D // 100, 50, 3, 400, 9),
        (4, 187 * D, 100, 9, 200, 9),
    ]


def test_a_symbol_halted_by_several_venues_resumes_when_the_last_trades_again(tmp_path):
    records = [
        StatusMsg(XCHI, AAPL, T0, T0, action=StatusAction(8)),  # NYSE Texas halts AAPL: halted
        StatusMsg(XCIS, AAPL, T0 + 1, T0 + 1, action=StatusAction(8)),  # NYSE National too: already halted
        StatusMsg(XCHI, AAPL, T0 + 2, T0 + 2, action=StatusAction(7)),  # Texas trades, National still halted
        StatusMsg(IEXG, AAPL, T0 + 3, T0 + 3, action=StatusAction(7)),  # IEX was never halted: says nothing
        StatusMsg(XCIS, AAPL, T0 + 4, T0 + 4, action=StatusAction(7)),  # the last one trades: resumed
    ]
    items = read_dbn([write_dbn(tmp_path / "s.dbn", records, "status")])
    statuses = [item for item in items if type(item) is FeedStatus]
    assert [(status.state, status.ts_event - T0, status.detail.split()[-1]) for status in statuses] == [
        ("trading_halted", 0, "venue=XCHI"),
        ("trading_resumed", 4, "venue=XCIS"),
    ]


# --- two publishers of one symbol, live ---------------------------------------------------------------------------
def test_live_books_of_two_venues_stay_apart_and_are_shown_consolidated():
    live = LiveRecordParser(IngestStats(), wanted=lambda: frozenset({"AAPL"}))
    mapping = SymbolMappingMsg(XCHI, AAPL, T0, SType("raw_symbol"), "AAPL", SType("raw_symbol"), "AAPL", T0, T0)
    records = [
        mapping,
        mbo(XCHI, ADD, 1, BID, 187 * D, 100),
        mbo(XCIS, ADD, 1, BID, 187 * D, 40, ts=T0 + 1),
        mbo(IEXG, ADD, 0, BID, 187 * D, 5, ts=T0 + 2, flags=F_TOB | F_LAST),
        mbo(XCHI, CANCEL, 1, BID, 187 * D, 100, ts=T0 + 3),
    ]
    events, _statuses, rejects = live.parse(RecordChunk(1, records, 56 * len(records)), T0 + 10)
    assert rejects == []
    assert books_of(events) == [
        (0, ((187 * D, 100),), (), "XCHI"),
        (1, ((187 * D, 140),), (), "XCHI+XCIS"),
        (2, ((187 * D, 145),), (), "IEXG+XCHI+XCIS"),
        (3, ((187 * D, 45),), (), "IEXG+XCHI+XCIS"),
    ]


# --- consolidation ------------------------------------------------------------------------------------------------
_levels = st.dictionaries(st.integers(1, 40), st.integers(1, 1000), max_size=25)


@given(st.lists(st.tuples(_levels, _levels), min_size=1, max_size=4), st.integers(1, 10))
def test_merging_each_venues_best_levels_gives_the_best_levels_of_the_merged_book(venues, depth):
    def best(sizes: dict[int, int], reverse: bool) -> tuple[tuple[int, int], ...]:
        return tuple(sorted(sizes.items(), reverse=reverse))

    books = [(best(bids, True)[:depth], best(asks, False)[:depth]) for bids, asks in venues]
    whole_bids: dict[int, int] = {}
    whole_asks: dict[int, int] = {}
    for bids, asks in venues:
        for price, size in bids.items():
            whole_bids[price] = whole_bids.get(price, 0) + size
        for price, size in asks.items():
            whole_asks[price] = whole_asks.get(price, 0) + size
    assert merged_book(books, depth) == (best(whole_bids, True)[:depth], best(whole_asks, False)[:depth])
