"""Market events packed into stream entries and read back: each stream's events in order, at most
``EVENTS_PER_ENTRY`` an entry, a lone event in an entry of its own; what a market-stream entry may hold."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orderflow_client.bus.entries import EVENTS_FIELD, pack_market_events
from orderflow_client.bus.streams import BusEntry
from orderflow_client.errors import WireDecodeError
from orderflow_client.wire import (
    EVENTS_PER_ENTRY,
    FeedStatus,
    MarketEvents,
    Quote,
    Trade,
    decode,
    encode,
    unbatched,
)
from services.detector.market_entries import Misplaced, market_events


def trade(symbol: str, number: int) -> Trade:
    return Trade(
        symbol=symbol, ts_event=number, ts_recv=number, ts_arrival=number, price=10_000_000_000 + number, size=100
    )


def quote(symbol: str, number: int) -> Quote:
    return Quote(
        symbol=symbol,
        ts_event=number,
        ts_recv=number,
        ts_arrival=number,
        bid_price=9_990_000_000,
        bid_size=100,
        ask_price=10_010_000_000,
        ask_size=300,
    )


def read_back(entries: list[tuple[str, bytes, bytes]]) -> dict[str, list]:
    streams: dict[str, list] = {}
    for stream, field, payload in entries:
        message = decode(payload)
        assert field == (EVENTS_FIELD if isinstance(message, MarketEvents) else field)
        streams.setdefault(stream, []).extend(unbatched(message))
    return streams


def test_a_lone_event_keeps_an_entry_of_its_own_under_its_own_field():
    event = trade("AAPL", 1)
    assert pack_market_events([("md:{AAPL}", event)]) == [("md:{AAPL}", b"trade", encode(event))]


def test_a_streams_events_fill_entries_of_64_in_order():
    events = [trade("AAPL", n) if n % 3 else quote("AAPL", n) for n in range(2 * EVENTS_PER_ENTRY + 2)]
    entries = pack_market_events([("md:{AAPL}", event) for event in events])
    assert [len(unbatched(decode(payload))) for _s, _f, payload in entries] == [64, 64, 2]
    assert {field for _s, field, _p in entries} == {EVENTS_FIELD}
    assert read_back(entries) == {"md:{AAPL}": events}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.booleans()), max_size=300),
    st.integers(min_value=1, max_value=70),
)
def test_any_interleaving_reads_back_stream_by_stream_in_order(choices, per_entry):
    pairs = [
        (f"md:{{{symbol}}}", trade(symbol, n) if is_trade else quote(symbol, n))
        for n, (symbol, is_trade) in enumerate(choices)
    ]
    entries = pack_market_events(pairs, per_entry=per_entry)
    expected: dict[str, list] = {}
    for stream, event in pairs:
        expected.setdefault(stream, []).append(event)
    assert read_back(entries) == expected
    assert all(len(unbatched(decode(payload))) <= per_entry for _s, _f, payload in entries)
    for stream, events in expected.items():  # as few entries as the cap allows
        assert sum(1 for s, _f, _p in entries if s == stream) == -(-len(events) // per_entry)


def entry(field: bytes, message) -> BusEntry:
    return BusEntry("md:{AAPL}", b"1-0", encode(message), field)


def test_a_market_stream_entry_gives_its_events_or_says_why_it_is_poison():
    pair = MarketEvents(events=(quote("AAPL", 1), trade("AAPL", 2)))
    assert market_events(pair, entry(b"events", pair), "AAPL") == pair.events
    assert market_events(pair.events[1], entry(b"trade", pair.events[1]), "AAPL") == (pair.events[1],)
    status = FeedStatus(source="polygon", state="gap", ts_event=3, ts_recv=3, symbols=("AAPL", "MSFT"))
    with_status = MarketEvents(events=(trade("AAPL", 2), status))
    assert market_events(with_status, entry(b"events", with_status), "AAPL") == with_status.events
    stray = MarketEvents(events=(trade("AAPL", 1), trade("MSFT", 2)))
    assert market_events(stray, entry(b"events", stray), "AAPL") == Misplaced(
        "wrong_symbol", "an event of MSFT on the stream of AAPL"
    )
    assert market_events(pair, entry(b"trade", pair), "AAPL") == Misplaced(
        "wrong_field", "field 'trade' holds several events"
    )
    other = FeedStatus(source="polygon", state="gap", ts_event=3, ts_recv=3, symbols=("MSFT",))
    assert market_events(other, entry(b"status", other), "AAPL").code == "wrong_symbol"


def test_only_market_events_decode_inside_an_events_entry():
    inner_alert = msgspec.msgpack.encode({"type": "events", "events": [{"type": "alert", "id": "x"}]})
    with pytest.raises(WireDecodeError):
        decode(inner_alert)
