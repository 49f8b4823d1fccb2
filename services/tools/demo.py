"""``orderflow demo``: ingest and detector together on the scenarios.

Each scenario of :mod:`services.tools.scenarios` plays under its own symbol
(QUIET, SELLERS, BURST, BOTH, STALE, GAP), concurrently, through the same
replay path live data takes, into the bus: the embedded in-process Redis
when ``REDIS_URL`` is unset, else that Redis under the key prefix
``<ORDER_FLOW_KEY_PREFIX>-demo``, so its synthetic exit recommendations never
reach the live ``orderflow:exits`` stream or channel a bot listens to. The detector service runs in
the same process; each alert, exit recommendation and monitoring change is
printed as it happens, metrics are served, and a closing table compares
what was found with what each scenario documents.

The scenarios are 20-minute synthetic sessions with no history: they are
written against, and judged with, the absolute thresholds
(``threshold_mode=absolute``, the fixed share counts); the demo says so.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from orderflow_client.bus.connection import Bus
from orderflow_client.prices import format_price
from orderflow_client.timestamps import ns_to_new_york
from orderflow_client.wire import ExitRecommendation, FeedStatus, OrderFlowAlert
from services.detector.service import DetectorService
from services.detector.sink import PublishedOutput
from services.ingest.polygon_ws import parse_frame
from services.ingest.replay import replay
from services.tools.scenario_expectations import EXPECTATIONS
from services.tools.scenarios import SCENARIOS, frames
from shared.config import OrderFlowConfig

SYMBOLS = {
    "quiet": "QUIET",
    "large-sellers": "SELLERS",
    "red-burst": "BURST",
    "two-sided": "BOTH",
    "stale-feed": "STALE",
    "gap": "GAP",
}
COLOURS = {"warning": "yellow", "critical": "red"}


@dataclass
class DemoResult:
    alerts: dict[str, list[tuple[str, str, str, bool]]] = field(default_factory=lambda: defaultdict(list))
    exits: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    events: int = 0
    seconds: float = 0.0

    def matches(self, scenario: str) -> bool:
        symbol = SYMBOLS[scenario]
        expected = EXPECTATIONS[scenario]
        return (
            tuple(self.alerts[symbol]) == expected.alerts
            and tuple(self.exits[symbol]) == expected.exits
            and tuple(self.statuses[symbol]) == expected.statuses
        )


def _events(scenario: str, seed: int):
    symbol = SYMBOLS[scenario]
    for ts_recv, frame in frames(scenario, seed, symbol):
        parsed = parse_frame(frame, ts_recv)
        yield from parsed.events


async def run_demo(
    config: OrderFlowConfig,
    *,
    scenarios: list[str] | None = None,
    speed: float = 120.0,
    seed: int = 7,
    console: Console | None = None,
    alongside: Callable[[Bus, list[str], str], Awaitable[Callable[[bool], Awaitable[None]]]] | None = None,
) -> DemoResult:
    """Play the scenarios and detect; returns what was seen, per symbol.

    ``alongside(bus, symbols, consumer_group)``, when given, starts something on the demo's bus before the scenarios
    play (the web dashboard) and returns its ending: awaited with True after the summary (it may wait, e.g. for
    Ctrl-C, before the bus closes), with False at once when the demo fails."""
    console = console or Console()
    chosen = scenarios or list(SCENARIOS)
    redis_url = config.redis_url.get_secret_value() if config.redis_url else None
    # never the live keys: on a real Redis the demo writes under its own prefix (its fake exits must not reach a bot)
    prefix = f"{config.key_prefix}-demo" if redis_url else config.key_prefix
    bus = await Bus.connect(redis_url, prefix=prefix, stream_max_length=config.stream_max_length)
    result = DemoResult()
    symbols = [SYMBOLS[name] for name in chosen]
    await bus.delete_streams([bus.keys.market(symbol) for symbol in symbols])
    # a fresh group per run, so the demo reads exactly this run's events
    group = f"demo-{time.time_ns()}"
    detector_config = config.model_copy(update={"consumer_group": group, "threshold_mode": "absolute"})
    console.print(
        f"[dim]scenarios are judged with the absolute thresholds ({config.large_order_size:,}-share large orders): "
        f"a 20-minute synthetic session has no history to fit adaptive ones to[/]",
        highlight=False,
    )

    def show(output: PublishedOutput) -> None:
        stamp = ns_to_new_york(output.ts_event, milliseconds=True)
        if isinstance(output, OrderFlowAlert):
            result.alerts[output.symbol].append((output.alert_type, output.source, output.severity, output.two_sided))
            what = (
                f"{output.order_size:,} shares @ {format_price(output.price_level)}"
                if output.alert_type == "large_seller"
                else f"volume {output.volume_ratio:.2f}x, {output.sell_ratio:.0%} sells"
            )
            side = " two-sided" if output.two_sided else ""
            console.print(
                f"[{COLOURS[output.severity]}]{stamp} ALERT {output.symbol:<8} {output.alert_type} "
                f"({output.source}{side}, {output.severity}): {what}[/]",
                highlight=False,
            )
        elif isinstance(output, ExitRecommendation):
            result.exits[output.symbol].append(output.trigger)
            console.print(
                f"[bold red]{stamp} EXIT  {output.symbol:<8} {output.trigger}: {output.reasoning}[/]", highlight=False
            )
        elif isinstance(output, FeedStatus):
            for symbol in output.symbols:
                result.statuses[symbol].append(output.state)
            console.print(
                f"[cyan]      STATUS {','.join(output.symbols):<8} {output.state} ({output.code}: {output.detail})[/]",
                highlight=False,
            )

    service = DetectorService(detector_config, bus, symbols=symbols, consumer="demo", on_output=show)
    ending = await alongside(bus, symbols, group) if alongside is not None else None
    finished = False
    stop = asyncio.Event()
    started = time.perf_counter()
    detector = asyncio.ensure_future(service.run(stop))
    try:
        where = (
            f"{bus.description}, keys under {prefix}:* (never the live {config.key_prefix}:* keys)"
            if redis_url
            else bus.description
        )
        console.print(f"[bold]orderflow demo[/]: {len(chosen)} scenarios at {speed:g}x on {where}", highlight=False)
        summaries = await asyncio.gather(*(replay(bus, _events(name, seed), speed=speed) for name in chosen))
        result.events = sum(summary.published for summary in summaries)
        while True:  # let the detector catch up with everything published
            lags = [await bus.group_lag(bus.keys.market(symbol), group) for symbol in symbols]
            if all(lag == 0 for lag in lags):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        finished = True
    finally:
        stop.set()
        await detector
        for symbol in symbols:
            stream = bus.keys.market(symbol)
            await bus.destroy_group(stream, group)
        if ending is not None and not finished:
            await ending(False)
        if ending is None or not finished:
            await bus.close()
    result.seconds = time.perf_counter() - started
    _print_summary(console, chosen, result)
    if ending is not None:
        try:
            await ending(True)
        finally:
            await bus.close()
    return result


def _print_summary(console: Console, chosen: list[str], result: DemoResult) -> None:
    table = Table(title=f"demo summary: {result.events:,} events in {result.seconds:.1f} s", title_justify="left")
    for column in ("scenario", "symbol", "alerts", "exits", "statuses", "as documented"):
        table.add_column(column, overflow="fold")
    for name in chosen:
        symbol = SYMBOLS[name]
        counted = Counter(
            f"{kind} {source} {severity}{' two-sided' if two_sided else ''}"
            for kind, source, severity, two_sided in result.alerts[symbol]
        )
        alerts = "; ".join(f"{count}x {what}" for what, count in counted.items()) or "none"
        table.add_row(
            name,
            symbol,
            alerts,
            ", ".join(result.exits[symbol]) or "none",
            ", ".join(result.statuses[symbol]) or "-",
            "[green]yes[/]" if result.matches(name) else "[red]NO[/]",
        )
    console.print(table)
