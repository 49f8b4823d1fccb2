"""``orderflow convert-lobster``: a LOBSTER day written as Databento DBN files, so it serves as ``--format dbn``
input (:mod:`services.tools.lobster_to_dbn`, :mod:`services.tools.lobster_to_mbo`). Exit 2 for a bad option or an
unreadable file, with one line saying why."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from services.cli.common import stderr, stdout
from services.cli.options import DateOption, SymbolOption

SCHEMAS = ("mbp-10", "mbo", "mbp-1")


def convert_lobster(
    file: Annotated[
        Path, typer.Argument(help="A LOBSTER zip, or a message CSV with its orderbook CSV beside it.", dir_okay=False)
    ],
    output: Annotated[Path, typer.Option("--output", help="Folder for the DBN files (created if missing).")],
    schema: Annotated[
        str,
        typer.Option(
            "--schema",
            help="mbp-10 (an MBP-10 file and a trades file) | mbo (one MBO file: the orders) | mbp-1 (the top of the "
            "book and the prints).",
        ),
    ] = "mbp-10",
    zstd: Annotated[bool, typer.Option("--zstd", help="Compress with zstd (.dbn.zst).")] = False,
    no_sides: Annotated[
        bool,
        typer.Option(
            "--no-sides", help="mbp-1: prints without their aggressor side, as a consolidated feed shows them."
        ),
    ] = False,
    symbol: SymbolOption = None,
    day: DateOption = None,
) -> None:
    """Write a LOBSTER day as Databento DBN files (XNAS.ITCH records), for `--format dbn`.

    Examples:
      orderflow convert-lobster LOBSTER_SampleFile_AMZN_2012-06-21_5.zip --output dbn/
      orderflow convert-lobster LOBSTER_SampleFile_AMZN_2012-06-21_5.zip --schema mbo --zstd --output dbn/
      orderflow convert-lobster LOBSTER_SampleFile_AMZN_2012-06-21_5.zip --schema mbp-1 --no-sides --output dbn/
      orderflow analyze dbn/AMZN_2012-06-21_mbp-10.dbn --out out/
    """
    from services.tools.lobster_to_dbn import convert_mbp10, convert_top_of_book, open_lobster
    from services.tools.lobster_to_mbo import convert_mbo

    if schema not in SCHEMAS:
        stderr.print(f"unknown schema {schema!r}; choose one of {', '.join(SCHEMAS)}")
        raise typer.Exit(code=2)
    try:
        trading_day = date.fromisoformat(day) if day else None
    except ValueError:
        stderr.print(f"--date {day!r} is not YYYY-MM-DD")
        raise typer.Exit(code=2) from None
    try:
        output.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            lobster = open_lobster(file, stack, symbol=symbol, day=trading_day)
            if schema == "mbp-1":
                report = convert_top_of_book(lobster, output, zstd=zstd, sides=not no_sides)
            else:
                report = (convert_mbo if schema == "mbo" else convert_mbp10)(lobster, output, zstd=zstd)
    except (OSError, ValueError) as error:
        stderr.print(f"[bold red]cannot convert {file.name}:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    for path in report.files:
        stdout.print(f"wrote {path} ({path.stat().st_size:,} bytes)", highlight=False, soft_wrap=True)
    stdout.print(
        f"{report.rows:,} LOBSTER messages → {report.records:,} DBN records ({report.trades:,} trades, "
        f"{report.halts:,} halts); {report.invalid_rows:,} rows unreadable, skipped",
        highlight=False,
        soft_wrap=True,
    )
    if schema == "mbo":
        stdout.print(
            f"orders the file never showed: {report.messages_on_unknown_orders:,} messages on them; stand-in orders "
            f"for {report.stand_in_shares_added:,} shares; {report.shares_reconciled_away:,} shares of orders "
            f"cancelled out of view taken off when back in view (see docs/databento.md)",
            highlight=False,
            soft_wrap=True,
        )
