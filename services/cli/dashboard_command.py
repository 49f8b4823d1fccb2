"""``orderflow dashboard``: the live web page of the open positions' selling pressure (read-only).

Exit 2 for an invalid configuration, a port already taken, or an address beyond this machine without an access
token; 3 when Redis cannot be reached.
"""

from __future__ import annotations

from typing import Annotated

import typer

from services.cli.common import connect_bus, load_or_exit, logging_or_exit, run_or_exit, stderr, stdout, stop_on_signals
from services.cli.options import ConfigFileOption


def dashboard(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [default: ORDER_FLOW_DASHBOARD_HOST, 127.0.0.1].")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on, 0 for a free one [default: ORDER_FLOW_DASHBOARD_PORT, 8765].")
    ] = None,
    symbol: Annotated[
        list[str] | None, typer.Option("--symbol", help="Also show this symbol without a position (repeat).")
    ] = None,
    bot: Annotated[
        list[str] | None,
        typer.Option("--bot", help="Bot name whose handling of exit recommendations is shown (repeat) [default: bot]."),
    ] = None,
    config_file: ConfigFileOption = None,
) -> None:
    """A live web page for a second screen: positions, alerts, exits, charts and feed health (times in New York, ET).

    Examples:
      orderflow dashboard                       # http://127.0.0.1:8765/
      ORDER_FLOW_DASHBOARD_TOKEN=... orderflow dashboard --host 0.0.0.0
    """
    from orderflow_client.positions import normalise_symbol
    from services.dashboard.server import DashboardExposedError, DashboardOptions, check_exposure, start_dashboard

    config = load_or_exit(config_file)
    token = config.dashboard_token.get_secret_value() if config.dashboard_token else ""
    options = DashboardOptions(
        host=host or config.dashboard_host,
        port=config.dashboard_port if port is None else port,
        token=token,
        consumer_group=config.consumer_group,
        alert_window_seconds=config.alert_window_seconds,
        detector_lease_seconds=config.detector_lease_seconds,
        symbols=tuple(normalise_symbol(name) for name in symbol or []),
        bot_names=tuple(bot or ["bot"]),
    )
    try:
        check_exposure(options.host, options.token)
    except DashboardExposedError as error:
        stderr.print(f"[bold red]{error}[/]")
        raise typer.Exit(code=2) from None
    logging_or_exit(service="dashboard", log_dir=config.log_dir, level=config.log_level, secrets=config.secret_values())

    async def run() -> None:
        bus = await connect_bus(config)
        try:
            try:
                shown = await start_dashboard(bus, options)
            except OSError as error:
                stderr.print(f"[bold red]cannot listen on {options.host}:{options.port}:[/] {error}")
                raise typer.Exit(code=2) from None
            stdout.print(
                f"dashboard: {shown.url} (New York time){' — access token required' if token else ''}",
                highlight=False,
            )
            stop = stop_on_signals()
            await stop.wait()
            await shown.stop()
        finally:
            await bus.close()

    run_or_exit(run())
