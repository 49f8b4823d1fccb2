"""The AlgoSeek column reader gives the row reader's events, in its order, whatever the files hold: clean days read
as columns, anything unusual read row by row (with the row reader's reject codes). Property-based over generated
files; the real days are in tests/integration/test_algoseek_columns.py."""

from __future__ import annotations

import tempfile
import zipfile
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderflow_client.wire import Quote, Trade
from services.ingest import algoseek_columns
from services.ingest.algoseek import read_algoseek_rows
from services.ingest.algoseek_columns import read_algoseek
from services.ingest.rejects import Reject

LETTERS = ["P", "N", "K", "Z", "T", "Q", ""]  # "" and "Q" (mapped like T) too
FLAGS = ["1", "20000020", "2000", "4800", "40000000", "0"]


def write_zip(folder: Path, name: str, member: str, text: str) -> Path:
    path = folder / name
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, text)
    return path


def both(paths: list[Path], symbol: str | None = None) -> tuple[list, list]:
    return list(read_algoseek_rows(paths, symbol)), list(read_algoseek(paths, symbol))


def same_events_and_rejects(rows: list, columns: list) -> None:
    """The same events in the same order; the same rejects (where each is counted in the stream may differ)."""
    assert [item for item in columns if not isinstance(item, Reject)] == [
        item for item in rows if not isinstance(item, Reject)
    ]
    assert Counter((item.code, item.where) for item in columns if isinstance(item, Reject)) == Counter(
        (item.code, item.where) for item in rows if isinstance(item, Reject)
    )


def quote_row(time: int, bid: int, bid_size: int, ask: int, ask_size: int, letter: str, suspicious: str) -> str:
    return f"{time},{bid},{bid_size},{ask},{ask_size},{letter},1,{suspicious}\n"


def trade_row(time: int, price: int, size: int, letter: str, flags: str, suspicious: str) -> str:
    return f"{time},{price},{size},{letter},{flags},{suspicious}\n"


times = st.integers(min_value=34_200_000, max_value=34_200_050)
quote_rows = st.lists(
    st.builds(
        quote_row,
        times,
        st.sampled_from([0, 0, 139_000, 139_100]),  # few values, so a side is often set again to what it was
        st.sampled_from([0, 100, 500]),
        st.sampled_from([0, 0, 139_300]),
        st.sampled_from([0, 200]),
        st.sampled_from(LETTERS),
        st.sampled_from(["0"] * 60 + ["1"]),
    ),
    max_size=40,
)
trade_rows = st.lists(
    st.builds(
        trade_row,
        times,
        st.sampled_from([139_000, 139_100, 139_250]),
        st.sampled_from([100, 300, 12_000]),
        st.sampled_from(LETTERS),
        st.sampled_from(FLAGS),
        st.sampled_from(["0"] * 60 + ["1"]),
    ),
    max_size=40,
)
damage = st.sampled_from([""] * 6 + ["blank line", "quoted", "short row", "negative", "not a number", "bad flags"])
mostly = st.sampled_from([True, True, True, False])  # files are mostly in time order


def damaged(text: str, kind: str, how: str) -> str:
    """``text`` with one thing a real file could have wrong, which the row reader has a reject code for."""
    lines = text.splitlines(keepends=True)
    if not how or not lines:
        return text
    middle = len(lines) // 2
    if how == "blank line":
        lines.insert(middle, "\n")
    elif how == "quoted":
        lines[middle] = lines[middle].replace(",", ',"', 1).replace(",", '",', 2)
    elif how == "short row":
        lines[middle] = lines[middle].split(",", 1)[1]
    elif how == "negative" and kind == "Quote":
        lines[middle] = lines[middle].replace(",", ",-", 1)
    elif how == "not a number":
        lines[middle] = "x" + lines[middle]
    elif how == "bad flags" and kind == "Trade":
        parts = lines[middle].split(",")
        parts[4] = "zz"
        lines[middle] = ",".join(parts)
    return "".join(lines)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    quotes=quote_rows,
    trades=trade_rows,
    sort_quotes=mostly,
    sort_trades=mostly,
    how=damage,
    damaged_kind=st.sampled_from(["Quote", "Trade"]),
    chunk_rows=st.sampled_from([1, 2, 3, 7, 262_144]),
)
def test_any_file_gives_the_row_reader_s_events(
    tmp_path, monkeypatch, quotes, trades, sort_quotes, sort_trades, how, damaged_kind, chunk_rows
):
    """Also in small chunks of rows, so each side of the NBBO is carried across chunk boundaries."""
    monkeypatch.setattr(algoseek_columns, "CHUNK_ROWS", chunk_rows)
    quote_text = "".join(sorted(quotes) if sort_quotes else quotes)
    trade_text = "".join(sorted(trades) if sort_trades else trades)
    if damaged_kind == "Quote":
        quote_text = damaged(quote_text, "Quote", how)
    else:
        trade_text = damaged(trade_text, "Trade", how)
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    paths = [
        write_zip(folder, "20131008_trade.zip", "20131008_xyz_Trade_Tick.csv", trade_text),
        write_zip(folder, "20131008_quote.zip", "20131008_xyz_Quote_Tick.csv", quote_text),
    ]
    same_events_and_rejects(*both(paths))


def test_a_clean_day_is_read_as_columns_and_equals_the_rows(tmp_path):
    quotes = "".join(
        [
            quote_row(34_200_000, 100_000, 500, 0, 0, "P", "0"),
            quote_row(34_200_001, 0, 0, 100_200, 300, "N", "0"),
            quote_row(34_200_002, 99_900, 700, 0, 0, "K", "0"),
            quote_row(34_200_002, 0, 0, 100_200, 300, "N", "0"),  # the ask unchanged: no quote
            quote_row(34_200_003, 0, 0, 100_200, 300, "Z", "0"),  # same ask, another exchange: a quote
        ]
    )
    trades = trade_row(34_200_002, 100_100, 12_000, "P", "20000020", "0")
    paths = [
        write_zip(tmp_path, "20131008_quote.zip", "20131008_xyz_Quote_Tick.csv", quotes),
        write_zip(tmp_path, "20131008_trade.zip", "20131008_xyz_Trade_Tick.csv", trades),
    ]
    rows, columns = both(paths)
    assert columns == rows
    assert [type(item).__name__ for item in columns] == ["Quote", "Quote", "Quote", "Trade", "Quote"]
    trade = columns[3]
    assert isinstance(trade, Trade) and trade.conditions == (14, 41) and trade.trade_id == "1"
    last = columns[4]
    assert isinstance(last, Quote) and (last.ask_exchange, last.bid_price) == (19, 9_990_000_000)


def test_days_symbols_and_files_that_are_not_one_tick_file(tmp_path):
    """Two days and two symbols merge as the row reader merges them; a symbol filter keeps one; a zip of two
    members goes to the row reader whole."""
    paths = []
    for day in ("20131007", "20131008"):
        for symbol, price in (("abc", 100_000), ("xyz", 200_000)):
            folder = tmp_path / f"{day}-{symbol}"
            folder.mkdir()
            paths.append(
                write_zip(
                    folder,
                    f"{day}_quote.zip",
                    f"{day}_{symbol}_Quote_Tick.csv",
                    quote_row(34_200_000, price, 100, price + 100, 100, "P", "0")
                    + quote_row(34_200_005, price - 100, 100, 0, 0, "N", "0"),
                )
            )
    rows, columns = both(paths)
    assert columns == rows and len(columns) == 8
    rows, columns = both(paths, "XYZ")
    assert columns == rows and {item.symbol for item in columns} == {"XYZ"}
    two = tmp_path / "20131009_quote.zip"
    with zipfile.ZipFile(two, "w") as archive:
        archive.writestr("20131009_abc_Quote_Tick.csv", quote_row(34_200_000, 100_000, 100, 0, 0, "P", "0"))
        archive.writestr("20131009_xyz_Quote_Tick.csv", quote_row(34_100_000, 100_000, 100, 0, 0, "P", "0"))
    same_events_and_rejects(*both([*paths, two]))
