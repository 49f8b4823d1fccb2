"""``orderflow simulate-databento``: the local Databento Live gateway (:mod:`services.tools.databento_gateway`).

The one key it accepts is read from ``--key-file`` (the configuration has no Databento key setting; a key never goes
on a command line). Exit 2 for an unreadable key file or files that are neither DBN nor LOBSTER.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from services.cli.common import load_or_exit, logging_or_exit, stderr, stdout, stop_on_signals
from services.cli.options import ConfigFileOption


def simulate_databento(
    files: Annotated[
        list[Path],
        typer.Argument(help="DBN files (.dbn, .dbn.zst) or LOBSTER days to replay.", exists=True, dir_okay=False),
    ],
    key_file: Annotated[
        Path,
        typer.Option(
            "--key-file", help="A file holding the API key clients must present.", exists=True, dir_okay=False
        ),
    ],
    port: Annotated[int, typer.Option(help="TCP port (the real gateway's is 13000).")] = 13000,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 inside a container).")] = "127.0.0.1",
    speed: Annotated[
        float,
        typer.Option(
            min=0.0, help="Market seconds per wall second; 0: as fast as possible (each session from the start)."
        ),
    ] = 1.0,
    schema: Annotated[
        list[str] | None,
        typer.Option("--schema", help="A schema LOBSTER days play as (repeat): mbo, mbp-1, mbp-10, tbbo, trades."),
    ] = None,
    drop_after_records: Annotated[
        int | None, typer.Option(min=1, help="Fault: drop the next session(s) after this many records.")
    ] = None,
    drop_kind: Annotated[str, typer.Option(help="How a drop ends the connection: reset | close | error.")] = "reset",
    malformed_after_records: Annotated[
        int | None, typer.Option(min=0, help="Fault: one malformed record into the next session(s) after this many.")
    ] = None,
    malformed_kind: Annotated[str, typer.Option(help="bad_side | undefined_price | unknown_record_type.")] = "bad_side",
    fault_sessions: Annotated[int, typer.Option(min=1, help="How many sessions each fault hits.")] = 1,
    history_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Also serve Databento's historical timeseries.get_range on this port (0: any free one), from the "
            "same market, for ingest's gap backfill (ORDER_FLOW_DATABENTO_HISTORICAL_URL=http://HOST:PORT).",
        ),
    ] = None,
    config_file: ConfigFileOption = None,
) -> None:
    """A local server speaking Databento's Live raw API (CRAM, subscriptions, DBN), replaying files (no internet).

    Point the official client at it: databento.Live(key=KEY, gateway="127.0.0.1", port=PORT).
    """
    from services.tools.databento_gateway import DatabentoGateway
    from services.tools.databento_gateway_market import DEFAULT_LOBSTER_SCHEMAS, load_market
    from services.tools.databento_history_server import HistoricalServer, HistoricalStandIn

    config = load_or_exit(config_file)
    key = _key_or_exit(key_file)
    logging_or_exit(service="databento-gateway", log_dir=None, level=config.log_level, secrets=[key])
    try:
        market = load_market(list(files), lobster_schemas=frozenset(schema) if schema else DEFAULT_LOBSTER_SCHEMAS)
    except (ValueError, OSError) as error:
        stderr.print(f"[bold red]cannot replay:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    if not market.records:
        stderr.print("no record to replay in the input")
        raise typer.Exit(code=2)

    async def run() -> None:
        gateway = DatabentoGateway(market, api_key=key, speed=speed)
        try:
            if drop_after_records is not None:
                gateway.drop_after(drop_after_records, kind=drop_kind, sessions=fault_sessions)
            if malformed_after_records is not None:
                gateway.inject_after(malformed_after_records, kind=malformed_kind, sessions=fault_sessions)
        except ValueError as error:
            stderr.print(f"[bold red]bad fault option:[/] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None
        try:
            await gateway.start(host=host, port=port)
        except OSError as error:
            stderr.print(f"[bold red]cannot listen on {host}:{port}:[/] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None
        pace = "as fast as possible" if speed == 0 else f"at {speed:g}x"
        stdout.print(
            f"simulating Databento Live ({market.dataset}) on {host}:{gateway.port}: {len(market.records):,} records "
            f"of {', '.join(sorted(market.instruments))} ({', '.join(sorted(market.schemas))}) {pace}; "
            f'clients: databento.Live(key=…, gateway="127.0.0.1", port={gateway.port})',
            highlight=False,
            soft_wrap=True,
        )
        history = None
        if history_port is not None:
            try:
                history = HistoricalServer(HistoricalStandIn(gateway, api_key=key), host=host, port=history_port)
            except OSError as error:
                await gateway.stop()
                stderr.print(f"[bold red]cannot listen on {host}:{history_port}:[/] {error}", highlight=False)
                raise typer.Exit(code=2) from None
            history.start()
            stdout.print(
                f"simulating Databento's historical API on {history.url}: "
                f"ORDER_FLOW_DATABENTO_HISTORICAL_URL={history.url}",
                highlight=False,
                soft_wrap=True,
            )
        stop = stop_on_signals()
        await stop.wait()
        if history is not None:
            history.stop()
        await gateway.stop()

    asyncio.run(run())


def _key_or_exit(path: Path) -> str:
    """The key in ``path`` (its one line, blanks around it ignored); exit 2, never showing it, when unusable."""
    from services.tools.databento_gateway_protocol import BUCKET_ID_LENGTH  # the gateway's own rule for a key

    try:
        key = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        stderr.print(f"[bold red]key file unreadable:[/] {path}: {type(error).__name__}", highlight=False)
        raise typer.Exit(code=2) from None
    if len(key) < BUCKET_ID_LENGTH or not key.isprintable() or any(character.isspace() for character in key):
        stderr.print(
            f"[bold red]key file unusable:[/] {path} must hold one key of {BUCKET_ID_LENGTH} or more characters "
            "without blanks",
            highlight=False,
        )
        raise typer.Exit(code=2)
    return key
