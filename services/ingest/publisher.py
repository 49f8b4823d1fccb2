"""Ingest's one way onto the streams: market events, feed statuses and gaps, riding out Redis outages.

Every part of live ingest (the pipeline, the backfill, the feed's watchdog, the position follower) publishes through
one :class:`StreamPublisher`, so a Redis outage is handled in one place: the batch is held and retried every second
for as long as Redis is away (a stop still ends it: the service waits ``SHUTDOWN_DRAIN_SECONDS`` at most), before
anything else is appended (so the batch, if a lost reply hid that it was appended, is not appended twice), and the
outage is reported once, by whichever publisher gets through first, as a ``bus_outage`` gap. A gap on the status
stream (times in ns)::

    FeedStatus(source="polygon", state="gap", code="socket_disconnect", symbols=("AAPL",),
               gap_start_ns=1700000000125000000, gap_end_ns=1700000003400000000, detail="3.3 s without data", …)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import msgspec

from orderflow_client import logs
from orderflow_client.bus.connection import Bus
from orderflow_client.bus.outage import Outage
from orderflow_client.errors import BusUnavailableError
from orderflow_client.timestamps import now_ns, ns_to_utc_iso
from orderflow_client.wire import BookUpdate, FeedState, FeedStatus, MarketEvent, OrderUpdate, Quote, Trade
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
        self.refused: dict[str, int] = {}  # symbol Redis refused an append of → its first event refused (ns)
        self.held_statuses: dict[str, list[FeedStatus]] = {}  # symbol → its statuses Redis refused, oldest first
        self._outage = Outage("ingest")
        # One append at a time: a batch held through an outage is tried again before anything else is appended, so
        # a try whose reply was lost is recognised by its stream's last entry (orderflow_client.bus.appends)
        self._appending = asyncio.Lock()

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
            await self._publish_fenced(entries)
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

    async def _publish_fenced(self, entries: Sequence[tuple[str, MarketEvent]]) -> set[str]:
        """Each stream's entries appended only under its symbol's lease (none held: dropped, it is another's); the
        symbols Redis refused (their lease is another's now) land in :attr:`refused` and are returned."""
        assert self.fence_of is not None
        symbol_of = self.bus.keys.symbol_of
        held = {stream: self.fence_of(symbol_of(stream)) for stream in {stream for stream, _ in entries}}
        fences = {stream: fence for stream, fence in held.items() if fence is not None}
        entries = [(stream, event) for stream, event in entries if stream in fences]
        refused: set[str] = set()

        async def publish() -> None:
            refused.update(await self.bus.publish_market_events_fenced(entries, fences))

        await self._until_published(publish)
        for stream in refused:
            first = min(event.ts_event for appended_to, event in entries if appended_to == stream)
            self.refused[symbol_of(stream)] = min(first, self.refused.get(symbol_of(stream), first))
            log.warning("order_flow.lease_lost", symbol=symbol_of(stream), detail="append refused")
        return {symbol_of(stream) for stream in refused}

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
        one); ``start``/``end``: a gap's interval (ns). With several ingests, the market streams' copies are appended
        under their leases and the status stream's names only the symbols Redis took them for: a paused ingest,
        waking, says nothing of the symbols it lost (their leases are another's, or expired)."""
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
        if self.fence_of is not None:
            await self._publish_fenced_status(status)
            return
        entries = [(self.bus.keys.status, status)] + [(self.bus.keys.market(symbol), status) for symbol in symbols]
        await self._until_published(lambda: self.bus.publish(entries))

    async def _publish_fenced_status(self, status: FeedStatus) -> None:
        """``status``'s market-stream copies under their leases; the status stream names the symbols Redis took it
        for. A symbol refused (a Redis restart forgot the lease, or another ingest took it) has it held: published
        by :meth:`publish_held_statuses` once this ingest holds the symbol again."""
        assert self.fence_of is not None
        held = [symbol for symbol in status.symbols if self.fence_of(symbol) is not None]
        refused = await self._publish_fenced([(self.bus.keys.market(symbol), status) for symbol in held])
        for symbol in set(status.symbols) - set(held) | refused:
            self.held_statuses.setdefault(symbol, []).append(msgspec.structs.replace(status, symbols=(symbol,)))
        named = tuple(symbol for symbol in held if symbol not in refused)
        if named or not status.symbols:  # (a status of no symbol, e.g. frames dropped before any subscription)
            said = msgspec.structs.replace(status, symbols=named)
            await self._until_published(lambda: self.bus.publish([(self.bus.keys.status, said)]))

    async def publish_held_statuses(self, owned: list[str]) -> None:
        """The statuses held for ``owned`` symbols (this ingest holds their leases again) published; those of the
        symbols owned by nobody here are dropped (another ingest took them over: its hand-over gap says the
        interval)."""
        statuses, self.held_statuses = self.held_statuses, {}
        for symbol, held in statuses.items():
            if symbol in owned:
                for status in held:
                    await self._publish_fenced_status(status)

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
        async with self._appending:
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
