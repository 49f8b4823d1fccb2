"""What every command shares: the two consoles, the ``*_or_exit`` checks (one clear line and exit 2 — or 3 when
Redis is unreachable — instead of a traceback), the bus, metrics, logging and signal set-up, progress bars.

Heavy modules (the parsers, the bus) are imported inside the functions, so ``orderflow --help`` stays quick.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from orderflow_client.errors import BusUnavailableError, ConfigError
from shared.config import OrderFlowConfig
from shared.config_loading import load_config

if TYPE_CHECKING:
    from orderflow_client.bus.connection import Bus
    from services.detector.profiles import SymbolProfile
    from services.ingest.rejects import RejectCounter
    from shared.conditions import ConditionTable

Result = TypeVar("Result")

stdout = Console()
stderr = Console(stderr=True, soft_wrap=True)  # an error is one line, whatever the terminal width


def files_by_format_or_exit(format: str, files: list[Path]) -> dict[str, list[Path]]:
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
                f"[yellow]warning: {name} without its quotes ({name.replace('_trade', '_quote')}): no NBBO, so "
                f"trade sides fall back to the tick test and the book rule sees nothing[/]",
                highlight=False,
                soft_wrap=True,
            )
    return groups


def one_format_or_exit(format: str, files: list[Path]) -> str:
    """The files' one format (see :func:`files_by_format_or_exit`); exit 2 when they mix formats."""
    groups = files_by_format_or_exit(format, files)
    if len(groups) != 1:
        stderr.print(
            f"the files mix formats ({', '.join(sorted(groups))}): give one format a run, or use `orderflow backtest`",
            soft_wrap=True,
        )
        raise typer.Exit(code=2)
    return next(iter(groups))


def nothing_read_or_exit(format: str, events: int, rejects: RejectCounter) -> None:
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


def profiles_or_exit(paths: list[Path]) -> dict[str, SymbolProfile]:
    """The profiles of ``--profile`` files; exit 2 when one is unreadable."""
    from services.detector.profiles import ProfileError
    from services.offline.calibrate import read_profiles

    try:
        return read_profiles(paths)
    except (ProfileError, OSError) as error:
        stderr.print(f"[bold red]profile unreadable:[/] {error}")
        raise typer.Exit(code=2) from None


async def connect_bus(config: OrderFlowConfig) -> Bus:
    """The bus of the configuration: ``REDIS_URL``, else the embedded one."""
    from orderflow_client.bus.connection import Bus

    redis_url = config.redis_url.get_secret_value() if config.redis_url else None
    return await Bus.connect(redis_url, prefix=config.key_prefix, stream_max_length=config.stream_max_length)


def condition_table(config: OrderFlowConfig) -> ConditionTable:
    """Polygon's live condition table when a key is configured, else the bundled one."""
    from services.ingest.polygon_rest_client import PolygonRest, load_condition_table

    if config.polygon_api_key is None:
        return load_condition_table(None)
    rest = PolygonRest(
        config.polygon_api_key.get_secret_value(), config.polygon_rest_url, client=config.polygon_client, attempts=3
    )
    try:
        return load_condition_table(rest)
    finally:
        rest.close()


def serve_metrics_or_exit(config: OrderFlowConfig) -> None:
    """Serve Prometheus metrics on the configured port (0: none); exit 2 when the port is taken."""
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


def run_or_exit(main: Coroutine[Any, Any, Result]) -> Result:
    """``asyncio.run(main)``; Redis unreachable after every retry → exit 3 with the reason."""
    try:
        return asyncio.run(main)
    except BusUnavailableError as error:
        stderr.print(f"[bold red]redis unavailable:[/] {error}")
        raise typer.Exit(code=3) from None


def run_ingest_or_exit(config: OrderFlowConfig, run: Callable[[], Coroutine[Any, Any, None]], log: Any) -> None:
    """Live ingest's run, either source: metrics served, the collector tuned, ``run()`` until it ends; Redis away →
    exit 3; the vendor refused the key → one line, ``order_flow.feed_auth_failed``, exit 5; another ingest runs
    under this one's name → exit 6."""
    from services.ingest.live_feed import FeedAuthError
    from shared.ownership import NameInUseError

    serve_metrics_or_exit(config)
    collect_garbage_less_often()
    try:
        run_or_exit(run())
    except FeedAuthError as error:
        log.error("order_flow.feed_auth_failed", code=error.code, reason=str(error))
        stderr.print(f"[bold red]authentication failed:[/] {error}")
        raise typer.Exit(code=5) from None
    except NameInUseError as error:
        stderr.print(f"[bold red]name in use:[/] {error} (--name)")
        raise typer.Exit(code=6) from None


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (call inside the running loop)."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    return stop


def events_progress(description: str) -> tuple[Progress, Callable[[int], None]]:
    """A progress bar counting events (silent when stderr is not a terminal) and the function that advances it
    by a number of events."""
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,} events"),
        TimeElapsedColumn(),
        console=stderr,
        disable=not stderr.is_terminal,
    )
    task: TaskID = progress.add_task(description, total=None)
    return progress, lambda events: progress.advance(task, events)


def logging_or_exit(**settings: Any) -> None:
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
