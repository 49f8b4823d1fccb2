"""The positions a backtest follows: the bot's own entries from ``--positions`` CSV, or one long from each open."""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from orderflow_client.prices import price_from_text
from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from services.offline.backtest.collect import NEW_YORK, Tapes


@dataclass(frozen=True)
class Position:
    """A long position: entry time (ns), entry price (nano-dollars), shares, stop (nano-dollars, 0 = none)."""

    symbol: str
    entry_ns: int
    entry_price: int
    quantity: int
    stop: int = 0


def positions_from_open(
    tapes: Tapes, *, stop_loss_pct: float = 0.0, exclude: tuple[str, ...] | frozenset[str] = ()
) -> list[Position]:
    """One long position per symbol and day, bought at the ask of the first quote of the session, with a stop
    ``stop_loss_pct`` % under it (0: none); no position in the ``exclude`` symbols (the indexes)."""
    positions = []
    for tape in tapes.values():
        if tape.times and tape.symbol not in exclude:
            positions.append(Position(tape.symbol, tape.times[0], tape.asks[0], 100))
    return with_stops(positions, stop_loss_pct)


def with_stops(positions: list[Position], stop_loss_pct: float) -> list[Position]:
    """``positions``, each without a stop given one ``stop_loss_pct`` % under its entry (nano-dollars, rounded
    to the nearest): a 2 % stop under 50.00 is 49.00. ``stop_loss_pct`` 0 leaves them as they are."""
    if stop_loss_pct <= 0:
        return list(positions)
    return [p if p.stop else replace(p, stop=round(p.entry_price * (100 - stop_loss_pct) / 100)) for p in positions]


def read_positions(path: Path) -> list[Position]:
    """``symbol,entry_time,entry_price,quantity,stop`` rows; entry_time ISO 8601 (naive = New York).

    Example row: ``BAC,2013-10-07T10:30:00,14.12,200,13.90``. Long positions only (the success metrics and the stop
    assume a long). ValueError names the file and line of a bad row."""
    positions = []
    with path.open(newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            try:
                if int(row["quantity"]) <= 0:
                    raise ValueError(
                        f"quantity {row['quantity']}: only long positions (a positive quantity) are scored"
                    )
                moment = datetime.fromisoformat(row["entry_time"])
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=NEW_YORK)
                positions.append(
                    Position(
                        row["symbol"].strip().upper(),
                        int(moment.timestamp() * NANOSECONDS_PER_SECOND),
                        price_from_text(row["entry_price"].strip()),
                        int(row["quantity"]),
                        price_from_text(row["stop"].strip()) if row.get("stop", "").strip() else 0,
                    )
                )
            except (KeyError, ValueError) as error:
                raise ValueError(f"{path}:{number}: {error}") from None
    return positions
