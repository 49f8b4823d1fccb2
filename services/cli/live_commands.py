"""``orderflow ingest | detect | replay | simulate-polygon | risk-manager | watch``: the commands on the bus.

Each loads and checks the configuration, sets up logging, metrics and signals, and hands over to its service or
tool (:mod:`services.ingest.service`, :mod:`services.detector.service`, :mod:`services.ingest.replay`,
:mod:`services.tools.simulator`, :mod:`services.tools.stand_in_bot`, :mod:`services.tools.watch_live`). Exit codes:
1 when a replay worker fails, 2 for a bad configuration or option, 3 when Redis stays unreachable, 4 when the
detector's consumer group is deleted under it, 5 when Polygon refuses the key.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from orderflow_client.errors import ConsumerGroupMissingError
from services.cli import render
from services.cli.common import (
    collect_garbage_less_often,
    condition_table,
    connect_bus,
    events_progress,
    load_or_exit,
    logging_or_exit,
    nothing_read_or_exit,
    one_format_or_exit,
    run_ingest_or_exit,
    run_or_exit,
    serve_metrics_or_exit,
    source_or_exit,
    stderr,
    stdout,
    stop_on_signals,
)
from services.cli.options import ConfigFileOption, DateOption, FilesArgument, FormatOption, SymbolOption
from shared.ownership import NameInUseError


def replay(
    files: FilesArgument,
    format: FormatOption = "auto",
    symbol: SymbolOption = None,
    day: DateOption = None,
    speed: Annotated[
        float | None, typer.Option(help="Market seconds per wall second (default: as fast as possible).")
    ] = None,
    max_speed: Annotated[
        bool, typer.Option("--max-speed", help="Publish as fast as Redis takes it (the default).")
    ] = False,
    config_file: ConfigFileOption = None,
) -> None:
    """Publish a recorded or historical session onto the per-symbol streams, as live ingest would.

    Examples:
      orderflow replay captures/live-2026-11-24.capture --speed 10
      orderflow replay LOBSTER_SampleFile_AMZN_2012-06-21_5.zip
    """
    from orderflow_client.logs import get_logger
    from services.ingest.replay import ReplaySummary, ReplayWorkerError, SourceSpec, replay_files

    config = load_or_exit(config_file)
    format = one_format_or_exit(format, list(files))
    trading_day = source_or_exit(format, day)
    if speed is not None and (max_speed or speed <= 0):
        stderr.print("--speed takes a positive number and excludes --max-speed")
        raise typer.Exit(code=2)
    logging_or_exit(
        service="replay", log_dir=config.log_dir, level=config.log_level, secrets=config.secret_values(), console=False
    )
    spec = SourceSpec(
        format,
        tuple(files),
        symbol,
        trading_day,
        config.round_lot_size if config.quote_size_unit == "round_lots" else 1,
        config.side_method,
    )
    conditions = condition_table(config)

    async def run() -> ReplaySummary:
        bus = await connect_bus(config)
        if bus.embedded:
            stderr.print("[yellow]REDIS_URL is unset: replaying into the embedded bus, which ends with this process[/]")
        try:
            progress, advance = events_progress(f"replaying {format}")
            with progress:
                return await replay_files(bus, spec, conditions=conditions, speed=speed, on_published=advance)
        finally:
            await bus.close()

    try:
        summary = run_or_exit(run())
    except ReplayWorkerError as error:
        stderr.print(f"[bold red]replay failed:[/] {error}")
        raise typer.Exit(code=1) from None
    nothing_read_or_exit(format, summary.published, summary.rejects)
    get_logger().info(
        "ingest.replay_finished",
        format=format,
        files=[str(f) for f in files],
        published=summary.published,
        by_kind=dict(summary.events_by_kind),
        rejects=dict(summary.rejects.by_code),
        duplicates=summary.duplicates,
        events_per_second=round(summary.events_per_second),
    )
    stdout.print(render.replay_table(summary))


def ingest(
    record: Annotated[
        Path | None, typer.Option(help="Record every frame: <RECORD>-YYYY-MM-DD.capture, one file per UTC day.")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="This ingest's name among several sharing the symbols (default: ingest-<hostname>)."),
    ] = None,
    config_file: ConfigFileOption = None,
) -> None:
    """Live ingest: Polygon WebSocket trades and quotes (or Databento Live depth and trades) of the open positions onto the streams.

    Examples:
      POLYGON_API_KEY=… REDIS_URL=redis://127.0.0.1:6379/0 orderflow ingest --record captures/live
      ORDER_FLOW_DATA_SOURCE=databento DATABENTO_API_KEY=… REDIS_URL=redis://127.0.0.1:6379/0 orderflow ingest
    """  # noqa: E501  (its first lines are the command's help, as listed)

    from orderflow_client.logs import get_logger
    from services.ingest.polygon_rest_client import PolygonRest, load_condition_table
    from services.ingest.service import IngestService

    config = load_or_exit(config_file)
    if config.data_source == "databento":
        from services.cli.databento_ingest import ingest_databento

        ingest_databento(config, record, name)
        return
    if config.polygon_api_key is None:
        stderr.print(
            "[bold red]POLYGON_API_KEY is not set:[/] live ingest needs it (try `orderflow demo`, or "
            "`orderflow simulate-polygon` for a local feed)"
        )
        raise typer.Exit(code=2)
    api_key = config.polygon_api_key.get_secret_value()
    logging_or_exit(service="ingest", log_dir=config.log_dir, level=config.log_level, secrets=config.secret_values())
    log = get_logger("ingest")
    rest = PolygonRest(
        api_key,
        config.polygon_rest_url,
        client=config.polygon_client,
        requests_per_minute=config.polygon_rest_requests_per_minute,
    )

    async def run() -> None:
        bus = await connect_bus(config)
        stop = stop_on_signals()
        conditions = await asyncio.to_thread(load_condition_table, rest)
        service = IngestService(
            config, bus, api_key=api_key, rest=rest, conditions=conditions, record=record, name=name
        )
        log.info(
            "order_flow.ingest_started",
            feed=config.polygon_feed,
            bus=bus.description,
            conditions=conditions.source,
            record=str(record) if record else None,
        )
        try:
            stats = await service.run(stop)
        finally:
            await bus.close()
            rest.close()
        log.info("order_flow.ingest_stopped", **stats.summary())

    run_ingest_or_exit(config, run, log)


def simulate_polygon(
    files: Annotated[list[Path], typer.Argument(help="Capture or flat files to play.", exists=True, dir_okay=False)],
    port: Annotated[int, typer.Option(help="Port for WebSocket (/stocks) and REST.")] = 8765,
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0 inside a container, so its peers reach it).")
    ] = "127.0.0.1",
    format: FormatOption = "auto",
    speed: Annotated[float, typer.Option(help="Market seconds per wall second.")] = 1.0,
    history: Annotated[
        list[Path] | None,
        typer.Option(
            "--history",
            help="Earlier days served by REST trades and quotes at their own "
            "times, for `orderflow calibrate` (repeat; same --format).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    history_trades: Annotated[
        int, typer.Option(min=1000, help="REST keeps at most this many trades per symbol, the newest.")
    ] = 1_000_000,
    config_file: ConfigFileOption = None,
) -> None:
    """A local server speaking Polygon's WebSocket protocol and REST trades and quotes, replaying files (no key, no internet).

    Clients must present POLYGON_API_KEY (from the environment: a key never goes on a command line), else 'simulator'.
    """  # noqa: E501  (its first lines are the command's help, as listed)

    from services.tools.simulator import PolygonSimulator
    from services.tools.simulator_timeline import load_timeline

    config = load_or_exit(config_file)
    key = config.polygon_api_key.get_secret_value() if config.polygon_api_key else "simulator"
    logging_or_exit(service="simulator", log_dir=None, level=config.log_level, secrets=[key])
    format = one_format_or_exit(format, list(files))
    timeline = load_timeline(format, list(files))
    if not timeline:
        stderr.print("no trades or quotes in the input")
        raise typer.Exit(code=2)

    async def run() -> None:
        archive = load_timeline(format, list(history)) if history else None
        simulator = await PolygonSimulator(
            timeline, api_key=key, speed=speed, archive=archive, history_trades=history_trades
        ).start(host=host, port=port)
        stdout.print(
            f"simulating Polygon on ws://127.0.0.1:{simulator.port}/stocks and http://127.0.0.1:{simulator.port} "
            f"({len(timeline):,} events at {speed:g}x); ORDER_FLOW_POLYGON_FEED=127.0.0.1:{simulator.port} "
            f"ORDER_FLOW_POLYGON_SECURE=false ORDER_FLOW_POLYGON_REST_URL=http://127.0.0.1:{simulator.port}"
        )
        stop = stop_on_signals()
        await stop.wait()
        await simulator.stop()

    asyncio.run(run())


def detect(
    symbol: Annotated[
        list[str] | None, typer.Option("--symbol", help="Monitor this symbol (repeat); default: open positions.")
    ] = None,
    consumer: Annotated[
        str | None, typer.Option(help="Consumer name in the group (default: detector-<hostname>).")
    ] = None,
    config_file: ConfigFileOption = None,
) -> None:
    """Run the detector service: consume the market streams, publish alerts and exit recommendations.

    Examples:
      REDIS_URL=redis://127.0.0.1:6379/0 orderflow detect             # the open positions of the registry
      REDIS_URL=redis://127.0.0.1:6379/0 orderflow detect --symbol AAPL
    """

    from orderflow_client.logs import get_logger
    from services.detector.service import DetectorService
    from services.offline.calibrate import RestHistory

    config = load_or_exit(config_file)
    logging_or_exit(service="detector", log_dir=config.log_dir, level=config.log_level, secrets=config.secret_values())
    log = get_logger("detector")
    conditions = condition_table(config)

    async def run() -> None:
        bus = await connect_bus(config)
        stop = stop_on_signals()
        history = RestHistory(config, conditions) if config.polygon_api_key is not None else None
        service = DetectorService(
            config, bus, symbols=symbol or None, consumer=consumer, conditions=conditions, history=history
        )
        log.info(
            "order_flow.detector_started",
            consumer=service.consumer,
            bus=bus.description,
            symbols=symbol or "open positions",
            conditions=conditions.source,
        )
        try:
            stats = await service.run(stop)
            await service.leave()
        finally:
            await bus.close()
        log.info(
            "order_flow.detector_stopped",
            events=stats.events,
            alerts=stats.alerts,
            exits=stats.exits,
            duplicates_suppressed=stats.duplicates_suppressed,
            warmed_up_events=stats.warmed_up_events,
        )

    serve_metrics_or_exit(config)
    collect_garbage_less_often()
    try:
        run_or_exit(run())
    except ConsumerGroupMissingError as error:
        stderr.print(f"[bold red]consumer group deleted under the detector:[/] {error}")
        raise typer.Exit(code=4) from None
    except NameInUseError as error:
        stderr.print(f"[bold red]name in use:[/] {error} (--consumer)")
        raise typer.Exit(code=6) from None


def risk_manager(
    name: Annotated[
        str, typer.Option(help="Bot name: recommendations are handled once per name, across restarts.")
    ] = "bot",
    config_file: ConfigFileOption = None,
) -> None:
    """A stand-in bot: follow exit recommendations for the open positions, evaluate and log the decisions."""

    from services.tools.stand_in_bot import run_stand_in_bot

    config = load_or_exit(config_file)
    logging_or_exit(
        service="risk_manager", log_dir=config.log_dir, level=config.log_level, secrets=config.secret_values()
    )
    keys = {config.signing_key_id: config.signing_key.get_secret_value().encode()} if config.signing_key else None

    async def run() -> None:
        bus = await connect_bus(config)
        try:
            await run_stand_in_bot(
                bus,
                stop_on_signals(),
                name=name,
                signing_keys=keys,
                max_age_seconds=config.signature_max_age_seconds,
                say=lambda line: stdout.print(line, highlight=False),
            )
        finally:
            await bus.close()

    run_or_exit(run())


def watch(
    once: Annotated[bool, typer.Option("--once", help="Print one snapshot and exit.")] = False,
    refresh: Annotated[float, typer.Option(help="Seconds between updates.")] = 0.5,
    config_file: ConfigFileOption = None,
) -> None:
    """A live terminal view: alerts, exit recommendations and monitoring state of the open positions (times in New York, ET).

    Example: REDIS_URL=redis://127.0.0.1:6379/0 orderflow watch
    """  # noqa: E501  (its first lines are the command's help, as listed)

    from services.tools.watch_live import run_watch

    config = load_or_exit(config_file)

    async def run() -> None:
        bus = await connect_bus(config)
        try:
            await run_watch(
                bus,
                stop_on_signals(),
                stdout,
                window_seconds=config.alert_window_seconds,
                refresh_seconds=refresh,
                once=once,
            )
        finally:
            await bus.close()

    run_or_exit(run())
