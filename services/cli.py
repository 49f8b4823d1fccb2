"""The ``orderflow`` command line.

Every command validates the configuration first and exits with status 2 and
one clear message when it is invalid, before touching Redis or the network.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import date, timedelta
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from orderflow_client.errors import BusUnavailableError, ConfigError, ConsumerGroupMissingError
from shared.acl import users_template
from shared.config import CONFIG_FILE_VARIABLE, DEFAULT_CONFIG_FILE, OrderFlowConfig, environment_name
from shared.config_loading import display_value, load_config, value_origins

ACL_FILE = Path("config/redis-users.acl")
SCHEMA_FILE = Path("config/config.schema.json")

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
    list[Path], typer.Argument(help="Input files (zip, csv, csv.gz, capture).", exists=True, dir_okay=False)
]
FormatOption = Annotated[
    str, typer.Option("--format", help="auto (from the file names) | capture | polygon-flat | lobster | algoseek")
]
SymbolOption = Annotated[str | None, typer.Option(help="Keep only this symbol.")]
DateOption = Annotated[
    str | None, typer.Option("--date", help="Trading day YYYY-MM-DD (LOBSTER files whose names lack it).")
]

stdout = Console()
stderr = Console(stderr=True, soft_wrap=True)  # an error is one line, whatever the terminal width


def formats_or_exit(format: str, files: list[Path]) -> dict[str, list[Path]]:
    """The files grouped by format: ``--format`` for all, or each told from its name when ``auto``; exit 2 for a
    format that is unknown or cannot be told. Warns about AlgoSeek trades given without their quotes."""
    from services.ingest.sources import detect_format

    groups: dict[str, list[Path]] = {}
    for path in files:
        try:
            kind = detect_format(path) if format == "auto" else format
        except ValueError as error:
            stderr.print(str(error))
            raise typer.Exit(code=2) from None
        source_or_exit(kind, None)
        groups.setdefault(kind, []).append(path)
    names = {path.name.lower() for path in groups.get("algoseek", [])}
    for name in sorted(names):
        if name.endswith("_trade.zip") and name.replace("_trade.zip", "_quote.zip") not in names:
            stderr.print(
                f"[yellow]warning: {name} without its quotes ({name.replace('_trade', '_quote')}): no NBBO, so trade sides "
                f"fall back to the tick test and the book rule sees nothing[/]",
                highlight=False,
                soft_wrap=True,
            )
    return groups


def format_or_exit(format: str, files: list[Path]) -> str:
    """The files' one format (see :func:`formats_or_exit`); exit 2 when they mix formats."""
    groups = formats_or_exit(format, files)
    if len(groups) != 1:
        stderr.print(
            f"the files mix formats ({', '.join(sorted(groups))}): give one format a run, or use `orderflow backtest`",
            soft_wrap=True,
        )
        raise typer.Exit(code=2)
    return next(iter(groups))


def nothing_read_or_exit(format: str, events: int, rejects) -> None:
    """Every row rejected, none read: the files are not ``format`` (one clear line, exit 2)."""
    if events == 0 and rejects.total:
        codes = ", ".join(f"{code} {count:,}" for code, count in sorted(rejects.by_code.items()))
        stderr.print(
            f"no event could be read as {format} ({rejects.total:,} rejected: {codes}): is --format right?",
            soft_wrap=True,
        )
        raise typer.Exit(code=2)


def source_or_exit(format: str, day: str | None) -> date | None:
    """Check ``--format`` and parse ``--date``; exit 2 with a message when wrong."""
    from services.ingest.sources import FORMATS

    if format not in FORMATS:
        stderr.print(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
        raise typer.Exit(code=2)
    try:
        return date.fromisoformat(day) if day else None
    except ValueError:
        stderr.print(f"--date {day!r} is not YYYY-MM-DD")
        raise typer.Exit(code=2) from None


async def connect_bus(config: OrderFlowConfig):
    """The bus of the configuration: ``REDIS_URL``, else the embedded one."""
    from orderflow_client.bus.connection import Bus

    redis_url = config.redis_url.get_secret_value() if config.redis_url else None
    return await Bus.connect(redis_url, prefix=config.key_prefix, stream_max_length=config.stream_max_length)


def serve_metrics_or_exit(config: OrderFlowConfig) -> None:
    from orderflow_client.metrics import serve_metrics

    try:
        serve_metrics(config.metrics_port, config.metrics_host)
    except OSError as error:
        stderr.print(f"[bold red]metrics port {config.metrics_port} unavailable:[/] {error}")
        raise typer.Exit(code=2) from None


def collect_garbage_less_often() -> None:
    """Long-running services allocate an object or more per market event: with CPython's default thresholds
    (700 allocations) a young-generation collection runs every few events and full ones scan the rules'
    whole state. 50,000 / 20 / 100 took the detector from 36,300 to 44,800 events/s (bench.detector_bench)."""
    import gc

    gc.collect()
    gc.freeze()  # what start-up built (modules, calendar, condition table) is never scanned again
    gc.set_threshold(50_000, 20, 100)


def run_or_exit(main):
    """``asyncio.run(main)``; Redis unreachable after every retry → exit 3 with the reason."""
    try:
        return asyncio.run(main)
    except BusUnavailableError as error:
        stderr.print(f"[bold red]redis unavailable:[/] {error}")
        raise typer.Exit(code=3) from None


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (call inside the running loop)."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    return stop


def events_progress(description: str) -> tuple[Progress, object]:
    """A progress bar counting events (silent when stderr is not a terminal)."""
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,} events"),
        TimeElapsedColumn(),
        console=stderr,
        disable=not stderr.is_terminal,
    )
    return progress, progress.add_task(description, total=None)


def logging_or_exit(**settings) -> None:
    """``configure_logging(**settings)``; an unusable log folder → one clear line and exit 2."""
    from orderflow_client.logs import configure_logging

    try:
        configure_logging(**settings)
    except OSError as error:
        stderr.print(f"[bold red]log folder unusable:[/] {error} (ORDER_FLOW_LOG_DIR)", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


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
        document = {
            name: {"variable": variable, "value": value, "origin": origin} for name, variable, value, origin in rows
        }
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
    for secret in (
        "polygon_api_key",
        "redis_password",
        "redis_ingest_password",
        "redis_detector_password",
        "redis_bot_password",
    ):
        schema["properties"].pop(secret, None)  # environment only
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


@config_app.command("redis-users")
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


@app.command()
def scenario(
    name: Annotated[str | None, typer.Argument(help="Scenario name (see --list).", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Capture file to write.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same bytes.")] = 7,
    list_them: Annotated[
        bool, typer.Option("--list", help="List the scenarios and what a correct detector reports.")
    ] = False,
) -> None:
    """Write a deterministic synthetic session (capture format) for demos and tests."""
    from services.tools.scenarios import EXPECTATIONS, SCENARIOS, write_scenario

    if list_them or name is None:
        table = Table(title="scenarios (expected detector output with default settings)", title_justify="left")
        for column in ("name", "alerts", "exits", "statuses"):
            table.add_column(column, overflow="fold")
        for scenario_name in SCENARIOS:
            expected = EXPECTATIONS[scenario_name]
            alerts = ", ".join(
                f"{kind}/{source}/{severity}{'/two-sided' if two_sided else ''}"
                for kind, source, severity, two_sided in expected.alerts
            )
            table.add_row(
                scenario_name,
                alerts or "none",
                ", ".join(expected.exits) or "none",
                ", ".join(expected.statuses) or "-",
            )
        stdout.print(table)
        return
    if name not in SCENARIOS:
        stderr.print(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
        raise typer.Exit(code=2)
    if out is None:
        stderr.print("--out FILE is required")
        raise typer.Exit(code=2)
    frames = write_scenario(name, out, seed)
    stdout.print(f"wrote {frames:,} frames of scenario {name!r} to {out}")


@app.command()
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
    from services.ingest.replay import ReplayWorkerError, SourceSpec, replay_files

    config = load_or_exit(config_file)
    format = format_or_exit(format, list(files))
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

    async def run():
        bus = await connect_bus(config)
        if bus.embedded:
            stderr.print("[yellow]REDIS_URL is unset: replaying into the embedded bus, which ends with this process[/]")
        try:
            progress, task = events_progress(f"replaying {format}")
            with progress:
                return await replay_files(
                    bus, spec, conditions=conditions, speed=speed, on_published=lambda n: progress.advance(task, n)
                )
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
    table = Table(title="replay summary", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for kind, count in sorted(summary.events_by_kind.items()):
        table.add_row(f"events: {kind}", f"{count:,}")
    table.add_row("events published", f"{summary.published:,}")
    for code, count in sorted(summary.rejects.by_code.items()):
        table.add_row(f"rejected: {code}", f"{count:,}")
    table.add_row("duplicates dropped", f"{summary.duplicates:,}")
    table.add_row("symbols", ", ".join(sorted(summary.symbols)) or "-")
    table.add_row("elapsed", f"{summary.elapsed_seconds:.2f} s")
    table.add_row("rate", f"{summary.events_per_second:,.0f} events/s")
    stdout.print(table)


@app.command()
def analyze(
    files: FilesArgument,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for alerts.jsonl, exits.jsonl, statuses.jsonl, summary.json.")
    ],
    format: FormatOption = "auto",
    symbol: SymbolOption = None,
    day: DateOption = None,
    emit_trades: Annotated[
        bool, typer.Option("--emit-trades", help="Also write trades.jsonl with each trade's side.")
    ] = False,
    profile: Annotated[
        list[Path] | None,
        typer.Option(
            "--profile",
            help="A profile from `calibrate --out` (repeat): history before the files.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    config_file: ConfigFileOption = None,
) -> None:
    """Run the detector's rules over files in this process (no Redis) and write what they find.

    Examples:
      orderflow analyze LOBSTER_SampleFile_AAPL_2012-06-21_1.zip --out out/
      orderflow analyze 20131008_trade.zip 20131008_quote.zip --profile profiles/BAC.json --out out/

    Each day is judged walk-forward: with thresholds from the sessions before it (the files' earlier days,
    after any --profile), or calibrated from its own first minutes.
    """
    from services.offline.analyze import analyze as run_analysis

    config = load_or_exit(config_file)
    format = format_or_exit(format, list(files))
    trading_day = source_or_exit(format, day)
    profiles = profiles_or_exit(profile or [])
    logging_or_exit(
        service="analyze", log_dir=None, level=config.log_level, secrets=config.secret_values(), console=False
    )
    progress, task = events_progress(f"analyzing {format}")
    with progress:
        summary = run_analysis(
            format,
            list(files),
            out,
            config,
            symbol=symbol,
            day=trading_day,
            emit_trades=emit_trades,
            conditions=condition_table(config),
            on_progress=lambda n: progress.advance(task, n),
            profiles=profiles,
        )
    nothing_read_or_exit(format, summary.events, summary.rejects)
    document = summary.as_document()
    table = Table(title=f"analysis written to {out}", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("events", f"{document['events']:,}")
    table.add_row("symbols", ", ".join(document["symbols"]) or "-")
    for key, count in document["alerts_by_type_and_severity"].items():
        table.add_row(f"alerts: {key}", f"{count:,}")
    table.add_row("exit recommendations", f"{document['exits']:,}")
    for code, count in document["validation_errors_by_code"].items():
        table.add_row(f"validation errors: {code}", f"{count:,}")
    for code, count in document["rejects_by_code"].items():
        table.add_row(f"rejected: {code}", f"{count:,}")
    table.add_row("rate", f"{document['events_per_second'] or 0:,} events/s")
    stdout.print(table)


@app.command()
def backtest(
    files: FilesArgument,
    out: Annotated[Path, typer.Option("--out", help="Folder for report.json, report.html (and sweep.json).")],
    format: Annotated[
        str, typer.Option("--format", help="auto (from each file's name) | capture | polygon-flat | lobster | algoseek")
    ] = "auto",
    symbol: SymbolOption = None,
    positions: Annotated[
        Path | None,
        typer.Option(
            "--positions",
            help="CSV of symbol,entry_time,entry_price,quantity,stop "
            "(entry_time ISO, New York if no zone); default: one long from each open.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    horizon: Annotated[
        list[int] | None,
        typer.Option("--horizon", help="Forward horizon in seconds (repeat; default 30, 60, 300, 900)."),
    ] = None,
    fall_bps: Annotated[
        float, typer.Option("--fall-bps", min=0.1, help="A fall (hit) or rise (false positive) this large, in bps.")
    ] = 10.0,
    sweep_items: Annotated[
        list[str] | None,
        typer.Option(
            "--sweep",
            help="key=v1,v2,… (repeat): a grid of settings ranked on earlier days, scored on the last --test-days.",
        ),
    ] = None,
    test_days: Annotated[int, typer.Option("--test-days", min=1, help="Held-out days of a sweep.")] = 1,
    profile: Annotated[
        list[Path] | None,
        typer.Option("--profile", help="A profile from `calibrate --out` (repeat).", exists=True, dir_okay=False),
    ] = None,
    config_file: ConfigFileOption = None,
) -> None:
    """What following the signals is worth, against chance and net of the spread: report.json and report.html.

    Examples:
      orderflow backtest LOBSTER_SampleFile_AMZN_2012-06-21_5.zip 20131007_trade.zip 20131007_quote.zip --out backtest/
      orderflow backtest day1.zip day2.zip --positions trades.csv --horizon 60 --horizon 300 --out backtest/
      orderflow backtest bac/*.zip --sweep large_order_quantile=0.995,0.999 --out sweep/
    """
    from services.ingest.sources import read_events
    from services.offline import backtest as backtesting
    from services.offline.report_html import render
    from shared.config_loading import load_config

    config = load_or_exit(config_file)
    logging_or_exit(
        service="backtest", log_dir=None, level=config.log_level, secrets=config.secret_values(), console=False
    )
    groups = formats_or_exit(format, list(files))
    try:
        grid = backtesting.parse_sweep(sweep_items or [])
        chosen = backtesting.read_positions(positions) if positions else None
    except (ValueError, OSError) as error:
        stderr.print(str(error))
        raise typer.Exit(code=2) from None
    profiles = profiles_or_exit(profile or [])
    settings = backtesting.BacktestSettings(
        horizons=tuple(horizon) if horizon else backtesting.DEFAULT_HORIZONS, fall_bps=fall_bps
    )
    conditions = condition_table(config)

    def run(with_config, description: str):
        progress, task = events_progress(description)
        with progress:
            event_groups = [read_events(kind, paths, symbol=symbol) for kind, paths in groups.items()]
            return backtesting.collect(
                event_groups,
                with_config,
                conditions=conditions,
                profiles=profiles,
                on_progress=lambda n: progress.advance(task, n),
            )

    found = run(config, "backtesting")
    if not found.tapes:
        stderr.print("no regular-session quotes in the input: nothing to price the signals against")
        raise typer.Exit(code=1)
    document = backtesting.report(found, settings, chosen)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(document, indent=2) + "\n")
    chart_horizon = 300 if 300 in settings.horizons else settings.horizons[0]
    (out / "report.html").write_text(
        render(
            document,
            backtesting.chart_data(found),
            backtesting.forward_distributions(found, settings, chart_horizon),
            chart_horizon,
        )
    )
    wide = Console(width=max(stdout.width, 150)) if not stdout.is_terminal else stdout  # files and pipes get whole rows
    table = Table(title=f"signals versus chance (written to {out})", title_justify="left")
    for column in (
        "signal",
        "horizon",
        "n",
        "mean fwd bps",
        "base",
        "difference [95%]",
        "fall rate",
        "base rate",
        "lift",
    ):
        table.add_column(column, justify="left" if column == "signal" else "right")
    for kind, by_horizon in document["versus_chance"]["by_kind"].items():
        for hz, r in by_horizon.items():
            interval = r["difference_ci95_bps"]
            table.add_row(
                kind,
                f"{hz} s",
                str(r["signals"]),
                str(r["mean_forward_bps"]),
                str(r["base_mean_forward_bps"]),
                f"{r['difference_bps']} [{interval[0]}, {interval[1]}]",
                str(r["hit_rate"]),
                str(r["base_hit_rate"]),
                str(r["lift"]),
            )
    wide.print(table)
    summary = document["following_exits"]["summary"]
    stdout.print(
        f"following exits: {summary['exited']} of {summary['positions']} positions exited; "
        f"saved vs holding 5 min, net of half spread: {summary['by_horizon'].get('300', {}).get('saved_net_bps_mean')} bps; "
        f"vs holding to stop/close: {summary['saved_vs_hold_to_stop_or_close_bps_mean']} bps "
        f"(a random exit in the same sessions: {summary['chance_saved_vs_hold_to_stop_or_close_bps_mean']} bps)"
    )
    if grid:

        def with_overrides(overrides: dict[str, str]):
            try:
                return run(load_config(config_file, **overrides), f"sweep {overrides}")
            except ConfigError as error:
                stderr.print(f"[bold red]--sweep:[/] {error}")
                raise typer.Exit(code=2) from None

        try:
            result = backtesting.sweep(grid, with_overrides, test_days=test_days, horizon=chart_horizon)
        except ValueError as error:
            stderr.print(str(error))
            raise typer.Exit(code=2) from None
        (out / "sweep.json").write_text(json.dumps(result, indent=2) + "\n")
        ranking = Table(
            title=f"sweep: ranked on {', '.join(result['train_days'])}; held out {', '.join(result['test_days'])}",
            title_justify="left",
        )
        for column in (
            "settings",
            "train: exits, saved bps (chance)",
            "held out: exits, saved bps (chance) [95% vs chance]",
        ):
            ranking.add_column(column)
        for row in result["ranked_by_train"]:
            train, test = row["train"], row["test"]
            ranking.add_row(
                " ".join(f"{key}={value}" for key, value in row["settings"].items()),
                f"{train['exits']}, {train['saved_net_bps_mean']} ({train['base_saved_net_bps_mean']})",
                f"{test['exits']}, {test['saved_net_bps_mean']} ({test['base_saved_net_bps_mean']}) {test['difference_ci95_bps']}",
            )
        wide.print(ranking)


def profiles_or_exit(paths: list[Path]) -> dict:
    from services.detector.profiles import ProfileError
    from services.offline.calibrate import read_profiles

    try:
        return read_profiles(paths)
    except (ProfileError, OSError) as error:
        stderr.print(f"[bold red]profile unreadable:[/] {error}")
        raise typer.Exit(code=2) from None


@app.command()
def calibrate(
    symbols: Annotated[
        list[str] | None,
        typer.Argument(help="Tickers to calibrate (with files: those to keep; all when omitted).", show_default=False),
    ] = None,
    files: Annotated[
        list[Path] | None,
        typer.Option("--file", help="History files (repeat); without them, Polygon REST.", exists=True, dir_okay=False),
    ] = None,
    format: FormatOption = "auto",
    days: Annotated[
        int, typer.Option("--days", min=1, max=60, help="Trading days of REST history (ending --end).")
    ] = 5,
    end: Annotated[
        str | None,
        typer.Option("--end", help="Last REST day YYYY-MM-DD (default: the last trading day before today)."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Also write SYM.json profiles into this folder.")] = None,
    no_store: Annotated[bool, typer.Option("--no-store", help="Do not store the profiles on the bus.")] = False,
    config_file: ConfigFileOption = None,
) -> None:
    """Build each symbol's profile (order sizes, displayed sizes, burst ratios, intraday volume curve, spread) from history
    and store it under orderflow:profile:{SYM} for the detector.

    Examples:
      orderflow calibrate BAC --file 20131007_trade.zip --file 20131007_quote.zip --format algoseek
      orderflow calibrate AAPL MSFT --days 5      # Polygon REST, POLYGON_API_KEY set
    """
    from services.detector.profile_store import ProfileStore
    from services.ingest.polygon_rest_client import PolygonRest, RestError
    from services.ingest.rejects import RejectCounter
    from services.ingest.sources import read_events
    from services.offline.calibrate import profiles_from_events, rest_events, trading_days, write_profile

    config = load_or_exit(config_file)
    if files:
        format = format_or_exit(format, list(files))
        source_or_exit(format, None)
    logging_or_exit(
        service="calibrate", log_dir=None, level=config.log_level, secrets=config.secret_values(), console=False
    )
    wanted = [symbol.upper() for symbol in symbols or []]
    conditions = condition_table(config)
    rejects = RejectCounter()
    progress, task = events_progress("calibrating")
    profiles = {}
    with progress:
        advance = lambda n: progress.advance(task, n)  # noqa: E731
        if files:
            events = read_events(format, list(files))
            if wanted:
                events = (event for event in events if getattr(event, "symbol", None) in wanted)
            profiles = profiles_from_events(
                events, config, source="files", conditions=conditions, rejects=rejects, on_progress=advance
            )
        else:
            if config.polygon_api_key is None or not config.polygon_api_key.get_secret_value():
                stderr.print("calibrating from Polygon REST needs POLYGON_API_KEY (or give history with --file)")
                raise typer.Exit(code=2)
            if not wanted:
                stderr.print("name the symbols to calibrate from Polygon REST")
                raise typer.Exit(code=2)
            try:
                last = date.fromisoformat(end) if end else date.today() - timedelta(days=1)
            except ValueError:
                stderr.print(f"--end {end!r} is not YYYY-MM-DD")
                raise typer.Exit(code=2) from None
            rest = PolygonRest(
                config.polygon_api_key.get_secret_value(),
                config.polygon_rest_url,
                requests_per_minute=config.polygon_rest_requests_per_minute,
            )
            multiplier = config.round_lot_size if config.quote_size_unit == "round_lots" else 1
            try:
                for symbol in wanted:
                    history = (
                        event
                        for day in trading_days(last, days)
                        for event in rest_events(rest, symbol, day, quote_size_multiplier=multiplier)
                    )
                    profiles.update(
                        profiles_from_events(
                            history, config, source="rest", conditions=conditions, rejects=rejects, on_progress=advance
                        )
                    )
            except RestError as error:
                stderr.print(f"[bold red]Polygon REST failed:[/] {error}")
                raise typer.Exit(code=3) from None
            finally:
                rest.close()
    missing = [symbol for symbol in wanted if symbol not in profiles]
    table = Table(title="profiles", title_justify="left")
    for column in (
        "symbol",
        "sessions",
        "large order (shares)",
        "large offer (shares)",
        "daily volume",
        "spread (bps)",
        "curve",
    ):
        table.add_column(column, justify="left" if column in ("symbol", "sessions") else "right")
    for symbol, built in sorted(profiles.items()):
        quantile = dict(built.order_size_quantiles)
        offers = dict(built.offer_size_quantiles)
        table.add_row(
            symbol,
            f"{built.first_day}..{built.last_day} ({len(built.days)})",
            f"{quantile.get(0.999, 0):,} (q0.999)",
            f"{offers.get(0.999, 0):,} (q0.999)",
            f"{built.daily_volume:,}",
            f"{built.spread_bps:g}",
            "yes" if built.volume_curve else "no (no full session)",
        )
        if out is not None:
            write_profile(built, out)
    stdout.print(table)
    for code, count in rejects.by_code.items():
        stdout.print(f"rejected {code}: {count:,}")
    if profiles and not no_store and config.redis_url is None:
        stdout.print(
            "REDIS_URL is not set: profiles not stored (the embedded bus ends with this command); --out keeps them"
        )
    elif profiles and not no_store:

        async def store() -> None:
            bus = await connect_bus(config)
            try:
                for built in profiles.values():
                    await ProfileStore(bus).save(built)
            finally:
                await bus.close()
            stdout.print(f"stored {len(profiles)} profile(s) on {bus.description}")

        run_or_exit(store())
    if missing or not profiles:
        stderr.print(f"no regular-session history for: {', '.join(missing) or 'any symbol'}")
        raise typer.Exit(code=1)


@app.command()
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

    config = load_or_exit(config_file)
    logging_or_exit(service="detector", log_dir=config.log_dir, level=config.log_level, secrets=config.secret_values())
    log = get_logger("detector")
    conditions = condition_table(config)

    async def run() -> None:
        bus = await connect_bus(config)
        stop = stop_on_signals()
        service = DetectorService(config, bus, symbols=symbol or None, consumer=consumer, conditions=conditions)
        log.info(
            "order_flow.detector_started",
            consumer=service.consumer,
            bus=bus.description,
            symbols=symbol or "open positions",
            conditions=conditions.source,
        )
        try:
            stats = await service.run(stop)
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


@app.command()
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


def _with_registry(config_file: Path | None, action):
    """Run ``action(registry)`` against the configured bus; exit 3 if Redis is down."""
    from orderflow_client.positions import PositionRegistry

    config = load_or_exit(config_file)
    if config.redis_url is None:
        stderr.print("[yellow]REDIS_URL is unset: the embedded bus forgets positions when this command ends[/]")

    async def run():
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


@positions_app.command("open")
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


@positions_app.command("close")
def positions_close(
    symbol: Annotated[str, typer.Argument(help="Ticker.")], config_file: ConfigFileOption = None
) -> None:
    """Remove a position: monitoring of the symbol stops."""
    removed = _with_registry(config_file, lambda registry: registry.close(symbol))
    stdout.print(f"closed {symbol.upper()}" if removed else f"{symbol.upper()} was not open")


@positions_app.command("list")
def positions_list(config_file: ConfigFileOption = None) -> None:
    """List the open positions."""
    from orderflow_client.prices import format_price

    positions = _with_registry(config_file, lambda registry: registry.list())
    table = Table(title="open positions", title_justify="left")
    for column in ("symbol", "quantity", "entry", "stop loss"):
        table.add_column(column)
    for position in positions:
        table.add_row(
            position.symbol,
            f"{position.quantity:,}",
            format_price(position.entry_price),
            format_price(position.stop_loss) if position.stop_loss else "-",
        )
    stdout.print(table)


@app.command()
def ingest(
    record: Annotated[
        Path | None, typer.Option(help="Record every frame: <RECORD>-YYYY-MM-DD.capture, one file per UTC day.")
    ] = None,
    config_file: ConfigFileOption = None,
) -> None:
    """Live ingest: Polygon WebSocket trades and quotes of the open positions onto the streams.

    Example: POLYGON_API_KEY=… REDIS_URL=redis://127.0.0.1:6379/0 orderflow ingest --record captures/live
    """

    from orderflow_client.logs import get_logger
    from services.ingest.live import FeedAuthError, IngestService
    from services.ingest.polygon_rest_client import PolygonRest, load_condition_table

    config = load_or_exit(config_file)
    if config.polygon_api_key is None:
        stderr.print(
            "[bold red]POLYGON_API_KEY is not set:[/] live ingest needs it (try `orderflow demo`, or "
            "`orderflow simulate-polygon` for a local feed)"
        )
        raise typer.Exit(code=2)
    api_key = config.polygon_api_key.get_secret_value()
    logging_or_exit(service="ingest", log_dir=config.log_dir, level=config.log_level, secrets=config.secret_values())
    log = get_logger("ingest")
    rest = PolygonRest(api_key, config.polygon_rest_url, requests_per_minute=config.polygon_rest_requests_per_minute)

    async def run() -> None:
        bus = await connect_bus(config)
        stop = stop_on_signals()
        conditions = await asyncio.to_thread(load_condition_table, rest)
        service = IngestService(config, bus, api_key=api_key, rest=rest, conditions=conditions, record=record)
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
        log.info(
            "order_flow.ingest_stopped",
            frames=stats.frames,
            events=stats.events,
            reconnects=stats.reconnects,
            gaps=stats.gaps,
            backfilled=stats.backfilled,
            dropped_frames=stats.dropped_frames,
            rejects=stats.rejects.total,
        )

    serve_metrics_or_exit(config)
    collect_garbage_less_often()
    try:
        run_or_exit(run())
    except FeedAuthError as error:
        log.error("order_flow.feed_auth_failed", code=error.code, reason=str(error))
        stderr.print(f"[bold red]authentication failed:[/] {error}")
        raise typer.Exit(code=5) from None


@app.command("simulate-polygon")
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
    """

    from services.tools.simulator import PolygonSimulator, load_timeline

    config = load_or_exit(config_file)
    key = config.polygon_api_key.get_secret_value() if config.polygon_api_key else "simulator"
    logging_or_exit(service="simulator", log_dir=None, level=config.log_level, secrets=[key])
    format = format_or_exit(format, list(files))
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


@app.command("risk-manager")
def risk_manager(
    name: Annotated[
        str, typer.Option(help="Bot name: recommendations are handled once per name, across restarts.")
    ] = "bot",
    config_file: ConfigFileOption = None,
) -> None:
    """A stand-in bot: follow exit recommendations for the open positions, evaluate and log the decisions."""

    from orderflow_client.bus.calls import OUTAGE_ERRORS
    from orderflow_client.decisions import evaluate, last_trade_price, log_decision
    from orderflow_client.logs import get_logger
    from orderflow_client.positions import PositionRegistry
    from orderflow_client.risk import RiskManagerClient

    config = load_or_exit(config_file)
    logging_or_exit(
        service="risk_manager", log_dir=config.log_dir, level=config.log_level, secrets=config.secret_values()
    )
    log = get_logger("risk_manager")

    async def run() -> None:
        bus = await connect_bus(config)
        registry = PositionRegistry(bus)
        held: set[str] = set(await registry.symbols())
        stop = stop_on_signals()

        async def on_exit(recommendation) -> None:
            positions = {position.symbol: position for position in await registry.list()}
            position = positions.get(recommendation.symbol)
            price = await last_trade_price(bus, recommendation.symbol)
            if position is None or price is None:
                log.warning(
                    "order_flow.recommendation_ignored",
                    id=recommendation.id,
                    symbol=recommendation.symbol,
                    reason="no open position" if position is None else "no last price",
                )
                return
            decision = evaluate(recommendation, position, price)
            log_decision(recommendation, position, price, decision)
            stdout.print(f"{recommendation.symbol}: {decision.action} ({decision.reasons[0]})", highlight=False)

        async def refresh_held() -> None:
            while not stop.is_set():
                try:
                    symbols = await registry.symbols()
                except OUTAGE_ERRORS:  # Redis away: keep the positions last read (the client reports the outage)
                    symbols = list(held)
                held.clear()
                held.update(symbols)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
                except TimeoutError:
                    pass

        keys = {config.signing_key_id: config.signing_key.get_secret_value().encode()} if config.signing_key else None
        client = RiskManagerClient(
            bus,
            name=name,
            held_symbols=lambda: held,
            signing_keys=keys,
            max_age_seconds=config.signature_max_age_seconds,
        )
        log.info("order_flow.risk_manager_started", name=name, bus=bus.description, held=sorted(held))
        refresher = asyncio.ensure_future(refresh_held())
        try:
            stats = await client.run(stop, on_exit=on_exit)
        finally:
            await refresher
            await bus.close()
        log.info(
            "order_flow.risk_manager_stopped",
            handled=stats.handled,
            duplicates=stats.duplicates,
            unmonitored=sorted(stats.unmonitored),
        )

    run_or_exit(run())


@app.command()
def watch(
    once: Annotated[bool, typer.Option("--once", help="Print one snapshot and exit.")] = False,
    refresh: Annotated[float, typer.Option(help="Seconds between updates.")] = 0.5,
    config_file: ConfigFileOption = None,
) -> None:
    """A live terminal view: alerts, exit recommendations and monitoring state of the open positions (times in New York, ET).

    Example: REDIS_URL=redis://127.0.0.1:6379/0 orderflow watch
    """

    from rich.live import Live

    from orderflow_client.bus.calls import OUTAGE_ERRORS
    from orderflow_client.timestamps import now_ns
    from services.tools.watch import WatchState, follow, render, starting_ids

    config = load_or_exit(config_file)

    async def run() -> None:
        bus = await connect_bus(config)
        state = WatchState(window_ns=config.alert_window_seconds * 1_000_000_000)
        positions: list[str] = []
        last_ids = await starting_ids(bus)
        stop = stop_on_signals()
        try:
            await follow(bus, state, positions, last_ids)
            if once:
                stdout.print(render(state, positions, now_ns()))
                return
            with Live(render(state, positions, now_ns()), console=stdout, refresh_per_second=4, screen=False) as live:
                while not stop.is_set():
                    try:
                        await follow(bus, state, positions, last_ids)
                        state.unreachable_since = 0
                    except OUTAGE_ERRORS:  # the view stays up and says so; it catches up when Redis is back
                        state.unreachable_since = state.unreachable_since or now_ns()
                    live.update(render(state, positions, now_ns()))
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=refresh)
                    except TimeoutError:
                        pass
        finally:
            await bus.close()

    run_or_exit(run())


def condition_table(config: OrderFlowConfig):
    """Polygon's live condition table when a key is configured, else the bundled one."""
    from services.ingest.polygon_rest_client import PolygonRest, load_condition_table

    if config.polygon_api_key is None:
        return load_condition_table(None)
    rest = PolygonRest(config.polygon_api_key.get_secret_value(), config.polygon_rest_url, attempts=3)
    try:
        return load_condition_table(rest)
    finally:
        rest.close()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
