"""Databento Live record chunks → events (:mod:`services.ingest.databento_live`), with hand-made records
(databento_dbn's own constructors) and exact outcomes, and a hypothesis test over generated record sequences."""

from __future__ import annotations

from typing import Any

from databento_dbn import (
    F_LAST,
    UNDEF_PRICE,
    Action,
    BidAskPair,
    ErrorCode,
    ErrorMsg,
    MBOMsg,
    MBP10Msg,
    Side,
    SType,
    SymbolMappingMsg,
    SystemCode,
    SystemMsg,
    TradeMsg,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from orderflow_client.wire import BookUpdate, OrderUpdate, Trade
from services.ingest.databento_feed import gateway_address
from services.ingest.databento_live import LiveRecordParser, LiveStatus, RecordChunk
from services.ingest.rejects import Reject
from services.ingest.stats import IngestStats

T0 = 1_709_649_000_000_000_000  # 2024-03-05 14:30:00 UTC, 09:30 New York
RECEIVED = T0 + 2_000_000  # our receive time: 2 ms after the venue's
XNAS = 2
AAPL, MSFT, UNMAPPED = 101, 102, 999
TRADE, ADD, CANCEL = Action("T"), Action("A"), Action("C")
BID, ASK, NONE = Side("B"), Side("A"), Side("N")
AT_188 = 188_000_000_000


def mapping(instrument: int, symbol: str) -> Any:
    return SymbolMappingMsg(XNAS, instrument, T0, SType("raw_symbol"), symbol, SType("raw_symbol"), symbol, T0, T0)


def mbp10(action: Action, side: Side, *, instrument: int = AAPL, price: int = 0, size: int = 0,
          bids: int = 3, sequence: int = 7, flags: int = F_LAST) -> Any:  # fmt: skip
    pairs = [
        BidAskPair(
            bid_px=AT_188 - index * 10_000_000 if index < bids else UNDEF_PRICE,
            ask_px=AT_188 + (index + 1) * 10_000_000,
            bid_sz=100 * (index + 1) if index < bids else 0,
            ask_sz=200,
        )
        for index in range(10)
    ]
    return MBP10Msg(XNAS, instrument, T0, price, size, action, side, 0, T0 + 500, flags=flags, sequence=sequence,
                    levels=pairs)  # fmt: skip


def parser(*symbols: str) -> tuple[LiveRecordParser, IngestStats]:
    stats = IngestStats()
    wanted = frozenset(symbols)
    return LiveRecordParser(stats, wanted=lambda: wanted), stats


def chunk(*records: Any, session: int = 1) -> RecordChunk:
    return RecordChunk(session, list(records), 368 * len(records))


def test_an_mbp10_trade_gives_the_book_it_met_then_the_trade_with_the_aggressor_and_our_receive_time():
    live, stats = parser("AAPL")
    record = mbp10(TRADE, ASK, price=AT_188, size=100, sequence=1188)
    events, statuses, rejects = live.parse(chunk(mapping(AAPL, "AAPL"), record), RECEIVED)
    assert (statuses, rejects) == ([], [])
    book, trade = events
    assert book == BookUpdate(
        symbol="AAPL",
        ts_event=T0,
        ts_recv=RECEIVED,
        ts_arrival=RECEIVED,
        bids=((188_000_000_000, 100), (187_990_000_000, 200), (187_980_000_000, 300)),
        asks=tuple((AT_188 + (index + 1) * 10_000_000, 200) for index in range(10)),
        venue="XNAS",
    )
    assert trade == Trade(
        symbol="AAPL",
        ts_event=T0,
        ts_recv=RECEIVED,
        ts_arrival=RECEIVED,
        price=AT_188,
        size=100,
        exchange=trade.exchange,
        trade_id="1188",
        sequence=1188,
        side="sell",
        side_source="feed",
    )
    assert (stats.trades, stats.trades_without_side) == (1, 0)
    # the same levels again: no new book, only the trade
    again, _, _ = live.parse(chunk(mbp10(TRADE, BID, price=AT_188, size=5, sequence=1189)), RECEIVED + 1)
    assert [(type(event), event.side) for event in again] == [(Trade, "buy")]  # type: ignore[union-attr]


def test_a_trade_without_a_side_is_left_to_inference_and_counted():
    live, stats = parser("AAPL")
    record = TradeMsg(XNAS, AAPL, T0, AT_188, 50, TRADE, NONE, 0, T0 + 500, flags=F_LAST, sequence=3)
    (trade,), _, _ = live.parse(chunk(mapping(AAPL, "AAPL"), record), RECEIVED)
    assert (trade.side, trade.side_source) == ("unknown", "none")
    assert (stats.trades, stats.trades_without_side) == (1, 1)


def test_records_of_no_position_or_no_mapping_are_dropped_with_a_reason():
    live, _ = parser("AAPL")
    records = [mapping(AAPL, "AAPL"), mapping(MSFT, "MSFT"), mbp10(TRADE, ASK, instrument=MSFT, price=AT_188, size=1)]
    records.append(mbp10(ADD, BID, instrument=UNMAPPED))
    events, _, rejects = live.parse(chunk(*records, session=4), RECEIVED)
    assert events == []
    assert [(r.source, r.code, r.where, r.detail) for r in rejects] == [
        ("databento_live", "unsubscribed_symbol", f"session4@{RECEIVED}", "MSFT"),
        ("databento_live", "unknown_instrument", f"session4@{RECEIVED}", "999"),
    ]


def test_gateway_messages_become_statuses_or_rejects_and_heartbeats_nothing():
    live, _ = parser("AAPL")
    text = "Subscription request 0 for mbp-10 data succeeded"
    acknowledgement = SystemMsg(ts_event=T0, msg=text, code=SystemCode.SUBSCRIPTION_ACK)
    heartbeat = SystemMsg(ts_event=T0, msg="Heartbeat", code=SystemCode.HEARTBEAT)
    error = ErrorMsg(ts_event=T0, err="Failed to resolve symbol: MSFT", code=ErrorCode.SYMBOL_RESOLUTION_FAILED)
    events, statuses, rejects = live.parse(chunk(acknowledgement, heartbeat, error), RECEIVED)
    assert events == []
    assert statuses == [LiveStatus("subscription_ack", "Subscription request 0 for mbp-10 data succeeded")]
    assert [(r.code, r.detail) for r in rejects] == [("vendor_error", "Failed to resolve symbol: MSFT")]


def mbo(action: Action, order_id: int, side: Side, price: int, size: int, *, instrument: int = AAPL) -> Any:
    return MBOMsg(XNAS, instrument, T0, order_id, price, size, action, side, T0 + 500, flags=F_LAST, sequence=9)


def test_mbo_books_are_rebuilt_and_start_empty_at_each_session():
    live, _ = parser("AAPL")
    first = [mapping(AAPL, "AAPL"), mbo(ADD, 11, ASK, AT_188, 500), mbo(ADD, 12, BID, AT_188 - 10**7, 300)]
    events, _, rejects = live.parse(chunk(*first), RECEIVED)
    assert rejects == [] and [(e.bids, e.asks) for e in events if type(e) is BookUpdate] == [
        ((), ((AT_188, 500),)),
        (((AT_188 - 10**7, 300),), ((AT_188, 500),)),
    ]
    # the ask order travels as an order event too, stamped with our receive time (the bid order does not)
    assert [(e.order_id, e.action, e.size, e.ts_recv) for e in events if type(e) is OrderUpdate] == [
        (11, "add", 500, RECEIVED)
    ]
    # a new connection: the book is rebuilt from what it sends (a cancel of an order it never saw is a reject)
    events, _, rejects = live.parse(chunk(mbo(CANCEL, 11, ASK, AT_188, 500), session=2), RECEIVED + 10)
    assert events == [] and [r.code for r in rejects] == ["unknown_order"]
    events, _, _ = live.parse(chunk(mbo(ADD, 13, ASK, AT_188, 100), session=2), RECEIVED + 20)
    assert [(e.bids, e.asks) for e in events if type(e) is BookUpdate] == [((), ((AT_188, 100),))]


def test_a_chunks_length_is_its_bytes_and_the_gateway_setting_splits():
    assert len(RecordChunk(1, [object(), object()], 736)) == 736
    assert gateway_address("127.0.0.1:13000") == ("127.0.0.1", 13000)
    assert gateway_address("xnas-itch.lsg.databento.com") == ("xnas-itch.lsg.databento.com", None)
    assert gateway_address("") == (None, None)


record_specs = st.tuples(
    st.sampled_from(["mbp10", "mbo", "trade"]),
    st.sampled_from("TACMFRN"),
    st.sampled_from("ABN"),
    st.sampled_from([AAPL, MSFT, UNMAPPED]),
    st.one_of(st.just(UNDEF_PRICE), st.integers(1, 10**12)),
    st.integers(0, 10**6),
    st.integers(1, 20),
)


def build(spec: tuple) -> Any:
    kind, action, side, instrument, price, size, order_id = spec
    if kind == "mbp10":
        return mbp10(Action(action), Side(side), instrument=instrument, price=price, size=size)
    if kind == "mbo":
        return mbo(Action(action), order_id, Side(side), price, size, instrument=instrument)
    return TradeMsg(XNAS, instrument, T0, price, size, Action(action), Side(side), 0, T0, flags=F_LAST, sequence=1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(record_specs, max_size=12), max_size=6))
def test_any_records_give_events_of_the_positions_only_or_coded_rejects(chunks):
    live, stats = parser("AAPL")
    mapped = [mapping(AAPL, "AAPL"), mapping(MSFT, "MSFT")]
    trades_expected = 0
    for session, specs in enumerate(chunks, start=1):
        records = [build(spec) for spec in specs]
        events, _, rejects = live.parse(chunk(*mapped, *records, session=session), RECEIVED + session)
        assert all(event.symbol == "AAPL" and event.ts_recv == RECEIVED + session for event in events)
        assert all(isinstance(reject, Reject) and reject.source == "databento_live" for reject in rejects)
        for book in (e for e in events if isinstance(e, BookUpdate)):
            assert list(book.bids) == sorted(book.bids, reverse=True) and list(book.asks) == sorted(book.asks)
        trades_expected += sum(
            1
            for kind, action, side, instrument, price, size, _ in specs
            if action == "T" and instrument == AAPL and price != UNDEF_PRICE and size > 0
        )
    assert stats.trades == trades_expected
