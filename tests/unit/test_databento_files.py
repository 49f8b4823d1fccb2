"""Databento DBN files → events: hand-made records with exact outcomes (each schema, undefined prices, side N,
ten levels, MBO book building), the damaged and the unknown as counted rejects, and a property test over generated
files."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from databento_dbn import (
    F_BAD_TS_RECV,
    F_LAST,
    UNDEF_PRICE,
    Action,
    BidAskPair,
    Compression,
    Encoding,
    ErrorMsg,
    MBOMsg,
    MBP1Msg,
    MBP10Msg,
    Metadata,
    OHLCVMsg,
    Schema,
    Side,
    StatusAction,
    StatusMsg,
    SType,
    SymbolMappingMsg,
    TradeMsg,
    Transcoder,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderflow_client.wire import BookUpdate, FeedStatus, Quote, Trade
from services.ingest.databento_book import OrderBook
from services.ingest.databento_files import DbnCounts, read_dbn
from services.ingest.databento_records import LEVELS_START, mbp10_levels
from services.ingest.databento_venues import PUBLISHER_VENUES, VENUE_EXCHANGES, venue_of
from services.ingest.rejects import Reject
from services.ingest.sources import detect_format, read_events
from services.tools.dbn_writer import metadata_mapping

DAY = date(2024, 3, 5)
T0 = 1_709_649_000_000_000_000  # 2024-03-05 14:30:00 UTC, 09:30 New York
XNAS = 2
AAPL, MSFT = 101, 102
TRADE, ADD, CANCEL, MODIFY, FILL, CLEAR = (Action(code) for code in "TACMFR")
BID, ASK, NONE = Side("B"), Side("A"), Side("N")


def write_dbn(path: Path, records: list[Any], schema: str | None = "trades", *, zstd: bool = False) -> Path:
    """A DBN file of ``records`` whose metadata maps AAPL → 101 and MSFT → 102 on DAY."""
    mappings = [
        metadata_mapping(name, number, DAY, date(2024, 3, 6)) for name, number in (("AAPL", AAPL), ("MSFT", MSFT))
    ]
    metadata = Metadata(
        dataset="XNAS.ITCH",
        start=T0,
        stype_in=SType("raw_symbol"),
        stype_out=SType("instrument_id"),
        schema=Schema(schema) if schema else None,
        symbols=["AAPL", "MSFT"],
        mappings=mappings,
    )
    data = bytes(metadata) + b"".join(bytes(record) for record in records)
    if zstd:
        buffer = io.BytesIO()
        transcoder = Transcoder(buffer, Encoding("dbn"), Compression("zstd"))
        transcoder.write(data)
        transcoder.finish()
        data = buffer.getvalue()
    path.write_bytes(data)
    return path


def read(path: Path, **options: Any) -> list[Any]:
    return list(read_dbn([path], **options))


def trade(side: Side = ASK, *, price: int = 187_430_000_000, size: int = 200, ts: int = T0, **fields: Any) -> Any:
    return TradeMsg(XNAS, fields.pop("instrument", AAPL), ts, price, size, TRADE, side, 0, ts + 500,
                    flags=fields.pop("flags", F_LAST), sequence=fields.pop("sequence", 1188))  # fmt: skip


def levels(bids: list[tuple[int, int]], asks: list[tuple[int, int]], count: int = 10) -> list[Any]:
    pairs = []
    for index in range(count):
        bid = bids[index] if index < len(bids) else (UNDEF_PRICE, 0)
        ask = asks[index] if index < len(asks) else (UNDEF_PRICE, 0)
        pairs.append(BidAskPair(bid_px=bid[0], ask_px=ask[0], bid_sz=bid[1], ask_sz=ask[1]))
    return pairs


def mbp10(action: Action, bids: list[tuple[int, int]], asks: list[tuple[int, int]], *, ts: int = T0,
          side: Side = BID, price: int = 0, size: int = 0, flags: int = F_LAST, sequence: int = 7) -> Any:  # fmt: skip
    return MBP10Msg(XNAS, AAPL, ts, price, size, action, side, 0, ts, flags=flags, sequence=sequence,
                    levels=levels(bids, asks))  # fmt: skip


def mbo(action: Action, order_id: int, side: Side, price: int, size: int, *, ts: int = T0, flags: int = F_LAST) -> Any:
    return MBOMsg(XNAS, AAPL, ts, order_id, price, size, action, side, ts, flags=flags, sequence=9)


def patched(record: Any, offset: int, value: bytes) -> bytes:
    """A record's bytes with ``value`` written at ``offset`` (for letters no constructor accepts)."""
    raw = bytearray(bytes(record))
    raw[offset : offset + len(value)] = value
    return bytes(raw)


class Raw:
    """Bytes standing for a record in :func:`write_dbn`."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __bytes__(self) -> bytes:
        return self.data


D = 1_000_000_000  # one dollar in nano-dollars


# --- trades ---------------------------------------------------------------------------------------------------
def test_a_trade_record_gives_the_trade_with_the_aggressor_side(tmp_path):
    events = read(write_dbn(tmp_path / "t.dbn", [trade(ASK), trade(BID, sequence=1189, ts=T0 + 1)]))
    assert events[0] == Trade(
        symbol="AAPL",
        ts_event=T0,
        ts_recv=T0 + 500,
        ts_arrival=T0 + 500,
        price=187_430_000_000,
        size=200,
        exchange=12,
        trade_id="1188",
        sequence=1188,
        side="sell",  # side A: the seller hit the bid
        side_source="feed",
    )
    assert (events[1].side, events[1].side_source, events[1].trade_id) == ("buy", "feed", "1189")


def test_side_n_is_left_to_inference_and_counted(tmp_path):
    counts = DbnCounts()
    path = write_dbn(tmp_path / "t.dbn", [trade(NONE), trade(ASK, sequence=2), trade(NONE, sequence=3)])
    events = read(path, counts=counts)
    assert [(event.side, event.side_source) for event in events] == [
        ("unknown", "none"),
        ("sell", "feed"),
        ("unknown", "none"),
    ]
    assert (counts.trades, counts.trades_without_side, counts.rejects) == (3, 2, 0)


def test_undefined_or_non_positive_price_zero_size_and_unknown_side_are_rejects(tmp_path):
    counts = DbnCounts()
    unknown_side = Raw(patched(trade(ASK, sequence=4), 29, b"X"))  # side is the byte after action (28)
    records = [trade(price=UNDEF_PRICE), trade(size=0, sequence=2), trade(sequence=3), unknown_side]
    records += [trade(price=0, sequence=5), trade(price=-1, sequence=6)]
    events = read(write_dbn(tmp_path / "t.dbn", records), counts=counts)
    assert [event.code for event in events if isinstance(event, Reject)] == [
        "undefined_price",
        "invalid_size",
        "unknown_side",
        "invalid_price",
        "invalid_price",
    ]
    assert [event.sequence for event in events if isinstance(event, Trade)] == [3]
    assert counts.rejects == 5 and counts.records == 6


def test_a_bad_receive_time_falls_back_to_the_event_time(tmp_path):
    [event] = read(write_dbn(tmp_path / "t.dbn", [trade(flags=F_LAST | F_BAD_TS_RECV)]))
    assert event.ts_recv == event.ts_arrival == event.ts_event == T0


def test_symbols_come_from_the_metadata_and_filter(tmp_path):
    path = write_dbn(tmp_path / "t.dbn", [trade(instrument=MSFT), trade(), trade(instrument=999, sequence=5)])
    events = read(path)
    assert [event.symbol for event in events[:2]] == ["MSFT", "AAPL"]
    assert isinstance(events[2], Reject) and events[2].code == "unknown_instrument"
    assert [getattr(event, "symbol", "reject") for event in read(path, symbol="MSFT")] == ["MSFT", "reject"]
    # the symbology's interval is a UTC day: the day after, the instrument id no longer names AAPL
    assert read(write_dbn(tmp_path / "late.dbn", [trade(ts=T0 + 86_400 * D)]))[0].code == "unknown_instrument"


def test_a_symbol_mapping_record_names_an_instrument(tmp_path):
    mapping = SymbolMappingMsg(XNAS, 555, T0, SType("raw_symbol"), "TSLA", SType("instrument_id"), "555", T0, T0 + D)
    [event] = read(write_dbn(tmp_path / "t.dbn", [mapping, trade(instrument=555)], schema=None))
    assert event.symbol == "TSLA"


# --- MBP-10 ---------------------------------------------------------------------------------------------------
def test_ten_levels_give_a_ten_level_book_and_empty_ones_are_dropped(tmp_path):
    bids = [((200 - index) * D, 100 + index) for index in range(10)]
    asks = [((201 + index) * D, 300 + index) for index in range(10)]
    path = write_dbn(tmp_path / "b.dbn", [mbp10(ADD, bids, asks), mbp10(CANCEL, bids[:3], asks[:1], ts=T0 + 1)])
    first, second = read(path)
    assert first == BookUpdate(
        symbol="AAPL", ts_event=T0, ts_recv=T0, ts_arrival=T0, bids=tuple(bids), asks=tuple(asks), venue="XNAS"
    )
    assert (second.bids, second.asks) == (tuple(bids[:3]), tuple(asks[:1]))
    # a level with a price but no size is empty too; depth cuts the book
    [cut] = read(write_dbn(tmp_path / "c.dbn", [mbp10(ADD, [(200 * D, 0), *bids[1:]], asks)]), depth=2)
    assert (cut.bids, cut.asks) == (tuple(bids[1:3]), tuple(asks[:2]))


def test_a_trade_shows_the_book_it_met_then_the_trade_and_books_wait_for_the_last_record(tmp_path):
    before = ([(200 * D, 500)], [(201 * D, 300)])
    records = [
        mbp10(ADD, *before),
        mbp10(TRADE, *before, ts=T0 + 1, side=ASK, price=200 * D, size=200, flags=0, sequence=8),
        mbp10(CANCEL, [(200 * D, 300)], [(201 * D, 300)], ts=T0 + 1, flags=0),  # not the event's last record
        mbp10(CANCEL, [(200 * D, 250)], [(201 * D, 300)], ts=T0 + 1),
        mbp10(ADD, [(200 * D, 250)], [(201 * D, 300)], ts=T0 + 2),  # the same book: nothing to show
    ]
    events = read(write_dbn(tmp_path / "b.dbn", records, schema="mbp-10"))
    assert [type(event).__name__ for event in events] == ["BookUpdate", "Trade", "BookUpdate"]
    assert (events[1].side, events[1].price, events[1].size, events[1].trade_id) == ("sell", 200 * D, 200, "8")
    assert events[2].bids == ((200 * D, 250),) and events[2].ts_event == T0 + 1


# --- MBP-1 and TBBO -------------------------------------------------------------------------------------------
def test_top_of_book_records_give_quotes_then_trades(tmp_path):
    def top(action: Action, bid: tuple[int, int], ask: tuple[int, int], **fields: Any) -> Any:
        pair = BidAskPair(bid_px=bid[0], ask_px=ask[0], bid_sz=bid[1], ask_sz=ask[1])
        ts, price, size = fields.get("ts", T0), fields.get("price", 0), fields.get("size", 0)
        side = fields.get("side", BID)
        return MBP1Msg(XNAS, AAPL, ts, price, size, action, side, 0, ts, flags=F_LAST, sequence=3, levels=pair)

    records = [
        top(ADD, (200 * D, 500), (UNDEF_PRICE, 0)),
        top(TRADE, (200 * D, 500), (201 * D, 100), ts=T0 + 1, price=201 * D, size=100, side=BID),  # TBBO-like
    ]
    first, second, third = read(write_dbn(tmp_path / "q.dbn", records, schema="mbp-1"))
    assert first == Quote(
        symbol="AAPL",
        ts_event=T0,
        ts_recv=T0,
        ts_arrival=T0,
        bid_price=200 * D,
        bid_size=500,
        ask_price=0,
        ask_size=0,
        bid_exchange=12,
        ask_exchange=12,
        sequence=3,
    )
    assert (second.ask_price, second.ask_size, second.ts_event) == (201 * D, 100, T0 + 1)
    assert isinstance(third, Trade) and (third.side, third.price) == ("buy", 201 * D)


# --- MBO ------------------------------------------------------------------------------------------------------
def test_mbo_builds_the_book_order_by_order(tmp_path):
    records = [
        mbo(CLEAR, 0, NONE, UNDEF_PRICE, 0, flags=0),
        mbo(ADD, 1, BID, 200 * D, 100, flags=0),
        mbo(ADD, 2, BID, 200 * D, 50, flags=0),
        mbo(ADD, 3, ASK, 201 * D, 70),  # the snapshot's last record: one book
        mbo(MODIFY, 1, BID, 199 * D, 100, ts=T0 + 1),  # order 1 moves down a level
        mbo(TRADE, 0, ASK, 200 * D, 20, ts=T0 + 2, flags=0),  # a seller takes 20 from order 2
        mbo(FILL, 2, BID, 200 * D, 20, ts=T0 + 2, flags=0),
        mbo(CANCEL, 2, BID, 200 * D, 20, ts=T0 + 2),
        mbo(CANCEL, 3, ASK, 201 * D, 70, ts=T0 + 3),  # the ask side empties
        mbo(CANCEL, 77, ASK, 201 * D, 5, ts=T0 + 4),  # an order never added
        mbo(ADD, 1, BID, 198 * D, 5, ts=T0 + 5),  # an id already resting
    ]
    events = read(write_dbn(tmp_path / "o.dbn", records, schema="mbo"))
    books = [(event.ts_event - T0, event.bids, event.asks) for event in events if isinstance(event, BookUpdate)]
    assert books == [
        (0, ((200 * D, 150),), ((201 * D, 70),)),
        (1, ((200 * D, 50), (199 * D, 100)), ((201 * D, 70),)),
        (2, ((200 * D, 30), (199 * D, 100)), ((201 * D, 70),)),
        (3, ((200 * D, 30), (199 * D, 100)), ()),
    ]
    [traded] = [event for event in events if isinstance(event, Trade)]
    assert (traded.side, traded.size, traded.ts_event) == ("sell", 20, T0 + 2)
    assert [(event.code, event.where) for event in events if isinstance(event, Reject)] == [
        ("unknown_order", f"o.dbn:{T0 + 4}"),
        ("duplicate_order", f"o.dbn:{T0 + 5}"),
    ]


def test_the_order_book_keeps_ids_and_time_priority():
    book = OrderBook()
    for order_id, size in ((11, 500), (12, 200), (13, 300)):
        assert book.add(order_id, "A", 220 * D, size) is None
    assert book.cancel(11, 100) is None and book.queue("A", 220 * D) == (11, 12, 13)
    assert book.modify(11, "A", 220 * D, 100) is None and book.queue("A", 220 * D) == (11, 12, 13)  # smaller: stays
    assert book.modify(11, "A", 220 * D, 150) is None and book.queue("A", 220 * D) == (12, 13, 11)  # larger: last
    assert book.modify(12, "A", 221 * D, 200) is None and book.queue("A", 221 * D) == (12,)
    assert book.top(10) == ((), ((220 * D, 450), (221 * D, 200)))
    assert (book.orders[13].size, book.cancel(13, 999), 13 in book.orders) == (300, None, False)
    assert [book.add(1, "N", D, 1), book.cancel(99, 1), book.modify(11, "B", D, 1)] == [
        "order_without_side",
        "unknown_order",
        "modify_changes_side",
    ]
    book.clear()
    assert book.top(10) == ((), ()) and not book.orders


# --- status, other records, damaged files ---------------------------------------------------------------------
def test_halts_and_resumptions_become_statuses(tmp_path):
    records = [
        StatusMsg(XNAS, AAPL, T0 - 2, T0 - 2, action=StatusAction(7)),  # trading, never halted: says nothing
        StatusMsg(XNAS, AAPL, T0, T0, action=StatusAction(8)),
        StatusMsg(XNAS, AAPL, T0 + 1, T0 + 1, action=StatusAction(14)),  # a short-sale restriction: not a halt
        StatusMsg(XNAS, AAPL, T0 + 2, T0 + 2, action=StatusAction(7)),
        StatusMsg(XNAS, AAPL, T0 + 3, T0 + 3, action=StatusAction(7)),  # trading again: already resumed
    ]
    events = read(write_dbn(tmp_path / "s.dbn", records, schema="status"))
    assert [(type(event), event.state, event.symbols, event.ts_event) for event in events] == [
        (FeedStatus, "trading_halted", ("AAPL",), T0),
        (FeedStatus, "trading_resumed", ("AAPL",), T0 + 2),
    ]


def test_unsupported_and_error_records_are_counted_rejects(tmp_path):
    bar = OHLCVMsg(33, XNAS, AAPL, T0, D, D, D, D, 100)
    error = ErrorMsg(T0, "subscription failed")
    counts = DbnCounts()
    events = read(write_dbn(tmp_path / "x.dbn", [bar, error, trade()], schema=None), counts=counts)
    assert [getattr(event, "code", "trade") for event in events] == ["unsupported_record", "vendor_error", "trade"]
    assert counts.rejects == 2


def test_zstd_files_read_as_the_plain_ones(tmp_path):
    records = [trade(), trade(BID, sequence=2), mbp10(ADD, [(200 * D, 5)], [(201 * D, 6)])]
    plain = read(write_dbn(tmp_path / "p.dbn", records, schema=None))
    assert read(write_dbn(tmp_path / "z.dbn.zst", records, schema=None, zstd=True)) == plain and len(plain) == 3


def test_damaged_files_give_rejects_not_exceptions(tmp_path):
    path = write_dbn(tmp_path / "t.dbn", [trade(), trade(sequence=2)])
    truncated = tmp_path / "cut.dbn"
    truncated.write_bytes(path.read_bytes()[:-10])
    events = read(truncated)
    assert [type(event) for event in events] == [Trade, Reject] and events[1].code == "truncated"
    garbage = tmp_path / "garbage.dbn"
    garbage.write_bytes(b"not a DBN file at all" * 10)
    assert [event.code for event in read(garbage)] == ["undecodable"]
    bad_type = write_dbn(tmp_path / "rtype.dbn", [trade(), Raw(patched(trade(sequence=2), 1, b"\x99")), trade()])
    # the record after the damage is read, and so is the symbology before it (the first trade, in the same
    # decoder call as the damage, is lost with it)
    assert [event.code if isinstance(event, Reject) else event.symbol for event in read(bad_type)] == [
        "undecodable",
        "AAPL",
    ]


def test_read_events_and_the_file_names_know_the_format(tmp_path):
    path = write_dbn(tmp_path / "AAPL.trades.dbn.zst", [trade()], zstd=True)
    assert detect_format(path) == "dbn" and detect_format(Path("x.DBN")) == "dbn"
    assert list(read_events("dbn", [path], symbol="AAPL")) == read(path)


# --- the layouts and tables mirrored from Databento -----------------------------------------------------------
def test_the_level_layout_reads_what_the_attributes_say():
    record = mbp10(ADD, [(200 * D, 1), (199 * D, 2)], [(201 * D, 3), (UNDEF_PRICE, 0), (203 * D, 4)])
    assert LEVELS_START == 48
    assert mbp10_levels(bytes(record), 10) == (
        tuple((level.bid_px, level.bid_sz) for level in record.levels if level.bid_px != UNDEF_PRICE),
        ((201 * D, 3), (203 * D, 4)),
    )


def test_the_venue_table_mirrors_databentos_publishers():
    from databento.common.publishers import Publisher

    for publisher_id, venue in PUBLISHER_VENUES.items():
        assert Publisher.from_int(publisher_id).venue.value == venue, publisher_id
    assert venue_of(2) == ("XNAS", 12, 0) and venue_of(68) == ("FINN", 4, 202) and venue_of(1) == ("", 0, 0)


def test_each_venue_has_its_polygon_exchange_id():
    """Polygon's (Massive's) exchange ids, as its ``/v3/reference/exchanges`` lists them, so a Databento print names
    the same exchange a Polygon print of the same venue does (the condition and venue rules key on them)."""
    polygon_ids = {
        "XASE": 1, "XBOS": 2, "XCIS": 3, "EDGA": 7, "EDGX": 8, "XCHI": 9, "XNYS": 10, "ARCX": 11, "XNAS": 12,
        "LTSE": 14, "IEXG": 15, "XPSX": 17, "BATY": 18, "BATS": 19, "EPRL": 20, "MEMX": 21,
    }  # fmt: skip
    assert {venue: exchange for venue, (exchange, _trf) in VENUE_EXCHANGES.items() if venue[:3] != "FIN"} == polygon_ids


# --- any records: no exception, every reject counted ----------------------------------------------------------
_prices = st.one_of(st.just(UNDEF_PRICE), st.integers(-(2**40), 2**40), st.integers(1, 10**12))
_sizes = st.integers(0, 2**32 - 1)
_letters = st.sampled_from(list("TACMFRNBXZ\x00"))


@st.composite
def records(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["trade", "mbp1", "mbp10", "mbo", "status"]))
    ts = T0 + draw(st.integers(0, 10**9))
    instrument = draw(st.sampled_from([AAPL, MSFT, 7]))
    price, size, flags = draw(_prices), draw(_sizes), draw(st.sampled_from([0, F_LAST, F_LAST | F_BAD_TS_RECV]))
    if kind == "trade":
        record: Any = TradeMsg(XNAS, instrument, ts, price, size, TRADE, ASK, 0, ts, flags=flags, sequence=1)
    elif kind == "mbp1":
        pair = BidAskPair(bid_px=draw(_prices), ask_px=draw(_prices), bid_sz=draw(_sizes), ask_sz=draw(_sizes))
        record = MBP1Msg(XNAS, instrument, ts, price, size, TRADE, ASK, 0, ts, flags=flags, levels=pair)
    elif kind == "mbp10":
        pairs = [BidAskPair(bid_px=draw(_prices), ask_px=draw(_prices), bid_sz=draw(_sizes), ask_sz=draw(_sizes))
                 for _ in range(10)]  # fmt: skip
        record = MBP10Msg(XNAS, instrument, ts, price, size, TRADE, ASK, 0, ts, flags=flags, levels=pairs)
    elif kind == "mbo":
        order_id = draw(st.integers(0, 5))
        record = MBOMsg(XNAS, instrument, ts, order_id, price, size, ADD, BID, ts, flags=flags)
    else:
        record = StatusMsg(XNAS, instrument, ts, ts, action=StatusAction(draw(st.integers(0, 15))))
        return bytes(record)
    # the action and side letters at 28 and 29 (MBO: 30 and 31, after channel_id), any letter
    at = 30 if kind == "mbo" else 28
    return patched(record, at, (draw(_letters) + draw(_letters)).encode("latin-1"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(records(), max_size=30), st.integers(0, 40), st.binary(max_size=3), st.booleans())
def test_any_records_read_without_exceptions_and_rejects_are_counted(tmp_path, generated, cut, noise, zstd):
    data = write_dbn(tmp_path / "g.dbn", [Raw(raw) for raw in generated], schema=None, zstd=zstd).read_bytes()
    damaged = tmp_path / "d.dbn"
    damaged.write_bytes(data[: len(data) - cut] + noise if cut or noise else data)
    counts = DbnCounts()
    events = read(damaged, counts=counts)
    rejects = [event for event in events if isinstance(event, Reject)]
    assert len(rejects) == counts.rejects and all(event.source == "dbn" for event in rejects)
    assert counts.records <= len(generated)
    for event in events:
        if isinstance(event, Trade):
            assert event.price != UNDEF_PRICE and event.size > 0 and event.side in ("buy", "sell", "unknown")
        elif isinstance(event, BookUpdate):
            for side in (event.bids, event.asks):
                assert all(price != UNDEF_PRICE and size > 0 for price, size in side)
    books = [event for event in events if isinstance(event, BookUpdate)]
    assert counts.books == len(books) and counts.trades == sum(isinstance(event, Trade) for event in events)


@pytest.mark.parametrize("cut", [1, 47])
def test_a_file_cut_inside_a_record_keeps_the_records_before(tmp_path, cut):
    data = write_dbn(tmp_path / "t.dbn", [trade(), trade(sequence=2)]).read_bytes()
    (tmp_path / "cut.dbn").write_bytes(data[:-cut])
    events = read(tmp_path / "cut.dbn")
    assert isinstance(events[0], Trade) and events[0].sequence == 1188 and events[-1].code == "truncated"
