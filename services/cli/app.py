"""The ``orderflow`` command line: the Typer app, every command under its name, and ``main``.

Every command validates the configuration first and exits with status 2 and
one clear message when it is invalid, before touching Redis or the network.
The commands live by group (:mod:`.config_commands`, :mod:`.offline_commands`, :mod:`.live_commands`,
:mod:`.positions_commands`, :mod:`.demo_command`, :mod:`.dashboard_command`); this module only names them, in the
order ``--help`` lists them.
"""

from __future__ import annotations

import typer

from services.cli import (
    cluster_commands,
    config_commands,
    dashboard_command,
    databento_commands,
    dbn_commands,
    demo_command,
    live_commands,
    offline_commands,
    positions_commands,
)

app = typer.Typer(
    name="orderflow",
    help="Real-time order-flow monitor: detects institutional selling pressure and recommends exits.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show and document the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
positions_app = typer.Typer(help="Open, close and list the positions orderflow monitors.", no_args_is_help=True)
app.add_typer(positions_app, name="positions")
cluster_app = typer.Typer(help="The detectors sharing the symbols through leases.", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")

app.command()(config_commands.version)
config_app.command("show")(config_commands.config_show)
config_app.command("schema")(config_commands.config_schema)
config_app.command("redis-users")(config_commands.config_redis_users)
app.command()(offline_commands.scenario)
app.command()(live_commands.replay)
app.command()(offline_commands.analyze)
app.command()(offline_commands.backtest)
app.command()(offline_commands.calibrate)
app.command()(live_commands.detect)
app.command()(demo_command.demo)
positions_app.command("open")(positions_commands.positions_open)
positions_app.command("close")(positions_commands.positions_close)
positions_app.command("list")(positions_commands.positions_list)
cluster_app.command("status")(cluster_commands.cluster_status)
app.command()(live_commands.ingest)
app.command("simulate-polygon")(live_commands.simulate_polygon)
app.command("simulate-databento")(databento_commands.simulate_databento)
app.command("convert-lobster")(dbn_commands.convert_lobster)
app.command("risk-manager")(live_commands.risk_manager)
app.command()(live_commands.watch)
app.command()(dashboard_command.dashboard)


def main() -> None:
    """Console-script entry point."""
    app()
