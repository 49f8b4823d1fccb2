"""``orderflow demo``: ingest and detect together on the synthetic scenarios, no Redis or API key needed.

``--dashboard`` runs the web dashboard beside them on the demo's bus (a free port unless ``--dashboard-port``),
prints its URL, and keeps it open after the summary until Ctrl-C.

Exit 1 when what the detector reported differs from a scenario's expectation; 2 for an unknown scenario or a
speed that is not positive. A metrics port already taken is only a warning here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated

import typer

from services.cli.common import load_or_exit, logging_or_exit, run_or_exit, stderr, stdout, stop_on_signals
from services.cli.options import ConfigFileOption

if TYPE_CHECKING:
    from orderflow_client.bus.connection import Bus
    from shared.config import OrderFlowConfig

Alongside = Callable[["Bus", list[str], str], Awaitable[Callable[[bool], Awaitable[None]]]]


def demo(
    speed: Annotated[float, typer.Option(help="Market seconds per wall second.")] = 120.0,
    scenario: Annotated[list[str] | None, typer.Option("--scenario", help="Play only this scenario (repeat).")] = None,
    seed: Annotated[int, typer.Option(help="Scenario seed.")] = 7,
    dashboard: Annotated[
        bool, typer.Option("--dashboard", help="Run the web dashboard beside the demo; open until Ctrl-C.")
    ] = False,
    dashboard_port: Annotated[int, typer.Option(help="The dashboard's port (0: a free one).")] = 0,
    config_file: ConfigFileOption = None,
) -> None:
    """Ingest and detect together on the synthetic scenarios; no Redis or API key needed.

    Examples:
      orderflow demo
      orderflow demo --speed 400 --scenario large-sellers --scenario red-burst
      orderflow demo --dashboard --speed 20     # and open the printed URL
    """
    from orderflow_client.metrics import serve_metrics
    from services.tools.demo import run_demo
    from services.tools.scenarios import SCENARIOS

    config = load_or_exit(config_file)
    unknown = [name for name in scenario or [] if name not in SCENARIOS]
    if unknown or speed <= 0:
        stderr.print(
            f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}"
            if unknown
            else "--speed must be positive"
        )
        raise typer.Exit(code=2)
    logging_or_exit(
        service="demo", log_dir=config.log_dir, level=config.log_level, secrets=config.secret_values(), console=False
    )
    try:
        serve_metrics(config.metrics_port, config.metrics_host)
        stdout.print(
            f"metrics on http://{config.metrics_host}:{config.metrics_port}/metrics"
            if config.metrics_port
            else "metrics disabled"
        )
    except OSError as error:
        stderr.print(f"[yellow]metrics port {config.metrics_port} unavailable ({error}); continuing without metrics[/]")
    alongside = dashboard_beside(config, dashboard_port) if dashboard else None
    result = run_or_exit(
        run_demo(config, scenarios=scenario or None, speed=speed, seed=seed, console=stdout, alongside=alongside)
    )
    if not all(result.matches(name) for name in (scenario or SCENARIOS)):
        raise typer.Exit(code=1)


def dashboard_beside(config: OrderFlowConfig, port: int) -> Alongside:
    """Start the web dashboard on the demo's bus (this machine only) and print its URL; its ending waits for Ctrl-C
    (SIGINT or SIGTERM, also one sent while the scenarios play) after a demo that finished, then stops it."""
    from services.dashboard.server import DashboardOptions, start_dashboard

    async def start(bus: Bus, symbols: list[str], group: str) -> Callable[[bool], Awaitable[None]]:
        options = DashboardOptions(
            host="127.0.0.1",
            port=port,
            consumer_group=group,
            alert_window_seconds=config.alert_window_seconds,
            symbols=tuple(symbols),
        )
        shown = await start_dashboard(bus, options)
        stop = stop_on_signals()  # from now on Ctrl-C ends the demo after its summary (the page shows it all)
        stdout.print(f"dashboard: {shown.url} (New York time)", highlight=False)

        async def ending(linger: bool) -> None:
            if linger and not stop.is_set():
                stdout.print(f"the dashboard stays open at {shown.url}: Ctrl-C to end", highlight=False)
                await stop.wait()
            await shown.stop()

        return ending

    return start
