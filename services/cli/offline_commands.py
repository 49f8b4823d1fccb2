"""``orderflow scenario | analyze | backtest | calibrate``: the commands that run over files, in this process."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orderflow_client.errors import ConfigError
from services.cli import render
from services.cli.common import (
    condition_table,
    connect_bus,
    events_progress,
    files_by_format_or_exit,
    load_or_exit,
    logging_or_exit,
    nothing_read_or_exit,
    one_format_or_exit,
    profiles_or_exit,
    run_or_exit,
    source_or_exit,
    stderr,
    stdout,
)
from services.cli.options import ConfigFileOption, DateOption, FilesArgument, FormatOption, SymbolOption
from shared.config import OrderFlowConfig

if TYPE_CHECKING:
    from services.detector.profiles import SymbolProfile
    from services.ingest.rejects import RejectCounter
    from services.offline.backtest.collect import Collected
    from shared.conditions import ConditionTable


def scenario(
    name: Annotated[str | None, typer.Argument(help="Scenario name (see --list).", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Capture file to write.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same bytes.")] = 7,
    list_them: Annotated[
        bool, typer.Option("--list", help="List the scenarios and what a correct detector reports.")
    ] = False,
) -> None:
    """Write a deterministic synthetic session (capture format) for demos and tests."""
    from services.tools.scenario_expectations import EXPECTATIONS
    from services.tools.scenarios import SCENARIOS, write_scenario

    if list_them or name is None:
        stdout.print(
            render.scenarios_table({scenario_name: EXPECTATIONS[scenario_name] for scenario_name in SCENARIOS})
        )
        return
    if name not in SCENARIOS:
        stderr.print(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
        raise typer.Exit(code=2)
    if out is None:
        stderr.print("--out FILE is required")
        raise typer.Exit(code=2)
    frames = write_scenario(name, out, seed)
    stdout.print(f"wrote {frames:,} frames of scenario {name!r} to {out}")


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
    format = one_format_or_exit(format, list(files))
    trading_day = source_or_exit(format, day)
    profiles = profiles_or_exit(profile or [])
    logging_or_exit(
        service="analyze", log_dir=None, level=config.log_level, secrets=config.secret_values(), console=False
    )
    progress, advance = events_progress(f"analyzing {format}")
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
            on_progress=advance,
            profiles=profiles,
        )
    nothing_read_or_exit(format, summary.events, summary.rejects)
    stdout.print(render.analysis_table(summary.report(), out))


def backtest(
    files: FilesArgument,
    out: Annotated[Path, typer.Option("--out", help="Folder for report.json, report.html (and sweep.json).")],
    format: Annotated[
        str,
        typer.Option(
            "--format", help="auto (from each file's name) | capture | polygon-flat | lobster | algoseek | dbn"
        ),
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
    drop_pct: Annotated[
        float,
        typer.Option(
            "--drop-pct", min=0.01, max=50, help="Success metrics: a drop of this % from the peak since entry."
        ),
    ] = 1.0,
    rise_pct: Annotated[
        float,
        typer.Option(
            "--rise-pct", min=0.01, max=50, help="Success metrics: a false-positive exit saw a rise of this % first."
        ),
    ] = 1.0,
    stop_loss_pct: Annotated[
        float,
        typer.Option("--stop-loss-pct", min=0, max=50, help="The stop of a position without one, % under its entry."),
    ] = 2.0,
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
      orderflow backtest aig/*.zip spy/*.zip --sweep exit_cost_multiple=0,1,2 --out sweep/

    The success metrics (exited before a --drop-pct drop, false-positive exits, alerts a symbol-day, exit P&L
    against a --stop-loss-pct stop alone, exits citing order flow) are in report.json, report.html and printed.
    """
    from services.ingest.sources import read_events
    from services.offline.backtest.collect import collect
    from services.offline.backtest.models import DEFAULT_HORIZONS, BacktestSettings
    from services.offline.backtest.positions import read_positions
    from services.offline.backtest.report import write_report, write_sweep
    from services.offline.backtest.sweep import parse_sweep, sweep
    from shared.config_loading import load_config

    config = load_or_exit(config_file)
    logging_or_exit(
        service="backtest", log_dir=None, level=config.log_level, secrets=config.secret_values(), console=False
    )
    groups = files_by_format_or_exit(format, list(files))
    try:
        grid = parse_sweep(sweep_items or [])
        chosen = read_positions(positions) if positions else None
    except (ValueError, OSError) as error:
        stderr.print(str(error))
        raise typer.Exit(code=2) from None
    profiles = profiles_or_exit(profile or [])
    index_symbols = tuple(dict.fromkeys((*config.market_symbols, *config.sector_etfs.values())))
    settings = BacktestSettings(
        horizons=tuple(horizon) if horizon else DEFAULT_HORIZONS,
        fall_bps=fall_bps,
        drop_pct=drop_pct,
        rise_pct=rise_pct,
        stop_loss_pct=stop_loss_pct,
        exit_horizon=config.exit_horizon_seconds,
        index_symbols=index_symbols,
    )
    conditions = condition_table(config)

    def run(with_config: OrderFlowConfig, description: str) -> Collected:
        progress, advance = events_progress(description)
        with progress:
            event_groups = [read_events(kind, paths, symbol=symbol) for kind, paths in groups.items()]
            return collect(event_groups, with_config, conditions=conditions, profiles=profiles, on_progress=advance)

    found = run(config, "backtesting")
    if not found.tapes:
        stderr.print("no regular-session quotes in the input: nothing to price the signals against")
        raise typer.Exit(code=1)
    findings = write_report(out, found, settings, chosen)
    wide = render.wide(stdout)
    wide.print(render.versus_chance_table(findings, out))
    stdout.print(render.following_exits_line(findings))
    success = render.success_metrics_table(findings)
    if success is not None:
        wide.print(success)
    if grid:

        def with_overrides(overrides: dict[str, str]) -> Collected:
            try:
                return run(load_config(config_file, **overrides), f"sweep {overrides}")
            except ConfigError as error:
                stderr.print(f"[bold red]--sweep:[/] {error}")
                raise typer.Exit(code=2) from None

        try:
            result = sweep(
                grid,
                with_overrides,
                test_days=test_days,
                horizon=config.exit_horizon_seconds,
                index_symbols=index_symbols,
            )
        except ValueError as error:
            stderr.print(str(error))
            raise typer.Exit(code=2) from None
        write_sweep(out, result)
        wide.print(render.sweep_table(result))


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
    """  # noqa: E501  (its first lines are the command's help, as listed)
    from services.ingest.rejects import RejectCounter
    from services.offline.calibrate import calibration_report, profiles_from_files, write_profile

    config = load_or_exit(config_file)
    if files:
        format = one_format_or_exit(format, list(files))
        source_or_exit(format, None)
    logging_or_exit(
        service="calibrate", log_dir=None, level=config.log_level, secrets=config.secret_values(), console=False
    )
    wanted = [symbol.upper() for symbol in symbols or []]
    conditions = condition_table(config)
    rejects = RejectCounter()
    progress, advance = events_progress("calibrating")
    with progress:
        if files:
            profiles = profiles_from_files(
                format, list(files), wanted, config, conditions=conditions, rejects=rejects, on_progress=advance
            )
        else:
            profiles = _profiles_from_rest_or_exit(config, wanted, days, end, conditions, rejects, advance)
    report = calibration_report(profiles, rejects, wanted)
    if out is not None:
        for _symbol, built in sorted(profiles.items()):
            write_profile(built, out)
    stdout.print(render.calibration_table(report))
    for code, count in report.rejects_by_code.items():
        stdout.print(f"rejected {code}: {count:,}")
    if profiles and not no_store and config.redis_url is None:
        stdout.print(
            "REDIS_URL is not set: profiles not stored (the embedded bus ends with this command); --out keeps them"
        )
    elif profiles and not no_store:
        run_or_exit(_store(config, profiles))
    if report.missing or not profiles:
        stderr.print(f"no regular-session history for: {', '.join(report.missing) or 'any symbol'}")
        raise typer.Exit(code=1)


def _profiles_from_rest_or_exit(
    config: OrderFlowConfig,
    wanted: list[str],
    days: int,
    end: str | None,
    conditions: ConditionTable,
    rejects: RejectCounter,
    advance: Callable[[int], None],
) -> dict[str, SymbolProfile]:
    """The profiles of ``wanted`` from Polygon REST; exit 2 without a key, symbols or a valid ``--end``, exit 3
    when REST fails."""
    from services.ingest.polygon_rest_client import PolygonRest, RestError
    from services.offline.calibrate import profiles_from_rest

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
        client=config.polygon_client,
        requests_per_minute=config.polygon_rest_requests_per_minute,
    )
    try:
        return profiles_from_rest(
            rest, wanted, last, days, config, conditions=conditions, rejects=rejects, on_progress=advance
        )
    except RestError as error:
        stderr.print(f"[bold red]Polygon REST failed:[/] {error}")
        raise typer.Exit(code=3) from None
    finally:
        rest.close()


async def _store(config: OrderFlowConfig, profiles: dict[str, SymbolProfile]) -> None:
    """Store the profiles on the configured bus (``orderflow:profile:{SYM}``) and say so."""
    from services.detector.profile_store import ProfileStore

    bus = await connect_bus(config)
    try:
        for built in profiles.values():
            await ProfileStore(bus).save(built)
    finally:
        await bus.close()
    stdout.print(f"stored {len(profiles)} profile(s) on {bus.description}")
