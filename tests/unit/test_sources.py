"""Offline sources on real samples: Polygon REST and flat files, LOBSTER,
AlgoSeek, captures; plus fuzzing that bad rows only give typed rejects."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from datetime import date
from pathlib import Path

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderflow_client.wire import BookUpdate, FeedStatus, Quote, Trade
from services.ingest import algoseek, capture, lobster, polygon_flat, polygon_rest_parse
from services.ingest.rejects import Reject
from services.ingest.sources import read_events
from tests.support.paths import shared_data

MOCKS = ("polygon", "rest-mocks", "mocks")


# --- Polygon REST --------------------------------------------------------------
def test_rest_trades_fixture_parses_exactly():
    body = shared_data(*MOCKS, "v3", "trades", "AAPL&limit=2.json").read_bytes()
    page = polygon_rest_parse.parse_trades_page(body, "AAPL", ts_recv=5, backfilled=True)
    assert page.rejects == [] and page.next_url is None
    first = page.events[0]
    assert first == Trade(
        symbol="AAPL",
        ts_event=1651181822461979400,
        ts_recv=5,
        ts_arrival=5,
        price=156_430_000_000,
        size=10,
        exchange=11,
        trade_id="183276",
        trf_id=3,
        conditions=(12, 37),
        sequence=7179341,
        tape=3,
        correction=1,
        backfilled=True,
    )
    assert page.events[1].exchange == 12


def test_rest_quotes_fixture_parses_with_pagination():
    body = shared_data(*MOCKS, "v3", "quotes", "AAPL.json").read_bytes()
    page = polygon_rest_parse.parse_quotes_page(body, "AAPL", ts_recv=1)
    rows = json.loads(body)["results"]
    assert len(page.events) == len(rows) == 10
    assert page.next_url and "cursor=" in page.next_url
    quote = page.events[0]
    assert (quote.bid_price, quote.ask_price, quote.bid_size, quote.ask_size) == (
        155_850_000_000,
        155_870_000_000,
        4,
        3,
    )
    assert quote.ts_event == rows[0]["sip_timestamp"]


def test_rest_bad_rows_and_bodies_are_rejects():
    page = polygon_rest_parse.parse_trades_page(b'{"results":[{"price":"x"},{"price":1.5,"sip_timestamp":-1}]}', "A", 1)
    assert [r.code for r in page.rejects] == ["invalid_row", "value_out_of_range"]
    assert polygon_rest_parse.parse_trades_page(b"<html>", "A", 1).rejects[0].code == "malformed_response"


@given(st.binary(max_size=200))
def test_rest_random_bodies_never_raise(body):
    polygon_rest_parse.parse_trades_page(body, "A", 1)
    polygon_rest_parse.parse_quotes_page(body, "A", 1)


# --- Polygon flat files --------------------------------------------------------
TRADE_HEADER = (
    "ticker,conditions,correction,exchange,id,participant_timestamp,price,sequence_number,sip_timestamp,size,tape,"
    "trf_id,trf_timestamp"
)
QUOTE_HEADER = (
    "ticker,ask_exchange,ask_price,ask_size,bid_exchange,bid_price,bid_size,conditions,indicators,"
    "participant_timestamp,sequence_number,sip_timestamp,tape,trf_timestamp"
)


def _flat_files(tmp_path: Path) -> tuple[Path, Path]:
    """Flat files built from the real REST rows (same field names and values)."""
    trades = json.loads(shared_data(*MOCKS, "v3", "trades", "AAPL&limit=2.json").read_bytes())["results"]
    quotes = json.loads(shared_data(*MOCKS, "v3", "quotes", "AAPL.json").read_bytes())["results"]
    trade_lines = (
        [TRADE_HEADER]
        + [
            f'AAPL,"{",".join(map(str, r["conditions"]))}",{r["correction"]},{r["exchange"]},{r["id"]},'
            f"{r['participant_timestamp']},"
            f"{r['price']},{r['sequence_number']},{r['sip_timestamp'] + i},{r['size']},{r['tape']},"
            f"{r['trf_id']},{r['trf_timestamp']}"
            for i, r in enumerate(trades)
        ]
        + ["MSFT,,0,12,9,1,300.5,1,1651181822461979401,5,3,0,0"]
    )
    quote_lines = [QUOTE_HEADER] + [
        f"AAPL,{r['ask_exchange']},{r['ask_price']},{r['ask_size']},{r['bid_exchange']},{r['bid_price']},{r['bid_size']},"
        f",,{r['participant_timestamp']},{r['sequence_number']},{r['sip_timestamp']},{r['tape']},"
        for r in sorted(quotes, key=lambda r: r["sip_timestamp"])
    ]
    trade_path = tmp_path / "2022-04-28_trades.csv.gz"
    with gzip.open(trade_path, "wt") as out:
        out.write("\n".join(trade_lines) + "\n")
    quote_path = tmp_path / "2022-05-10_quotes.csv"
    quote_path.write_text("\n".join(quote_lines) + "\n")
    return trade_path, quote_path


def test_flat_files_parse_by_header_and_filter_by_symbol(tmp_path):
    trade_path, quote_path = _flat_files(tmp_path)
    trades = list(polygon_flat.read_flat_file(trade_path, "AAPL"))
    assert [t.price for t in trades] == [156_430_000_000, 157_430_000_000]
    assert trades[0].conditions == (12, 37) and trades[0].correction == 1 and trades[0].trf_id == 3
    assert len(list(polygon_flat.read_flat_file(trade_path, None))) == 3
    quotes = list(polygon_flat.read_flat_file(quote_path, "AAPL"))
    assert len(quotes) == 10 and all(isinstance(q, Quote) for q in quotes)
    merged = list(read_events("polygon-flat", [trade_path, quote_path], symbol="AAPL"))
    assert [e.ts_event for e in merged] == sorted(e.ts_event for e in merged)


def test_flat_file_columns_in_any_order(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("sip_timestamp,size,price,ticker\n1651181822461979400,100,12.5,XYZ\n")
    (trade,) = polygon_flat.read_flat_file(path, "XYZ")
    assert (trade.price, trade.size, trade.ts_event) == (12_500_000_000, 100, 1651181822461979400)


def test_flat_file_bad_rows_and_headers(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(
        "ticker,price,size,sip_timestamp\nA,abc,1,5\nA,1e300,1,5\nA,1.0,1e300,5\nA,1.0,5,99999999999999999999\nA,1.0,5,7\n"
    )
    items = list(polygon_flat.read_flat_file(path, "A"))
    assert [i.code for i in items if isinstance(i, Reject)] == ["invalid_row"] * 4
    assert [i.ts_event for i in items if isinstance(i, Trade)] == [7]
    other = tmp_path / "o.csv"
    other.write_text("a,b\n1,2\n")
    rejected = list(polygon_flat.read_flat_file(other, None))
    assert rejected[0].code == "unknown_header"


@given(st.lists(st.lists(st.text(alphabet='0123456789.,-eE xAZ"', max_size=12), min_size=1, max_size=14), max_size=8))
@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_flat_file_random_rows_never_raise(tmp_path, rows):
    path = tmp_path / "fuzz.csv"
    path.write_text(TRADE_HEADER + "\n" + "\n".join(",".join(row) for row in rows) + "\n")
    for item in polygon_flat.read_flat_file(path, None):
        if not isinstance(item, Reject):
            msgspec.msgpack.encode(item)


# --- LOBSTER -------------------------------------------------------------------
def test_lobster_amzn_day_counts_and_first_events():
    path = shared_data("lobster", "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip")
    counts = {"trade": 0, "book": 0, "reject": 0}
    first_book = None
    trade_sides = {"buy": 0, "sell": 0}
    for event in lobster.read_lobster(path):
        if isinstance(event, Trade):
            counts["trade"] += 1
            trade_sides[event.side] += 1
            assert event.side_source == "feed" and event.exchange == lobster.NASDAQ
        elif isinstance(event, BookUpdate):
            counts["book"] += 1
            first_book = first_book or event
        elif isinstance(event, Reject):
            counts["reject"] += 1
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if "_message_" in n)
        kinds = [line.split(",")[1] for line in io.TextIOWrapper(archive.open(name), encoding="ascii")]
    assert counts["trade"] == sum(kind in ("4", "5", "6") for kind in kinds) == 11_419
    assert counts["book"] == 153_491 and counts["reject"] == 0
    assert trade_sides["buy"] > 0 and trade_sides["sell"] > 0
    # 09:30:00 New York (EDT) is 13:30:00 UTC on 2012-06-21
    assert first_book.ts_event // 1_000_000_000 >= 1_340_285_400
    assert len(first_book.bids) == len(first_book.asks) == 5
    assert first_book.asks[0][0] > first_book.bids[0][0]


def test_lobster_plain_csv_pair_matches_zip(tmp_path):
    path = shared_data("lobster", "LOBSTER_SampleFile_AAPL_2012-06-21_1.zip")
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.endswith(".csv"):
                lines = io.TextIOWrapper(archive.open(name), encoding="ascii").readlines()[:500]
                (tmp_path / name).write_text("".join(lines))
    message = next(tmp_path.glob("*_message_*.csv"))
    from_csv = list(lobster.read_lobster(message))
    from_zip = []
    for event in lobster.read_lobster(path):
        if len(from_zip) == len(from_csv):
            break
        from_zip.append(event)
    assert from_csv == from_zip and len(from_csv) > 400


def test_lobster_time_conversion_is_exact_and_dst_aware():
    assert lobster.seconds_text_to_ns("34200.004241176") == 34_200_004_241_176
    assert lobster.seconds_text_to_ns("43002.632812672004") == 43_002_632_812_672  # sub-ns digits dropped
    assert lobster.midnight_ns(date(2012, 6, 21)) == 1_340_251_200 * 10**9  # EDT, UTC-4
    assert lobster.midnight_ns(date(2012, 12, 21)) == 1_356_066_000 * 10**9  # EST, UTC-5


def test_lobster_halts_crosses_and_bad_rows(tmp_path):
    message = tmp_path / "XYZ_2012-06-21_34200000_57600000_message_1.csv"
    book = tmp_path / "XYZ_2012-06-21_34200000_57600000_orderbook_1.csv"
    message.write_text(
        "34200.1,1,1,100,1000000,1\n"
        "34200.2,4,1,100,1000000,1\n"  # a buy order executed: seller-initiated
        "34200.3,6,0,500,1000100,-1\n"  # cross trade
        "36023,7,0,0,-1,-1\n"
        "36723,7,0,0,1,-1\n"
        "oops,1,1,1,1,1\n"
        "36800.5,9,1,1,1,1\n"
    )
    book.write_text("1000200,300,1000000,100\n1000200,300,-9999999999,0\n" + "1000200,300,-9999999999,0\n" * 5)
    events = list(lobster.read_lobster(message))
    kinds = [type(e).__name__ if not isinstance(e, Reject) else e.code for e in events]
    assert kinds == [
        "BookUpdate",
        "Trade",
        "BookUpdate",
        "Trade",
        "FeedStatus",
        "FeedStatus",
        "invalid_row",
        "unknown_message_type",
    ]
    assert events[1].side == "sell" and events[1].price == 100_000_000_000
    assert events[2].bids == ()  # the bid level emptied: dropped
    assert events[3].side == "unknown" and events[3].conditions == (lobster.CROSS_TRADE_CONDITION,)
    assert (events[4].state, events[5].state) == ("trading_halted", "trading_resumed")


def test_lobster_files_of_different_lengths_lose_no_row_silently(tmp_path):
    message = tmp_path / "XYZ_2012-06-21_34200000_57600000_message_1.csv"
    book = tmp_path / "XYZ_2012-06-21_34200000_57600000_orderbook_1.csv"
    message.write_text("34200.1,1,1,100,1000000,1\n34200.2,1,2,100,1000000,1\n34200.3,1,3,100,1000000,1\n")
    book.write_text("1000200,300,1000000,100\n")
    rejects = [e for e in lobster.read_lobster(message) if isinstance(e, Reject)]
    assert [(r.code, r.where.rsplit(":", 1)[1]) for r in rejects] == [("unmatched_row", "2"), ("unmatched_row", "3")]
    assert rejects[0].detail == "row 2 has no row in the orderbook file"
    book.write_text("1000200,300,1000000,100\n" * 3)
    message.write_text("34200.1,1,1,100,1000000,1\n")
    extra_book_rows = [e for e in lobster.read_lobster(message) if isinstance(e, Reject)]
    assert [r.detail for r in extra_book_rows] == [f"row {n} has no row in the message file" for n in (2, 3)]


@given(st.lists(st.text(alphabet="0123456789.,-", max_size=40), min_size=1, max_size=10))
@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_lobster_random_rows_never_raise(tmp_path, lines):
    message = tmp_path / "XYZ_2012-06-21_34200000_57600000_message_1.csv"
    book = tmp_path / "XYZ_2012-06-21_34200000_57600000_orderbook_1.csv"
    message.write_text("\n".join(lines) + "\n")
    book.write_text("\n".join(reversed(lines)) + "\n")
    for item in lobster.read_lobster(message):
        if not isinstance(item, Reject):
            msgspec.msgpack.encode(item)


# --- AlgoSeek ------------------------------------------------------------------
def test_algoseek_condition_flags_map_to_polygon_ids():
    assert algoseek.conditions_from_flags("1") == (0,)
    assert algoseek.conditions_from_flags("20000020") == (14, 41)  # ISO + trade-through exempt
    assert algoseek.conditions_from_flags("2000") == (12,)  # extended hours → Form T
    assert algoseek.conditions_from_flags("4800") == (30, 32)  # sold last + out of sequence
    assert algoseek.conditions_from_flags("100000") == (2,)  # average price
    assert algoseek.conditions_from_flags("40000000") == ()  # undocumented flag ignored


def test_algoseek_real_day_merges_trades_and_quotes_in_time_order():
    folder = shared_data("algoseek", "bac")
    events = list(read_events("algoseek", [folder / "20131007_trade.zip", folder / "20131007_quote.zip"]))
    trades = [e for e in events if isinstance(e, Trade)]
    quotes = [e for e in events if isinstance(e, Quote)]
    assert not [e for e in events if isinstance(e, Reject)]
    assert len(trades) == 88_172 and len(quotes) > 50_000
    assert [e.ts_event for e in events] == sorted(e.ts_event for e in events)
    assert all(t.symbol == "BAC" and t.side_source == "none" for t in trades[:100])
    crossed = [q for q in quotes if q.bid_price and q.ask_price and q.bid_price > q.ask_price]
    regular = [q for q in quotes if 0 < q.bid_price < q.ask_price]
    assert crossed == [] and len(regular) > 0.95 * len(quotes)


def test_algoseek_quote_rows_set_one_nbbo_side_each(tmp_path):
    path = tmp_path / "20131007_xyz_Quote_Tick.csv"
    path.write_text(
        "34200000,100000,500,0,0,P,1,0\n"  # bid 10.00 x 500 at P
        "34200001,0,0,100200,300,N,1,0\n"  # ask 10.02 x 300 at N
        "34200002,99900,700,0,0,K,1,0\n"  # the best bid is now 9.99 x 700 at K
        "34200002,0,0,100200,300,N,1,0\n"  # unchanged ask: no new quote
        "34200004,0,0,100100,100,T,1,1\n"  # suspicious: rejected
    )
    items = list(algoseek.read_algoseek_file(path))
    quotes = [i for i in items if isinstance(i, Quote)]
    assert [(q.bid_price, q.bid_size, q.ask_price, q.ask_size, q.bid_exchange, q.ask_exchange) for q in quotes] == [
        (10_000_000_000, 500, 0, 0, 11, 0),
        (10_000_000_000, 500, 10_020_000_000, 300, 11, 10),
        (9_990_000_000, 700, 10_020_000_000, 300, 8, 10),
    ]
    assert [i.code for i in items if isinstance(i, Reject)] == ["vendor_suspicious"]


# --- captures ------------------------------------------------------------------
def test_capture_round_trip_and_bad_lines(tmp_path):
    path = tmp_path / "session.capture.gz"
    with gzip.open(path, "wb") as out:
        out.write(
            capture.format_line(
                1_700_000_000_125_000_000, b'[{"ev":"T","sym":"AAPL","p":1.5,"s":100,"t":1700000000123}]'
            )
        )
        out.write(b"garbage-without-timestamp\n")
        out.write(capture.format_line(1_700_000_000_126_000_000, '[{"ev":"status",\n"status":"connected"}]'))
    lines = list(capture.read_capture(path))
    assert lines[0] == capture.CaptureLine(
        1_700_000_000_125_000_000, b'[{"ev":"T","sym":"AAPL","p":1.5,"s":100,"t":1700000000123}]'
    )
    assert isinstance(lines[1], Reject) and lines[1].code == "malformed_capture_line"
    assert lines[2].frame == b'[{"ev":"status", "status":"connected"}]'  # a line break became a space
    (trade,) = [e for e in read_events("capture", [path]) if isinstance(e, Trade)]
    assert (trade.ts_arrival, trade.ts_event) == (1_700_000_000_125_000_000, 1_700_000_000_123_000_000)


def test_halts_are_feed_status_events():
    status = FeedStatus(source="lobster", state="trading_halted", ts_event=1, ts_recv=1, symbols=("X",))
    assert status.symbols == ("X",)
