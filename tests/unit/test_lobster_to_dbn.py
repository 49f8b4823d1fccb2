"""A LOBSTER day → DBN files: a hand-made day with each message type, converted to MBP-10 + trades and to MBO,
then read back as ``--format dbn`` and compared with ``--format lobster`` event for event. The shared days are
converted in tests/integration/test_dbn_files.py."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest
import typer
from databento_dbn import F_LAST, F_SNAPSHOT, UNDEF_PRICE
from typer.testing import CliRunner

from orderflow_client.wire import FeedStatus, OrderUpdate
from services.cli.dbn_commands import convert_lobster
from services.ingest.databento_files import decoded_records, read_dbn
from services.ingest.lobster import read_lobster
from services.tools.lobster_to_dbn import ConversionReport, convert_mbp10, convert_top_of_book, open_lobster
from services.tools.lobster_to_mbo import STAND_IN_IDS, convert_mbo

NAME = "TEST_2012-06-21_34200000_57600000_{}_2.csv"
# time, type, order id, size, price ×10,000, direction | book after: ask, size, bid, size per level (2 levels)
DAY = [
    ("34200.000000001,1,101,100,1000000,1", "1001000,50,1000000,300,1002000,10,999000,20"),  # 200 shares unseen
    ("34200.5,4,101,40,1000000,1", "1001000,50,1000000,260,1002000,10,999000,20"),  # a seller takes 40 of 101
    ("34201,3,555,200,1000000,1", "1001000,50,1000000,60,1002000,10,999000,20"),  # an order never added leaves
    ("34202,5,0,30,1000500,-1", "1001000,50,1000000,60,1002000,10,999000,20"),  # a buyer hits a hidden offer
    ("34203,2,101,10,1000000,1", "1001000,50,1000000,50,1002000,10,999000,20"),  # 10 of 101 cancelled
    ("34203.5,1,102,70,1003000,-1", "1001000,50,1000000,50,1002000,10,999000,20"),  # beyond the 2 levels shown
    ("34204,3,103,50,1001000,-1", "1002000,10,1000000,50,1003000,70,999000,20"),  # 103 never added; 102 in view
    ("34205,7,0,0,-1,-1", "1002000,10,1000000,50,1003000,70,999000,20"),  # a halt
]


def lobster_day(folder: Path) -> Path:
    (folder / NAME.format("message")).write_text("".join(message + "\n" for message, _ in DAY))
    (folder / NAME.format("orderbook")).write_text("".join(book + "\n" for _, book in DAY))
    return folder / NAME.format("message")


def convert(path: Path, folder: Path, schema: str, *, zstd: bool = False) -> ConversionReport:
    with ExitStack() as stack:
        day = open_lobster(path, stack)
        return (convert_mbo if schema == "mbo" else convert_mbp10)(day, folder, zstd=zstd)


def without_statuses(events: list) -> list:
    return [event for event in events if not isinstance(event, FeedStatus)]


def test_mbp10_and_trades_read_back_as_the_lobster_events(tmp_path):
    path = lobster_day(tmp_path)
    report = convert(path, tmp_path, "mbp-10", zstd=True)
    assert [file.name for file in report.files] == ["TEST_2012-06-21_mbp-10.dbn.zst", "TEST_2012-06-21_trades.dbn.zst"]
    assert (report.rows, report.trades, report.halts, report.invalid_rows) == (8, 2, 1, 0)
    lobster = list(read_lobster(path))
    dbn = list(read_dbn(report.files[:1]))
    assert without_statuses(dbn) == without_statuses(lobster) and len(dbn) == len(lobster) == 8
    [halt] = [event for event in dbn if isinstance(event, FeedStatus)]
    assert (halt.state, halt.ts_event) == ("trading_halted", lobster[-1].ts_event)
    # the trades file holds the same prints (read together, each is dropped once as a duplicate by its id)
    trades = list(read_dbn(report.files[1:]))
    assert trades == [event for event in lobster if type(event).__name__ == "Trade"]
    assert [(trade.side, trade.trade_id) for trade in trades] == [("sell", "2"), ("buy", "4")]


def test_mbo_records_are_the_orders_with_stand_ins_for_what_lobster_never_showed(tmp_path):
    path = lobster_day(tmp_path)
    report = convert(path, tmp_path, "mbo")
    records = list(decoded_records(report.files[0]))[1:]  # after the metadata
    mbo = [
        (record.sequence, str(record.action), str(record.side), record.order_id, record.price // 10**7, record.size)
        # prices in cents
        for record in records
        if type(record).__name__ == "MBOMsg"
    ]
    stand_in = STAND_IN_IDS
    assert mbo == [
        (0, "R", "N", 0, UNDEF_PRICE // 10**7, 0),  # clear the book (no price)
        (1, "A", "B", 101, 10000, 100),
        (1, "A", "B", stand_in, 10000, 200),  # the 200 shares of orders before the open
        (1, "A", "B", stand_in + 1, 9990, 20),
        (1, "A", "A", stand_in + 2, 10010, 50),
        (1, "A", "A", stand_in + 3, 10020, 10),
        (2, "T", "A", 0, 10000, 40),  # a sell aggressor
        (2, "F", "B", 101, 10000, 40),
        (2, "C", "B", 101, 10000, 40),
        (3, "C", "B", stand_in, 10000, 200),  # order 555 was one of the unseen: its shares leave the stand-in
        (4, "T", "B", 0, 10005, 30),
        (5, "C", "B", 101, 10000, 10),
        (6, "A", "A", 102, 10030, 70),
        (7, "C", "A", stand_in + 2, 10010, 50),  # 103 never added: the stand-in at $100.10 goes
    ]
    flags = [record.flags for record in records if type(record).__name__ == "MBOMsg"]
    assert flags[0] == F_SNAPSHOT and flags[2] == F_SNAPSHOT and flags[5] == F_SNAPSHOT | F_LAST
    assert (report.messages_on_unknown_orders, report.stand_in_shares_added, report.shares_reconciled_away) == (
        2,
        280,
        0,
    )
    # rebuilt to the file's two levels, the book is LOBSTER's after every message
    lobster = list(read_lobster(path))
    events = without_statuses(list(read_dbn(report.files, depth=2)))
    assert [event for event in events if type(event) is not OrderUpdate] == without_statuses(lobster)
    # and the ask side's orders travel as order events (the bid side's do not)
    assert [
        (event.action, event.order_id, event.price // 10**7, event.size, event.remaining)
        for event in events
        if type(event) is OrderUpdate
    ] == [
        ("clear", 0, 0, 0, 0),
        ("add", stand_in + 2, 10010, 50, 50),
        ("add", stand_in + 3, 10020, 10, 10),
        ("add", 102, 10030, 70, 70),
        ("cancel", stand_in + 2, 10010, 50, 0),
    ]


def test_the_command_writes_the_files_and_refuses_a_bad_schema(tmp_path):
    path = lobster_day(tmp_path)
    app = typer.Typer()
    app.command()(convert_lobster)
    runner = CliRunner()
    done = runner.invoke(app, [str(path), "--output", str(tmp_path / "out"), "--schema", "mbo"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "out" / "TEST_2012-06-21_mbo.dbn").exists() and "stand-in orders for 280 shares" in done.output
    refused = runner.invoke(app, [str(path), "--output", str(tmp_path / "out"), "--schema", "mbp-5"])
    assert refused.exit_code == 2 and "unknown schema 'mbp-5'" in refused.output
    missing = runner.invoke(app, [str(tmp_path / "nothing.csv"), "--output", str(tmp_path / "out")])
    assert missing.exit_code == 2 and "cannot convert nothing.csv" in missing.output


def top_of_book(events: list) -> list:
    """``--format lobster``'s events of a one-level view: each book as (bid, bid size, ask, ask size), prints as
    they are; consecutive equal tops once."""
    seen, shown = None, []
    for event in without_statuses(events):
        if type(event).__name__ == "BookUpdate":
            top = (*(event.bids[0] if event.bids else (0, 0)), *(event.asks[0] if event.asks else (0, 0)))
            if top != seen:
                seen = top
                shown.append(top)
        else:
            shown.append(event)
    return shown


def test_mbp1_is_the_top_of_the_book_and_the_prints_with_or_without_their_sides(tmp_path):
    path = lobster_day(tmp_path)
    with ExitStack() as stack:
        report = convert_top_of_book(open_lobster(path, stack), tmp_path, zstd=False)
    with ExitStack() as stack:
        consolidated = convert_top_of_book(open_lobster(path, stack), tmp_path, zstd=False, sides=False)
    assert [file.name for file in report.files + consolidated.files] == [
        "TEST_2012-06-21_mbp-1.dbn",
        "TEST_2012-06-21_mbp-1-no-sides.dbn",
    ]
    assert (report.rows, report.trades, report.halts) == (8, 2, 1)
    quotes = [
        (q.bid_price, q.bid_size, q.ask_price, q.ask_size) if type(q).__name__ == "Quote" else q
        for q in without_statuses(list(read_dbn(report.files)))
    ]
    assert quotes == top_of_book(list(read_lobster(path)))
    with_sides = [event for event in read_dbn(report.files) if type(event).__name__ == "Trade"]
    without = [event for event in read_dbn(consolidated.files) if type(event).__name__ == "Trade"]
    assert [(trade.side, trade.side_source) for trade in with_sides] == [("sell", "feed"), ("buy", "feed")]
    assert [(trade.side, trade.side_source) for trade in without] == [("unknown", "none")] * 2
    assert [(t.price, t.size, t.ts_event) for t in without] == [(t.price, t.size, t.ts_event) for t in with_sides]


def test_a_message_file_longer_than_its_orderbook_file_is_refused_naming_both(tmp_path):
    path = lobster_day(tmp_path)
    (tmp_path / NAME.format("orderbook")).write_text("".join(book + "\n" for _, book in DAY[:5]))
    for schema in ("mbp-10", "mbo"):
        with pytest.raises(ValueError, match=r"message_2\.csv and \S+orderbook_2\.csv differ in length: row 6 of"):
            convert(path, tmp_path, schema)
