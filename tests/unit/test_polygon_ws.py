"""Polygon WebSocket frames: real shapes, bad input, and fuzzing."""

from __future__ import annotations

import msgspec
from hypothesis import example, given, settings
from hypothesis import strategies as st

from orderflow_client.wire import Quote, Trade
from services.ingest.polygon_ws import parse_frame

TRADE = (
    b'{"ev":"T","sym":"AAPL","x":4,"i":"71675577320245","z":3,"p":187.43,"s":200,"c":[14,41],'
    b'"t":1700000000123,"q":1234,"trfi":202,"trft":1700000000121}'
)
QUOTE = (
    b'{"ev":"Q","sym":"AAPL","bx":12,"bp":187.42,"bs":3,"ax":11,"ap":187.44,"as":2,"c":[1],'
    b'"i":[604],"t":1700000000124,"q":5678,"z":3}'
)


def test_trade_and_quote_fields_map_exactly():
    parsed = parse_frame(b"[" + TRADE + b"," + QUOTE + b"]", ts_recv=1_700_000_000_130_000_000)
    assert parsed.rejects == [] and parsed.statuses == []
    trade, quote = parsed.events
    assert trade == Trade(
        symbol="AAPL",
        ts_event=1_700_000_000_123_000_000,
        ts_recv=1_700_000_000_130_000_000,
        ts_arrival=1_700_000_000_130_000_000,
        price=187_430_000_000,
        size=200,
        exchange=4,
        trade_id="71675577320245",
        trf_id=202,
        conditions=(14, 41),
        sequence=1234,
        tape=3,
    )
    assert isinstance(quote, Quote)
    assert (quote.bid_price, quote.bid_size, quote.ask_price, quote.ask_size) == (
        187_420_000_000,
        3,
        187_440_000_000,
        2,
    )
    assert quote.ts_event == 1_700_000_000_124_000_000  # ms → ns


def test_round_lot_quote_sizes_become_shares():
    quote = parse_frame(b"[" + QUOTE + b"]", 1, quote_size_multiplier=100).events[0]
    assert (quote.bid_size, quote.ask_size) == (300, 200)


def test_recorded_arrival_time_is_kept():
    trade = parse_frame(b"[" + TRADE + b"]", ts_recv=99, ts_arrival=42).events[0]
    assert (trade.ts_recv, trade.ts_arrival) == (99, 42)


def test_unknown_fields_are_tolerated():
    frame = TRADE[:-1] + b',"new_field":{"nested":[1,2]},"ds":"200.5"}'
    assert len(parse_frame(b"[" + frame + b"]", 1).events) == 1


def test_statuses_are_returned_separately():
    parsed = parse_frame(b'[{"ev":"status","status":"auth_success","message":"authenticated"}]', 1)
    assert parsed.events == [] and parsed.statuses[0].status == "auth_success"


def test_one_bad_element_does_not_lose_the_frame():
    frame = b"[" + TRADE + b',{"ev":"AM","sym":"AAPL"},{"ev":"Q","sym":"AAPL","bp":"x","ap":1,"t":1},' + QUOTE + b"]"
    parsed = parse_frame(frame, 1)
    assert [type(event) for event in parsed.events] == [Trade, Quote]
    assert [reject.code for reject in parsed.rejects] == ["unsupported_event", "invalid_event"]
    assert all(reject.where == "frame@1" for reject in parsed.rejects)


def test_malformed_and_wrong_shape_frames():
    assert parse_frame(b'[{"ev":"T"', 1).rejects[0].code == "malformed_json"
    assert parse_frame(b"{", 1).rejects[0].code == "malformed_json"
    assert parse_frame(b'{"ev":"T"}', 1).rejects[0].code == "not_an_array"
    huge = TRADE.replace(b'"p":187.43', b'"p":1e300')
    assert parse_frame(b"[" + huge + b"]", 1).rejects[0].code == "price_out_of_range"
    far_future = TRADE.replace(b'"t":1700000000123', b'"t":18446744073709551615')
    assert parse_frame(b"[" + far_future + b"]", 1).rejects[0].code == "timestamp_out_of_range"
    negative_size = TRADE.replace(b'"s":200', b'"s":-5')
    assert parse_frame(b"[" + negative_size + b"]", 1).rejects[0].code == "size_out_of_range"


@given(st.binary(max_size=300))
@example(b'"\x80"')  # a JSON string of invalid UTF-8: msgspec raised UnicodeDecodeError, not DecodeError
@settings(max_examples=400)
def test_random_bytes_never_raise(frame):
    """Any bytes give events, statuses or a reject with a code, never an exception; nothing at all only for an
    empty JSON array."""
    parsed = parse_frame(frame, 1)
    assert parsed.events or parsed.statuses or parsed.rejects or msgspec.json.decode(frame) == []
    assert all(reject.code for reject in parsed.rejects)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["ev", "sym", "p", "s", "t", "x", "i", "c", "bp", "ap", "bs", "as", "status", "z", "q"]),
            children,
            max_size=8,
        )
    ),
    max_leaves=20,
)
events = st.fixed_dictionaries(
    {"ev": st.sampled_from(["T", "Q", "status", "A", "XL2"])},
    optional={
        "sym": st.text(max_size=5),
        "p": json_values,
        "s": json_values,
        "t": json_values,
        "bp": json_values,
        "ap": json_values,
        "c": json_values,
        "status": json_values,
    },
)


@given(st.lists(events | json_values, max_size=6))
@settings(max_examples=400)
def test_random_json_frames_only_give_events_or_typed_rejects(elements):
    frame = msgspec.json.encode(elements)
    parsed = parse_frame(frame, 1)
    assert len(parsed.events) + len(parsed.statuses) + len(parsed.rejects) == len(elements)
    for event in parsed.events:
        msgspec.msgpack.encode(event)  # everything that passes is publishable
