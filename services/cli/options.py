"""The command-line options and arguments several commands share (their help texts included)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shared.config import CONFIG_FILE_VARIABLE, DEFAULT_CONFIG_FILE

ConfigFileOption = Annotated[
    Path | None,
    typer.Option(
        "--config-file",
        envvar=CONFIG_FILE_VARIABLE,
        help=f"JSON config file (default {DEFAULT_CONFIG_FILE}; a missing file is fine).",
        show_default=False,
    ),
]

FilesArgument = Annotated[
    list[Path],
    typer.Argument(help="Input files (zip, csv, csv.gz, capture, dbn, dbn.zst).", exists=True, dir_okay=False),
]
FormatOption = Annotated[
    str,
    typer.Option("--format", help="auto (from the file names) | capture | polygon-flat | lobster | algoseek | dbn"),
]
SymbolOption = Annotated[str | None, typer.Option(help="Keep only this symbol.")]
DateOption = Annotated[
    str | None, typer.Option("--date", help="Trading day YYYY-MM-DD (LOBSTER files whose names lack it).")
]
