"""The ``orderflow`` command line.

Every command validates the configuration first and exits with status 2 and
one clear message when it is invalid, before touching Redis or the network.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from shared.config import (
    CONFIG_FILE_VARIABLE,
    DEFAULT_CONFIG_FILE,
    OrderFlowConfig,
    display_value,
    environment_name,
    load_config,
    value_origins,
)
from shared.errors import ConfigError

SCHEMA_FILE = Path("config/config.schema.json")

app = typer.Typer(
    name="orderflow",
    help="Real-time order-flow monitor: detects institutional selling pressure and recommends exits.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show and document the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigFileOption = Annotated[
    Optional[Path],
    typer.Option(
        "--config-file",
        envvar=CONFIG_FILE_VARIABLE,
        help=f"JSON config file (default {DEFAULT_CONFIG_FILE}; a missing file is fine).",
        show_default=False,
    ),
]

stdout = Console()
stderr = Console(stderr=True)


def load_or_exit(config_file: Path | None) -> OrderFlowConfig:
    """Load the configuration or exit 2 with the message (no traceback)."""
    try:
        return load_config(config_file)
    except ConfigError as error:
        stderr.print(f"[bold red]configuration error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


@app.command()
def version() -> None:
    """Print the installed orderflow version."""
    stdout.print(f"orderflow {package_version('orderflow')}")


@config_app.command("show")
def config_show(
    config_file: ConfigFileOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print the effective configuration, secrets masked, with each value's origin."""
    config = load_or_exit(config_file)
    origins = value_origins(config_file)
    rows = [
        (name, environment_name(name), display_value(config, name), origins[name])
        for name in OrderFlowConfig.model_fields
    ]
    if as_json:
        document = {name: {"variable": variable, "value": value, "origin": origin} for name, variable, value, origin in rows}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    table = Table(title="orderflow configuration", title_justify="left")
    for column in ("setting", "environment variable", "value", "origin"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    stdout.print(table)


def schema_document() -> str:
    """The JSON schema of the config file, as committed in config/config.schema.json."""
    schema = OrderFlowConfig.model_json_schema(by_alias=False)
    schema["title"] = "orderflow configuration (config/order_flow_config.json)"
    schema["description"] = (
        "Generated from shared.config.OrderFlowConfig by `orderflow config schema --write`. "
        "Environment variables ORDER_FLOW_<SETTING> override the file; "
        "POLYGON_API_KEY belongs in the environment only."
    )
    schema["properties"].pop("polygon_api_key", None)
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


@config_app.command("schema")
def config_schema(
    write: Annotated[bool, typer.Option("--write", help=f"Write it to {SCHEMA_FILE}.")] = False,
    check: Annotated[bool, typer.Option("--check", help=f"Exit 1 when {SCHEMA_FILE} is stale.")] = False,
) -> None:
    """Print (or write, or check) the JSON schema of the config file."""
    document = schema_document()
    if check:
        current = SCHEMA_FILE.read_text(encoding="utf-8") if SCHEMA_FILE.exists() else ""
        if current != document:
            stderr.print(f"{SCHEMA_FILE} is stale: run `orderflow config schema --write`")
            raise typer.Exit(code=1)
        stdout.print(f"{SCHEMA_FILE} is up to date")
        return
    if write:
        SCHEMA_FILE.parent.mkdir(parents=True, exist_ok=True)
        SCHEMA_FILE.write_text(document, encoding="utf-8")
        stdout.print(f"wrote {SCHEMA_FILE}")
        return
    sys.stdout.write(document)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
