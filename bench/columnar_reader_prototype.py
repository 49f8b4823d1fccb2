"""A candidate shape measured before it is built: the AlgoSeek reader as columns (pandas' C CSV parser, the NBBO
side updates forward-filled with numpy) against today's row-by-row reader, on a real day.

Three ways to read the same trade and quote files of one day:

* **rows** — today's reader (``services.ingest.algoseek.read_algoseek_rows``): one Python loop iteration per CSV row;
* **columns → events** — the files parsed into columns, each quote row's NBBO computed for all rows at once
  (the last bid row and the last ask row, forward-filled), the rows where either side changed kept, the trades and
  quotes merged by time with one stable sort, and only then one ``Trade``/``Quote`` struct built per event: what
  the rules engine takes today;
* **columns only** — the same without building the structs: what rules over a batch of columns would start from.

The prototype is checked against the row reader on the same files (the same events, in the same order) before it
is timed. Rows the vendor marked suspicious, and rows that do not parse, are out of its scope (the row reader's
job, with its reject codes); the shared days have none.

    python -m bench.columnar_reader_prototype [--rounds 3] [--day bac/20131008]
"""

from __future__ import annotations

import argparse
import io
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from orderflow_client.timestamps import NANOSECONDS_PER_MILLISECOND
from orderflow_client.wire import Quote, Trade
from services.ingest.algoseek import PARTICIPANT_TO_POLYGON, conditions_from_flags, describe, read_algoseek_rows
from services.ingest.lobster import midnight_ns

REPO = Path(__file__).resolve().parents[1]
NANODOLLARS_PER_PRICE_UNIT = 100_000  # AlgoSeek prices are dollars × 10,000; nano-dollars are dollars × 10⁹


def csv_member(path: Path) -> tuple[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        name = next(name for name in archive.namelist() if name.endswith(".csv"))
        return name, archive.read(name)


def exchange_ids(letters: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Each row's Polygon exchange id, and a code per distinct letter (equal letters, equal codes)."""
    categories = letters.astype("category")
    ids = np.array([PARTICIPANT_TO_POLYGON.get(letter, 0) for letter in categories.cat.categories], dtype=np.int64)
    codes = categories.cat.codes.to_numpy().astype(np.int64)
    return ids[codes], codes


def trade_columns(path: Path) -> dict[str, object]:
    member, data = csv_member(path)
    symbol, day, _kind = describe(member)
    names = ["time", "price", "size", "exchange", "condition", "suspicious"]
    frame = pd.read_csv(
        io.BytesIO(data),
        header=None,
        names=names,
        na_filter=False,
        dtype={
            "time": np.int64,
            "price": np.int64,
            "size": np.int64,
            "exchange": str,
            "condition": str,
            "suspicious": str,
        },
    )
    assert (frame["suspicious"] == "0").all(), "suspicious rows: the row reader's job"
    condition = frame["condition"].astype("category")
    by_code = [conditions_from_flags(text) for text in condition.cat.categories]
    exchange, _letters = exchange_ids(frame["exchange"])
    return {
        "symbol": symbol,
        "ts": midnight_ns(day) + frame["time"].to_numpy() * NANOSECONDS_PER_MILLISECOND,
        "price": frame["price"].to_numpy() * NANODOLLARS_PER_PRICE_UNIT,
        "size": frame["size"].to_numpy(),
        "exchange": exchange,
        "conditions": [by_code[code] for code in condition.cat.codes.tolist()],
        "number": np.arange(1, len(frame) + 1),
    }


def quote_columns(path: Path) -> dict[str, object]:
    member, data = csv_member(path)
    symbol, day, _kind = describe(member)
    names = ["time", "bid", "bid_size", "ask", "ask_size", "exchange", "condition", "suspicious"]
    frame = pd.read_csv(
        io.BytesIO(data),
        header=None,
        names=names,
        na_filter=False,
        dtype={
            "time": np.int64,
            "bid": np.int64,
            "bid_size": np.int64,
            "ask": np.int64,
            "ask_size": np.int64,
            "exchange": str,
            "condition": str,
            "suspicious": str,
        },
    )
    assert (frame["suspicious"] == "0").all(), "suspicious rows: the row reader's job"
    rows = np.arange(len(frame))
    exchange, letter_code = exchange_ids(frame["exchange"])
    sides = {}
    for side in ("bid", "ask"):
        price, size = frame[side].to_numpy(), frame[f"{side}_size"].to_numpy()
        assert (price >= 0).all() and (size >= 0).all(), "negative fields: the row reader's job"
        setter = np.maximum.accumulate(np.where((price != 0) | (size != 0), rows, -1))  # the row that set the side
        known = setter >= 0
        at = np.where(known, setter, 0)
        sides[side] = (
            np.where(known, price[at], 0),
            np.where(known, size[at], 0),
            np.where(known, exchange[at], 0),
            np.where(known, letter_code[at], -1),
        )
    # a quote when either side changed (price, size or the quoting exchange's letter), as the row reader decides
    changed = np.zeros(len(frame), dtype=bool)
    for price, size, _exchange, letter in sides.values():
        changed[0] |= bool(price[0] or size[0] or letter[0] != -1)
        changed[1:] |= (price[1:] != price[:-1]) | (size[1:] != size[:-1]) | (letter[1:] != letter[:-1])
    keep = np.flatnonzero(changed)
    bid, ask = sides["bid"], sides["ask"]
    return {
        "symbol": symbol,
        "ts": (midnight_ns(day) + frame["time"].to_numpy() * NANOSECONDS_PER_MILLISECOND)[keep],
        "bid": bid[0][keep] * NANODOLLARS_PER_PRICE_UNIT,
        "bid_size": bid[1][keep],
        "bid_exchange": bid[2][keep],
        "ask": ask[0][keep] * NANODOLLARS_PER_PRICE_UNIT,
        "ask_size": ask[1][keep],
        "ask_exchange": ask[2][keep],
    }


def events_from_columns(quotes: dict, trades: dict) -> list[Trade | Quote]:
    """Quotes and trades merged by time (quotes first on the same millisecond, as the row reader's merge), one
    struct each."""
    ts = np.concatenate([quotes["ts"], trades["ts"]])
    order = np.lexsort((np.concatenate([np.zeros(len(quotes["ts"])), np.ones(len(trades["ts"]))]), ts))
    quote_count = len(quotes["ts"])
    quote_fields = [
        quotes[key].tolist() for key in ("ts", "bid", "bid_size", "ask", "ask_size", "bid_exchange", "ask_exchange")
    ]
    trade_fields = [trades[key].tolist() for key in ("ts", "price", "size", "exchange", "number")]
    conditions = trades["conditions"]
    quote_symbol, trade_symbol = quotes["symbol"], trades["symbol"]
    events: list[Trade | Quote] = []
    append = events.append
    for index in order.tolist():
        if index < quote_count:
            q_ts, bid, bid_size, ask, ask_size, bid_exchange, ask_exchange = (field[index] for field in quote_fields)
            append(
                Quote(
                    symbol=quote_symbol,
                    ts_event=q_ts,
                    ts_recv=q_ts,
                    ts_arrival=q_ts,
                    bid_price=bid,
                    bid_size=bid_size,
                    ask_price=ask,
                    ask_size=ask_size,
                    bid_exchange=bid_exchange,
                    ask_exchange=ask_exchange,
                )
            )
        else:
            row = index - quote_count
            t_ts, price, size, exchange, number = (field[row] for field in trade_fields)
            append(
                Trade(
                    symbol=trade_symbol,
                    ts_event=t_ts,
                    ts_recv=t_ts,
                    ts_arrival=t_ts,
                    price=price,
                    size=size,
                    exchange=exchange,
                    trade_id=str(number),
                    conditions=conditions[row],
                    sequence=number,
                )
            )
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--day", default="bac/20131008", help="SYMBOL_FOLDER/YYYYMMDD under algoseek/")
    arguments = parser.parse_args()
    folder, day = arguments.day.split("/")
    trade_file = arguments.data / "algoseek" / folder / f"{day}_trade.zip"
    quote_file = arguments.data / "algoseek" / folder / f"{day}_quote.zip"

    reference = list(read_algoseek_rows([trade_file, quote_file]))
    prototype = events_from_columns(quote_columns(quote_file), trade_columns(trade_file))
    assert prototype == reference, "the columnar prototype does not give the row reader's events"
    print(f"{arguments.day}: {len(reference):,} events, the prototype's equal to the row reader's (checked)")

    timings: dict[str, list[float]] = {"rows": [], "columns → events": [], "columns only": []}
    for _round in range(arguments.rounds):
        started = time.process_time()
        list(read_algoseek_rows([trade_file, quote_file]))
        timings["rows"].append(time.process_time() - started)
        started = time.process_time()
        quotes, trades = quote_columns(quote_file), trade_columns(trade_file)
        columns_seconds = time.process_time() - started
        events_from_columns(quotes, trades)
        timings["columns → events"].append(time.process_time() - started)
        timings["columns only"].append(columns_seconds)
    for name, seconds in timings.items():
        rates = [len(reference) / value for value in seconds]
        print(
            f"  {name:<17} {min(rates):>11,.0f} – {max(rates):,.0f} events/s ({min(seconds):.2f}–{max(seconds):.2f} s)"
        )


if __name__ == "__main__":
    main()
