"""``orderflow demo``: ingest and detect together on the synthetic scenarios, no Redis or API key needed.

Exit 1 when what the detector reported differs from a scenario's expectation; 2 for an unknown scenario or a
speed that is not positive. A metrics port already taken is only a warning here.
"""

from __future__ import annotations

from typing import Annotated

import typer

from services.cli.common import load_or_exit, logging_or_exit, run_or_exit, stderr, stdout
from services.cli.options import ConfigFileOption


def demo(
    speed: Annotated[float, typer.Option(help="Market seconds per wall second.")] = 120.0,
    scenario: Annotated[list[str] | None, typer.Option("--scenario", help="Play only this scenario (repeat).")] = None,
    seed: Annotated[int, typer.Option(help="Scenario seed.")] = 7,
    config_file: ConfigFileOption = None,
) -> None:
    """Ingest and detect together on the synthetic scenarios; no Redis or API key needed.

    Examples:
      orderflow demo
      orderflow demo --speed 400 --scenario large-sellers --scenario red-burst
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
    result = run_or_exit(run_demo(config, scenarios=scenario or None, speed=speed, seed=seed, console=stdout))
    if not all(result.matches(name) for name in (scenario or SCENARIOS)):
        raise typer.Exit(code=1)
