"""Ingest's one way onto the streams: market events, feed statuses and gaps, riding out Redis outages.

Every part of live ingest (the pipeline, the backfill, the feed's watchdog, the position follower) publishes through
one :class:`StreamPublisher`, so a Redis outage is handled in one place: the batch is held and retried every second
for as long as Redis is away (a stop still ends it: the service waits ``SHUTDOWN_DRAIN_SECONDS`` at most), and the
outage is reported once, by whichever publisher gets through first, as a ``bus_outage`` gap. A gap on the status
stream (times in ns)::

    FeedStatus(source="polygon", state="gap", code="socket_disconnect", symbols=("AAPL",),
               gap_start_ns=1700000000125000000, gap_end_ns=1700000003400000000, detail="3.3 s without data", …)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from orderflow_client import logs
from orderflow_client.bus.connection import Bus
from orderflow_client.bus.outage import Outage
from orderflow_client.errors import BusUnavailableError
from orderflow_client.timestamps import now_ns, ns_to_utc_iso
from orderflow_client.wire import BookUpdate, FeedState, FeedStatus, OrderUpdate, Quote, Trade
from services.ingest.stats import IngestStats
from shared import service_metrics

log = logs.get_logger(__name__)
SOURCE = "polygon"  # the source named on live ingest's statuses and metrics, unless the service names another


class StreamPublisher:
    """Publishes to the per-symbol market streams and the status stream, holding what it has through an outage."""

    def __init__(
        self,
        bus: Bus,
        stats: IngestStats,
        *,
        symbols: Callable[[], list[str]],
        latency_sink: list[float] | None = None,
        source: str = SOURCE,
        fence_of: Callable[[str], tuple[str, str] | None] | None = None,
    ) -> None:
        """``symbols``: the symbols subscribed now (a status names them by default); ``latency_sink``: benchmarks
        collect receive → on the stream, per event, in ms; ``source``: named on statuses and metrics (``polygon``,
        ``databento``); ``fence_of``: with several ingests, a symbol's lease (``(key, value held)``, None: not held)
        its events are appended under — a symbol Redis refused lands in :attr:`refused`."""
        self.source = source
        self.bus = bus
        self.stats = stats
        self.symbols = symbols
        self.latency_sink = latency_sink
        self.fence_of = fence_of
        self.refused: set[str] = set()
        self._outage = Outage("ingest")

    async def publish_events(
        self, events: Sequence[Trade | Quote | BookUpdate | OrderUpdate], oldest: int | None = None
    ) -> None:
        """Publish a batch, each event on its symbol's stream; ``oldest``: the receive time (ns) of the batch's
        oldest frame, for the publish lag (none for backfilled trades)."""
        if not events:
            return
        market = self.bus.keys.market
        entries = [(market(event.symbol), event) for event in events]
        if self.fence_of is None:
            await self._until_published(lambda: self.bus.publish_market_events(entries))
        else:  # each symbol's events appended only under its lease: a paused ingest appends nothing it lost
            held = {symbol: self.fence_of(symbol) for symbol in {event.symbol for event in events}}
            fences = {market(symbol): fence for symbol, fence in held.items() if fence is not None}
            entries = [(stream, event) for stream, event in entries if stream in fences]
            refused: set[str] = set()

            async def publish() -> None:
                refused.update(await self.bus.publish_market_events_fenced(entries, fences))

            await self._until_published(publish)
            for stream in refused:
                self.refused.add(self.bus.keys.symbol_of(stream))
                log.warning("order_flow.lease_lost", symbol=self.bus.keys.symbol_of(stream), detail="append refused")
        self.stats.events += len(events)
        counts: dict[str, int] = {}
        for event in events:
            tag = str(type(event).__struct_config__.tag)
            counts[tag] = counts.get(tag, 0) + 1
        for tag, count in counts.items():
            service_metrics.EVENTS_PUBLISHED.labels(kind=tag).inc(count)
        if oldest is not None:
            done = time.time_ns()
            service_metrics.PUBLISH_LAG.observe((done - oldest) / 1e9)
            if self.latency_sink is not None:
                self.latency_sink.extend((done - event.ts_recv) / 1e6 for event in events)

    async def publish_status(
        self,
        state: FeedState,
        code: str,
        detail: str,
        start: int = 0,
        end: int = 0,
        symbols: tuple[str, ...] | None = None,
    ) -> None:
        """A status on the status stream and the market stream of each of ``symbols`` (default: every subscribed
        one); ``start``/``end``: a gap's interval (ns)."""
        stamp = now_ns()
        symbols = tuple(self.symbols()) if symbols is None else symbols
        status = FeedStatus(
            source=self.source,
            state=state,
            ts_event=end or stamp,
            ts_recv=stamp,
            symbols=symbols,
            code=code,
            detail=detail,
            gap_start_ns=start,
            gap_end_ns=end,
        )
        entries = [(self.bus.keys.status, status)] + [(self.bus.keys.market(symbol), status) for symbol in symbols]
        await self._until_published(lambda: self.bus.publish(entries))

    async def report_gap(self, start: int, end: int, reason: str, symbols: list[str] | None = None) -> None:
        """Report an interval without data (ns), with its reason as the code: logged, counted, published, for
        ``symbols`` (default: every subscribed one)."""
        self.stats.gaps += 1
        service_metrics.FEED_GAPS.labels(reason=reason).inc()
        seconds = (end - start) / 1e9
        named = self.symbols() if symbols is None else symbols
        log.warning(
            "order_flow.feed_gap",
            code=reason,
            gap_start=ns_to_utc_iso(start),
            gap_end=ns_to_utc_iso(end),
            seconds=round(seconds, 3),
            symbols=named,
        )
        await self.publish_status("gap", reason, f"{seconds:.1f} s without data", start, end, symbols=tuple(named))

    async def _until_published(self, publish: Callable[[], Awaitable[object]]) -> None:
        """Run ``publish`` (one bus call) until Redis takes it, riding out an outage of any length (what was
        received is held meanwhile; a stop still ends it, after SHUTDOWN_DRAIN_SECONDS); the outage's interval is
        then reported as a ``bus_outage`` gap."""
        while True:
            try:
                await publish()
                break
            except BusUnavailableError as error:
                self._outage.began(error)
                await asyncio.sleep(1.0)
        start = self._outage.since_ns
        if self._outage.ended() is not None:  # whichever publisher gets through first reports the outage, once
            await self.report_gap(start, now_ns(), "bus_outage")
