"""Wire types: every type round-trips through msgpack and JSON; bad payloads
raise exactly one typed error."""

from __future__ import annotations

import contextlib

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orderflow_client.errors import WireDecodeError
from orderflow_client.wire import (
    BookUpdate,
    ExitRecommendation,
    FeedStatus,
    OrderFlowAlert,
    Quote,
    Trade,
    decode,
    encode,
    from_json,
    to_json,
)

symbols = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ.", min_size=1, max_size=6)
nanos = st.integers(min_value=0, max_value=2**63 - 1)
prices = st.integers(min_value=-(2**62), max_value=2**62)
sizes = st.integers(min_value=0, max_value=2**40)
small_ints = st.integers(min_value=0, max_value=2**31)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
evidence = st.dictionaries(
    st.text(max_size=12),
    st.one_of(st.integers(-(2**62), 2**62), finite_floats, st.text(max_size=20), st.booleans()),
    max_size=5,
)
levels = st.lists(st.tuples(prices, sizes), max_size=10).map(tuple)

trades = st.builds(
    Trade,
    symbol=symbols,
    ts_event=nanos,
    ts_recv=nanos,
    ts_arrival=nanos,
    price=prices,
    size=sizes,
    exchange=small_ints,
    trade_id=st.text(max_size=20),
    trf_id=small_ints,
    conditions=st.lists(small_ints, max_size=4).map(tuple),
    sequence=small_ints,
    tape=small_ints,
    correction=small_ints,
    side=st.sampled_from(["buy", "sell", "unknown"]),
    side_source=st.sampled_from(["feed", "quote", "tick", "none"]),
    backfilled=st.booleans(),
)
quotes = st.builds(
    Quote,
    symbol=symbols,
    ts_event=nanos,
    ts_recv=nanos,
    ts_arrival=nanos,
    bid_price=prices,
    bid_size=sizes,
    ask_price=prices,
    ask_size=sizes,
    bid_exchange=small_ints,
    ask_exchange=small_ints,
    conditions=st.lists(small_ints, max_size=4).map(tuple),
    sequence=small_ints,
    tape=small_ints,
)
books = st.builds(
    BookUpdate,
    symbol=symbols,
    ts_event=nanos,
    ts_recv=nanos,
    ts_arrival=nanos,
    bids=levels,
    asks=levels,
    venue=st.text(max_size=8),
)
statuses = st.builds(
    FeedStatus,
    source=st.text(max_size=10),
    state=st.sampled_from(
        [
            "connected",
            "disconnected",
            "gap",
            "auth_failed",
            "watchdog_silence",
            "trading_halted",
            "trading_resumed",
            "monitoring_halted",
            "monitoring_resumed",
        ]
    ),
    ts_event=nanos,
    ts_recv=nanos,
    symbols=st.lists(symbols, max_size=3).map(tuple),
    code=st.text(max_size=10),
    detail=st.text(max_size=30),
    gap_start_ns=nanos,
    gap_end_ns=nanos,
)
alerts = st.builds(
    OrderFlowAlert,
    id=st.text(min_size=1, max_size=30),
    symbol=symbols,
    alert_type=st.sampled_from(["large_seller", "red_burst"]),
    severity=st.sampled_from(["warning", "critical"]),
    source=st.sampled_from(["tape", "book"]),
    ts_event=nanos,
    ts_recv=nanos,
    timestamp_utc=st.text(max_size=32),
    order_size=sizes,
    price_level=prices,
    volume_ratio=finite_floats,
    sell_ratio=finite_floats,
    two_sided=st.booleans(),
    session=st.sampled_from(["pre_market", "regular", "after_hours", "closed"]),
    evidence=evidence,
    latency_ms=finite_floats,
)
exits = st.builds(
    ExitRecommendation,
    id=st.text(min_size=1, max_size=30),
    symbol=symbols,
    trigger=st.sampled_from(["large_sellers", "red_burst"]),
    ts_event=nanos,
    ts_recv=nanos,
    timestamp_utc=st.text(max_size=32),
    alert_ids=st.lists(st.text(max_size=20), max_size=5).map(tuple),
    reasoning=st.text(max_size=80),
    severity=st.sampled_from(["warning", "critical"]),
    evidence=evidence,
    latency_ms=finite_floats,
)
any_message = st.one_of(trades, quotes, books, statuses, alerts, exits)


@given(any_message)
@settings(max_examples=300)
def test_every_type_round_trips_through_msgpack(message):
    decoded = decode(encode(message))
    assert decoded == message
    assert type(decoded) is type(message)


@given(any_message)
@settings(max_examples=300)
def test_every_type_round_trips_through_json(message):
    assert from_json(to_json(message)) == message


@given(st.binary(max_size=200))
@settings(max_examples=500)
def test_random_bytes_raise_only_the_typed_error(payload):
    with contextlib.suppress(WireDecodeError):
        decode(payload)


def test_unknown_type_tag_is_a_typed_error():
    payload = msgspec.msgpack.encode({"type": "level3", "symbol": "AAPL"})
    with pytest.raises(WireDecodeError, match="undecodable"):
        decode(payload)


def test_missing_required_field_is_a_typed_error():
    payload = msgspec.msgpack.encode({"type": "trade", "symbol": "AAPL", "ts_event": 1})
    with pytest.raises(WireDecodeError, match="missing required field"):
        decode(payload)


def test_wrong_field_type_is_a_typed_error():
    payload = msgspec.msgpack.encode(
        {
            "type": "quote",
            "symbol": "AAPL",
            "ts_event": 1,
            "ts_recv": 1,
            "ts_arrival": 1,
            "bid_price": 1.5,
            "bid_size": 1,
            "ask_price": 2,
            "ask_size": 1,
        }
    )
    with pytest.raises(WireDecodeError):
        decode(payload)


def test_structs_are_frozen():
    trade = Trade(symbol="AAPL", ts_event=1, ts_recv=2, ts_arrival=2, price=1, size=1)
    with pytest.raises(AttributeError):
        trade.price = 2  # type: ignore[misc]


def test_json_is_compact_and_tagged():
    trade = Trade(symbol="AAPL", ts_event=1, ts_recv=2, ts_arrival=2, price=187_430_000_000, size=100)
    text = to_json(trade).decode()
    assert text.startswith('{"type":"trade","symbol":"AAPL"')
    assert '"price":187430000000' in text


def test_duplicate_prints_share_a_dedup_key_and_others_do_not():
    first = Trade(
        symbol="AAPL", ts_event=1, ts_recv=2, ts_arrival=2, price=1, size=1, exchange=4, trade_id="7", trf_id=201
    )
    again = Trade(
        symbol="AAPL", ts_event=1, ts_recv=9, ts_arrival=9, price=1, size=1, exchange=4, trade_id="7", trf_id=201
    )
    other_venue = Trade(
        symbol="AAPL", ts_event=1, ts_recv=2, ts_arrival=2, price=1, size=1, exchange=11, trade_id="7", trf_id=201
    )
    assert first.dedup_key == again.dedup_key
    assert first.dedup_key != other_venue.dedup_key
