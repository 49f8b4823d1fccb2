"""``orderflow positions open | close | list``: the positions orderflow monitors, in the registry on the bus."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from services.cli import render
from services.cli.common import connect_bus, load_or_exit, run_or_exit, stderr, stdout
from services.cli.options import ConfigFileOption

if TYPE_CHECKING:
    from orderflow_client.positions import PositionRegistry

Result = TypeVar("Result")


def _with_registry(config_file: Path | None, action: Callable[[PositionRegistry], Awaitable[Result]]) -> Result:
    """Run ``action(registry)`` against the configured bus; exit 3 if Redis is down."""
    from orderflow_client.positions import PositionRegistry

    config = load_or_exit(config_file)
    if config.redis_url is None:
        stderr.print("[yellow]REDIS_URL is unset: the embedded bus forgets positions when this command ends[/]")

    async def run() -> Result:
        bus = await connect_bus(config)
        try:
            return await action(PositionRegistry(bus))
        finally:
            await bus.close()

    try:
        return run_or_exit(run())
    except ValueError as error:
        stderr.print(f"[bold red]invalid position:[/] {error}")
        raise typer.Exit(code=2) from None


def positions_open(
    symbol: Annotated[str, typer.Argument(help="Ticker, e.g. AAPL.")],
    quantity: Annotated[int, typer.Option(help="Shares held (negative for a short).")],
    entry: Annotated[str, typer.Option(help="Entry price, e.g. 187.43.")],
    stop: Annotated[str, typer.Option(help="Stop-loss price (0 for none).")] = "0",
    config_file: ConfigFileOption = None,
) -> None:
    """Register an open position: ingest subscribes to it and the detector monitors it.

    Example: orderflow positions open AAPL --quantity 200 --entry 187.43 --stop 184
    """
    position = _with_registry(
        config_file, lambda registry: registry.open(symbol, quantity=quantity, entry_price=entry, stop_loss=stop)
    )
    stdout.print(f"open {position.symbol}: {position.quantity} @ {entry}, stop {stop}")


def positions_close(
    symbol: Annotated[str, typer.Argument(help="Ticker.")], config_file: ConfigFileOption = None
) -> None:
    """Remove a position: monitoring of the symbol stops."""
    removed = _with_registry(config_file, lambda registry: registry.close(symbol))
    stdout.print(f"closed {symbol.upper()}" if removed else f"{symbol.upper()} was not open")


def positions_list(config_file: ConfigFileOption = None) -> None:
    """List the open positions."""
    positions = _with_registry(config_file, lambda registry: registry.list())
    stdout.print(render.positions_table(positions))
