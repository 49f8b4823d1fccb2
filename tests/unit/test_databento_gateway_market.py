"""What the local Databento gateway replays and writes: LOBSTER days as DBN records (held to the project's own
LOBSTER reader and to the raw rows), DBN files read back, a session's subscriptions, and the extra records."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import zipfile
from collections import Counter
from contextlib import ExitStack

import databento_dbn as dbn
import pytest
import zstandard

from orderflow_client.wire import BookUpdate, Trade
from services.ingest.lobster import read_lobster
from services.tools.databento_gateway_lobster import lobster_records
from services.tools.databento_gateway_market import Market, MarketRecord, instrument_id_of, load_market
from services.tools.databento_gateway_protocol import SubscriptionRequest, UnsubscribeRequest
from services.tools.databento_gateway_records import (
    heartbeat,
    malformed_record,
    session_metadata,
    with_ts_out,
)
from services.tools.databento_gateway_subscriptions import SubscriptionRefused, Subscriptions
from services.tools.dbn_writer import metadata_mapping
from services.tools.lobster_to_dbn import convert_mbp10, convert_top_of_book, open_lobster
from services.tools.lobster_to_mbo import STAND_IN_IDS, convert_mbo
from tests.support.market_days import amzn_day

AMZN = instrument_id_of("AMZN")


def decode(data: bytes, *, ts_out: bool = False) -> list:
    return dbn.DBNDecoder(has_metadata=False, ts_out=ts_out, input_version=3).write_and_decode(data)


@pytest.fixture(scope="module")
def amzn_records() -> dict[str, list]:
    """AMZN's level-1 sample day as trades, MBP-10 and MBO records (made once for the module)."""
    made: dict[str, list] = {"trades": [], "mbp-10": [], "mbo": []}
    for schema, record in lobster_records(amzn_day(), AMZN, frozenset(made)):
        made[schema].append(record)
    return made


def lobster_types() -> Counter:
    with zipfile.ZipFile(amzn_day()) as archive:
        name = next(name for name in archive.namelist() if "_message_" in name)
        rows = io.TextIOWrapper(archive.open(name), encoding="ascii")
        return Counter(int(line.split(",")[1]) for line in rows)


def test_the_trades_are_the_lobster_readers_with_databento_sides(amzn_records):
    expected = [event for event in read_lobster(amzn_day()) if isinstance(event, Trade)]
    trades = amzn_records["trades"]
    assert len(trades) == len(expected) > 1000
    sides = {"sell": "A", "buy": "B", "unknown": "N"}  # Databento's side of a trade is the aggressor's
    for record, trade in zip(trades, expected, strict=True):
        assert (record.ts_event, record.price, record.size) == (trade.ts_event, trade.price, trade.size)
        assert record.side == sides[trade.side]
        assert record.instrument_id == AMZN and record.publisher_id == 2 and record.action == "T"
    assert Counter(record.side for record in trades)["A"] > 100  # sells and buys both present


def test_each_book_the_lobster_reader_sees_is_an_mbp10_record(amzn_records):
    books = {
        (record.ts_event, record.levels[0].bid_px, record.levels[0].bid_sz, record.levels[0].ask_px)
        for record in amzn_records["mbp-10"]
    }
    updates = [event for event in read_lobster(amzn_day()) if isinstance(event, BookUpdate)]
    assert len(updates) > 10_000
    for update in updates:
        assert (update.ts_event, update.bids[0][0], update.bids[0][1], update.asks[0][0]) in books
    assert all(record.levels[1].bid_px == dbn.UNDEF_PRICE for record in amzn_records["mbp-10"])  # a 1-level day


NAME = "TEST_2012-06-21_34200000_57600000_{}_2.csv"
# time, type, order id, size, price ×10,000, direction | book after: ask, size, bid, size per level (2 levels)
DAY = [
    ("34200.000000001,1,101,100,1000000,1", "1001000,50,1000000,300,1002000,10,999000,20"),  # 200 shares unseen
    ("34200.5,4,101,40,1000000,1", "1001000,50,1000000,260,1002000,10,999000,20"),  # a seller takes 40 of 101
    ("34201,3,555,200,1000000,1", "1001000,50,1000000,60,1002000,10,999000,20"),  # an order never added leaves
    ("34202,5,0,30,1000500,-1", "1001000,50,1000000,60,1002000,10,999000,20"),  # a buyer hits a hidden offer
    ("34202,6,0,25,1000700,-1", "1001000,50,1000000,60,1002000,10,999000,20"),  # a cross
    ("34203,2,101,10,1000000,1", "1001000,50,1000000,50,1002000,10,999000,20"),  # 10 of 101 cancelled
    ("34204,7,0,0,-1,-1", "1001000,50,1000000,50,1002000,10,999000,20"),  # a halt
]


def lobster_day(folder, day=DAY):
    (folder / NAME.format("message")).write_text("".join(message + "\n" for message, _ in day))
    (folder / NAME.format("orderbook")).write_text("".join(book + "\n" for _, book in day))
    return folder / NAME.format("message")


def converted_records(path, folder, schema, **options) -> list:
    """The records ``orderflow convert-lobster`` writes for ``schema`` (its files decoded, metadata left out)."""
    with ExitStack() as stack:
        day = open_lobster(path, stack)
        convert = {"mbo": convert_mbo, "mbp-10": convert_mbp10, "mbp-1": convert_top_of_book}[schema]
        report = convert(day, folder, zstd=False, **options)
    return [dbn.DBNDecoder().write_and_decode(file.read_bytes())[1:] for file in report.files]


def test_every_schema_is_the_converters_records_with_the_gateways_instrument_id(tmp_path):
    path = lobster_day(tmp_path)
    made: dict[str, list] = {schema: [] for schema in ("mbo", "mbp-1", "mbp-10", "tbbo", "trades")}
    for schema, record in lobster_records(path, 77, frozenset(made)):
        made[schema].append(record)
    assert {record.instrument_id for records in made.values() for record in records} == {77}
    [mbo] = converted_records(path, tmp_path, "mbo")
    mbp10, trades = converted_records(path, tmp_path, "mbp-10")
    [mbp1] = converted_records(path, tmp_path, "mbp-1")
    expected = {"mbo": mbo, "mbp-10": mbp10, "trades": trades, "mbp-1": mbp1}
    expected["tbbo"] = [record for record in mbp1 if isinstance(record, dbn.MBP1Msg) and record.action == "T"]
    assert len(expected["tbbo"]) == len(trades) == 3 and any(isinstance(record, dbn.StatusMsg) for record in mbp10)
    assert sum(getattr(record, "order_id", 0) >= STAND_IN_IDS for record in mbo) >= 2  # the stand-ins it adds
    for schema, records in made.items():
        for record in records:
            record.instrument_id = 1
        assert [bytes(record) for record in records] == [bytes(record) for record in expected[schema]], schema


def test_message_and_book_files_of_different_lengths_are_refused_naming_both(tmp_path):
    path = lobster_day(tmp_path)
    book = tmp_path / NAME.format("orderbook")
    book.write_text("".join(line + "\n" for _, line in DAY[:-2]))
    with pytest.raises(ValueError, match=r"message_2\.csv and .*orderbook_2\.csv differ in length: row 6 of .*message"):
        list(lobster_records(path, 77, frozenset({"trades"})))
    with pytest.raises(ValueError, match=r"^TEST_.*message_2\.csv: .* differ in length"):
        load_market([path])
    lobster_day(tmp_path, [(message, book) for message, book in DAY[:3]] + [(DAY[3][0], DAY[3][1])])
    book.write_text("".join(line + "\n" for _, line in DAY))  # a book row more than messages
    with pytest.raises(ValueError, match=r"row 5 of .*orderbook_2\.csv has no row in .*message_2\.csv"):
        list(lobster_records(path, 77, frozenset({"mbo"})))


def test_two_lobster_days_are_one_market_of_two_instruments(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    lobster_day(first)
    other = second / NAME.format("message").replace("TEST", "OTHER")
    other.write_text("".join(message + "\n" for message, _ in DAY))
    (second / NAME.format("orderbook").replace("TEST", "OTHER")).write_text("".join(b + "\n" for _, b in DAY))
    market = load_market([first / NAME.format("message"), other], lobster_schemas=frozenset({"mbo"}))
    assert market.instruments == {"TEST": instrument_id_of("TEST"), "OTHER": instrument_id_of("OTHER")}
    assert instrument_id_of("TEST") != instrument_id_of("OTHER")
    by_instrument = Counter(record.instrument_id for record in market.records)
    assert by_instrument[instrument_id_of("TEST")] == by_instrument[instrument_id_of("OTHER")] > len(DAY)


def test_a_lobster_day_is_a_market_of_its_symbol():
    market = load_market([amzn_day()], lobster_schemas=frozenset({"trades"}))
    assert market.dataset == "XNAS.ITCH"
    assert market.instruments == {"AMZN": AMZN}
    assert market.schemas == {"trades"}
    assert [record.ts_index for record in market.records] == sorted(record.ts_index for record in market.records)


def write_dbn(path, records, *, mappings=True, compress=False):
    metadata = dbn.Metadata(
        dataset="XNAS.ITCH",
        start=records[0].ts_event,
        end=records[-1].ts_event + 1,
        stype_in=dbn.SType.RAW_SYMBOL if mappings else None,
        stype_out=dbn.SType.INSTRUMENT_ID,
        schema=dbn.Schema.TRADES,
        symbols=["AMZN"] if mappings else [],
        mappings=[metadata_mapping("AMZN", AMZN, dt.date(2012, 6, 21), dt.date(2012, 6, 22))] if mappings else [],
    )
    data = bytes(metadata.encode()) + b"".join(bytes(record) for record in records)
    path.write_bytes(zstandard.ZstdCompressor().compress(data) if compress else data)
    return path


@pytest.mark.parametrize("name", ["amzn.trades.dbn", "amzn.trades.dbn.zst"])
def test_a_dbn_file_replays_its_records_and_symbols(tmp_path, amzn_records, name):
    trades = amzn_records["trades"][:500]
    path = write_dbn(tmp_path / name, trades, compress=name.endswith(".zst"))
    market = load_market([path])
    assert market.dataset == "XNAS.ITCH" and market.instruments == {"AMZN": AMZN}
    assert [bytes(record.record) for record in market.records] == [bytes(record) for record in trades]
    assert {record.schema for record in market.records} == {"trades"}


def test_a_recorded_live_stream_names_its_symbols_by_its_mapping_messages(tmp_path, amzn_records):
    trades = amzn_records["trades"][:10]
    mapping = dbn.SymbolMappingMsg(
        publisher_id=2,
        instrument_id=AMZN,
        ts_event=trades[0].ts_event,
        stype_in=dbn.SType.RAW_SYMBOL,
        stype_in_symbol="AMZN",
        stype_out=dbn.SType.RAW_SYMBOL,
        stype_out_symbol="AMZN",
        start_ts=trades[0].ts_event,
        end_ts=dbn.UNDEF_TIMESTAMP,
    )
    path = write_dbn(tmp_path / "live.dbn", [mapping, *trades], mappings=False)
    market = load_market([path])
    assert market.instruments == {"AMZN": AMZN} and len(market.records) == 10


def test_files_that_cannot_be_replayed_are_named(tmp_path):
    text = tmp_path / "notes.csv"
    text.write_text("a,b\n")
    with pytest.raises(ValueError, match=r"notes\.csv is neither a DBN file"):
        load_market([text])
    garbage = tmp_path / "broken.dbn"
    garbage.write_bytes(b"XYZ" * 30)
    with pytest.raises(ValueError, match=r"broken\.dbn does not decode as DBN: .*invalid DBN header"):
        load_market([garbage])
    garbage.write_bytes(b"DBN\x03" + b"\xff" * 40)  # a header cut short
    with pytest.raises(ValueError, match=r"broken\.dbn holds no DBN metadata"):
        load_market([garbage])
    damaged = tmp_path / "damaged.dbn.zst"  # zstd's magic, then no zstd stream: the decoder raises RuntimeError
    damaged.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(range(40)))
    with pytest.raises(ValueError, match=r"damaged\.dbn\.zst does not decode as DBN"):
        load_market([damaged])


def trade(instrument_id: int, ts: int) -> object:
    return dbn.TradeMsg(
        publisher_id=2,
        instrument_id=instrument_id,
        ts_event=ts,
        ts_recv=ts,
        price=10**11,
        size=100,
        action=dbn.Action.TRADE,
        side=dbn.Side.BID,
        depth=0,
    )


@pytest.fixture
def subscriptions() -> Subscriptions:
    records = [
        MarketRecord(
            ts_index=ts,
            schema="trades",
            instrument_id=11 + ts % 2,
            record=trade(11 + ts % 2, ts),
            ts_event=ts,
            ts_recv=ts,
        )
        for ts in range(4)
    ]
    return Subscriptions(Market(dataset="XNAS.ITCH", records=records, instruments={"AMZN": 11, "AAPL": 12}), {11: 2})


def test_a_subscription_maps_its_symbols_and_reports_the_unknown_one(subscriptions):
    request = SubscriptionRequest(
        schema="trades", symbol_type="raw_symbol", symbols=("AMZN", "MSFT"), subscription_id=0
    )
    mapping, error, acknowledgement = decode(b"".join(subscriptions.apply(request)))
    assert (mapping.instrument_id, mapping.stype_in_symbol, mapping.stype_out_symbol) == (11, "AMZN", "AMZN")
    assert error.code == dbn.ErrorCode.SYMBOL_RESOLUTION_FAILED and "MSFT" in error.err
    assert acknowledgement.code == dbn.SystemCode.SUBSCRIPTION_ACK
    assert acknowledgement.msg == "Subscription request 0 for trades data succeeded"
    assert subscriptions.wants("trades", 11) and not subscriptions.wants("trades", 12)
    assert not subscriptions.wants("mbp-10", 11)


def test_a_subscription_in_parts_is_answered_once_whole(subscriptions):
    first = SubscriptionRequest(schema="trades", symbol_type="raw_symbol", symbols=("AMZN",), is_last=False)
    last = SubscriptionRequest(schema="trades", symbol_type="instrument_id", symbols=("12",))
    assert subscriptions.apply(first) == []
    assert not subscriptions.wants("trades", 11)
    last_same_type = dataclasses.replace(last, symbol_type="raw_symbol", symbols=("AAPL",))
    records = decode(b"".join(subscriptions.apply(last_same_type)))
    assert [type(record).__name__ for record in records] == ["SymbolMappingMsg", "SymbolMappingMsg", "SystemMsg"]
    assert subscriptions.wants("trades", 11) and subscriptions.wants("trades", 12)


def test_unsubscribing_removes_symbols_and_names_those_never_subscribed(subscriptions):
    subscriptions.apply(SubscriptionRequest(schema="trades", symbol_type="raw_symbol", symbols=("ALL_SYMBOLS",)))
    assert subscriptions.wants("trades", 12)
    subscriptions.apply(UnsubscribeRequest(schema="trades", symbol_type="raw_symbol", symbols=("ALL_SYMBOLS",)))
    assert not subscriptions.wants("trades", 12)
    subscriptions.apply(SubscriptionRequest(schema="trades", symbol_type="raw_symbol", symbols=("AMZN",)))
    records = decode(b"".join(subscriptions.apply(UnsubscribeRequest("trades", "raw_symbol", ("AMZN", "AAPL")))))
    assert (
        records[0].code == dbn.ErrorCode.INVALID_SUBSCRIPTION and records[0].err == "not subscribed to trades of AAPL"
    )
    assert records[1].code == dbn.SystemCode.UNSUBSCRIBE_ACK
    assert not subscriptions.wants("trades", 11)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"start": "0"}, "intraday replay"),
        ({"snapshot": True}, "snapshot"),
        ({"schema": "mbo"}, "schema mbo is not served here"),
        ({"symbol_type": "parent"}, "stype_in parent is not implemented"),
    ],
)
def test_what_the_gateway_cannot_serve_is_refused(subscriptions, change, message):
    request = SubscriptionRequest(schema="trades", symbol_type="raw_symbol", symbols=("AMZN",))
    with pytest.raises(SubscriptionRefused, match=message):
        subscriptions.apply(dataclasses.replace(request, **change))


def test_the_session_metadata_is_a_live_streams():
    metadata = dbn.Metadata.decode(session_metadata("XNAS.ITCH", 1_700_000_000_000_000_000, ts_out=True))
    assert (metadata.dataset, metadata.version, metadata.start) == ("XNAS.ITCH", 3, 1_700_000_000_000_000_000)
    assert metadata.schema is None and metadata.stype_in is None and metadata.ts_out


def test_ts_out_is_appended_to_a_record():
    (record,) = decode(with_ts_out(heartbeat(5), 77), ts_out=True)
    assert record.is_heartbeat() and record.ts_out == 77


def test_malformed_records_are_what_they_claim():
    (bad_side,) = decode(malformed_record("bad_side", 11, 2, 5))
    assert bad_side.side not in ("A", "B", "N") and bad_side.instrument_id == 11
    (no_price,) = decode(malformed_record("undefined_price", 11, 2, 5))
    assert no_price.price == dbn.UNDEF_PRICE
    with pytest.raises(dbn.DBNError):
        decode(malformed_record("unknown_record_type", 11, 2, 5))
    with pytest.raises(ValueError, match="unknown malformed kind"):
        malformed_record("garbled", 11, 2, 5)
