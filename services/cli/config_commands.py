"""``orderflow version`` and ``orderflow config show | schema | redis-users``: the configuration, documented."""

from __future__ import annotations

import json
import sys
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated

import typer

from services.cli import render
from services.cli.common import load_or_exit, stderr, stdout
from services.cli.options import ConfigFileOption
from shared.acl import users_template
from shared.config import OrderFlowConfig, environment_name
from shared.config_loading import display_value, value_origins
from shared.config_schema import SCHEMA_FILE, schema_document

ACL_FILE = Path("config/redis-users.acl")


def version() -> None:
    """Print the installed orderflow version."""
    stdout.print(f"orderflow {package_version('orderflow')}")


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
        document = {
            name: {"variable": variable, "value": value, "origin": origin} for name, variable, value, origin in rows
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    stdout.print(render.configuration_table(rows))


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


def config_redis_users(
    prefix: Annotated[str, typer.Option(help="Key prefix the rules cover (ORDER_FLOW_KEY_PREFIX).")] = "orderflow",
    write: Annotated[bool, typer.Option("--write", help=f"Write it to {ACL_FILE}.")] = False,
) -> None:
    """Print (or write) the Redis ACL file: one user per service with the least rights it needs.

    Each password's SHA-256 goes where ``@<user>@`` stands; compose's Redis fills them in from REDIS_PASSWORD,
    REDIS_INGEST_PASSWORD, REDIS_DETECTOR_PASSWORD and REDIS_BOT_PASSWORD at start.

    Example: orderflow config redis-users --prefix desk2 > config/redis-users.acl
    """
    document = users_template(prefix)
    if write:
        ACL_FILE.write_text(document, encoding="utf-8")
        stdout.print(f"wrote {ACL_FILE}")
        return
    sys.stdout.write(document)
