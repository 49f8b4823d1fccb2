"""Gaps in the live feed, and the trades they hid, fetched from REST and published before live data goes on.

A gap is detected three ways: the socket was lost (from its last frame to the first of the next connection:
``socket_disconnect``), the inbox dropped frames (``queue_overflow``), or Redis was away (``bus_outage``, reported by
:mod:`services.ingest.publisher`; nothing to fetch: the frames were held). Each is reported as a ``gap`` status on
the status stream and every subscribed symbol's stream; then, for the first two, the trades of the interval come from
REST ``/v3/trades/{symbol}`` (``timestamp.gte``/``lte`` in ns, ascending), page by page, deduplicated against what
the socket delivered and published with ``backfilled=True``. A stop ends a backfill at once, even mid-request.

With the Databento source the trades come from Databento's historical API instead
(:mod:`services.ingest.databento_history`: one ``timeseries.get_range`` request, schema ``trades``, for every subscribed
symbol over the gap, from ``BACKFILL_OVERLAP_NS`` before it), read and published batch by batch, deduplicated the same
way (a print's identity is its venue's ``sequence``, the same in the live and the historical records); then a status
says what became of the gap::

    FeedStatus(source="databento", state="connected", code="backfilled", symbols=("AMZN",),
               gap_start_ns=1781011800125000000, gap_end_ns=1781011803400000000,
               detail="gap backfilled from Databento's historical API: 12 trades")

``code`` ``backfill_failed`` (the API refused or stayed unavailable: the gap stays a gap, its detail says why) or
``backfill_stopped`` (ingest stopped first). The state is ``connected``, not ``gap``: a second gap would make the
detector drop the windows the backfilled trades just filled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

from orderflow_client import logs
from orderflow_client.timestamps import now_ns, ns_to_utc_iso
from services.ingest.daemon_calls import in_daemon_thread
from services.ingest.databento_history import DatabentoHistorical, HistoricalError, TradeBatch
from services.ingest.normalise import Normaliser
from services.ingest.polygon_rest_client import PolygonRest, RestError
from services.ingest.polygon_rest_parse import parse_trades_page
from services.ingest.publisher import StreamPublisher
from services.ingest.stats import IngestStats
from shared import service_metrics

log = logs.get_logger(__name__)
BACKFILL_PAGE_TRADES = 50_000  # trades per REST page (Polygon's maximum): what a backfill holds at once
BACKFILL_OVERLAP_NS = 1_000_000_000
"""A Databento backfill asks from this long (ns) before the gap: Databento's capture time of a record is not our
receive time, so the overlap keeps a print at the gap's edge from being lost; what live already published there is
dropped as a duplicate."""


class Backfill:
    """Closes the feed's gaps: reports each, then publishes the trades it hid (when a REST client is given)."""

    def __init__(
        self,
        publisher: StreamPublisher,
        normaliser: Normaliser,
        stats: IngestStats,
        rest: PolygonRest | None,
        *,
        symbols: Callable[[], list[str]],
        history: DatabentoHistorical | None = None,
    ) -> None:
        """``rest``: Polygon's REST (its gaps' trades); ``history``: Databento's historical API (the Databento
        source's); neither: gaps are reported only."""
        self.publisher = publisher
        self.normaliser = normaliser
        self.stats = stats
        self.rest = rest
        self.history = history
        self.symbols = symbols
        self.gap_start: int | None = None  # the socket's last frame (ns) while it is lost: an open gap
        self.handovers: dict[str, int] = {}  # symbol taken over from another ingest → its stream's last event (ns)

    async def close_gap(
        self, start: int, end: int, reason: str, stop: asyncio.Event, symbols: list[str] | None = None
    ) -> None:
        """Report a gap of ``symbols`` (default: every subscribed one), then publish the trades it hid (REST or
        Databento's historical API), before live data goes on."""
        await self.publisher.report_gap(start, end, reason, symbols)
        if self.history is not None:
            overlap = 0 if reason == "handover" else BACKFILL_OVERLAP_NS  # a handover knows the last print published
            await self.fill_from_history(self.history, start, end, stop, symbols, overlap_ns=overlap)
        elif self.rest is not None:
            for symbol in self.symbols() if symbols is None else symbols:
                await self.fill(self.rest, symbol, start, end, stop)

    async def fill(self, rest: PolygonRest, symbol: str, start: int, end: int, stop: asyncio.Event) -> None:
        """Publish the trades a gap hid, from REST ``/v3/trades`` (ascending), **page by page**: each page (at most
        50,000 trades) is parsed, deduplicated against what the socket delivered, and published before the next is
        fetched, so memory stays one page however long the gap. A stop ends it at once, even mid-request."""
        params = {"timestamp.gte": start, "timestamp.lte": end, "order": "asc", "limit": BACKFILL_PAGE_TRADES}
        pages = rest.pages(f"/v3/trades/{symbol}", params)
        published = 0
        while not stop.is_set():
            fetching = in_daemon_thread(lambda: next(pages, None), name="orderflow-rest")
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({fetching, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not fetching.done():  # stopped mid-request (REST can take a minute to give up): leave it to its thread
                fetching.cancel()
                break
            try:
                body = fetching.result()
            except RestError as error:
                log.error(
                    "order_flow.backfill_failed", symbol=symbol, code=error.code, reason=str(error), published=published
                )
                return
            if body is None:
                log.info(
                    "order_flow.backfilled",
                    symbol=symbol,
                    trades=published,
                    gap_start=ns_to_utc_iso(start),
                    gap_end=ns_to_utc_iso(end),
                )
                return
            page = parse_trades_page(body, symbol, now_ns(), backfilled=True)
            for reject in page.rejects:
                self.stats.rejects.add(reject)
            trades = [normalised for trade in page.events if (normalised := self.normaliser.process(trade)) is not None]
            trades.sort(key=lambda trade: trade.ts_event)
            await self.publisher.publish_events(trades)
            published += len(trades)
            self.stats.backfilled += len(trades)
            service_metrics.BACKFILLED_TRADES.inc(len(trades))
        log.warning(
            "order_flow.backfill_stopped",
            symbol=symbol,
            published=published,
            code="shutdown",
            detail="ingest stopped: the rest of the gap stays unfilled (it was reported as a gap)",
        )

    async def fill_from_history(
        self,
        history: DatabentoHistorical,
        start: int,
        end: int,
        stop: asyncio.Event,
        only: list[str] | None = None,
        *,
        overlap_ns: int = BACKFILL_OVERLAP_NS,
    ) -> None:
        """Publish the trades a gap hid from Databento's historical API (one request for every subscribed symbol,
        over ``[start - overlap_ns, end]``), batch by batch as the reply is read, then a status saying
        whether the gap was backfilled. A stop ends it at once, even mid-request."""
        symbols = self.symbols() if only is None else only
        if not symbols:
            return
        batches = history.trades(symbols, max(0, start - overlap_ns), end + 1)
        published, gap = 0, {"gap_start": ns_to_utc_iso(start), "gap_end": ns_to_utc_iso(end)}
        while True:
            try:
                batch: TradeBatch | None = await _next_unless_stopped(batches, stop)
            except HistoricalError as error:
                log.error(
                    "order_flow.backfill_failed",
                    source="databento",
                    symbols=symbols,
                    code=error.code,
                    status=error.status,
                    reason=str(error)[:300],
                    published=published,
                    **gap,
                )
                detail = f"gap not backfilled ({published} trades before the failure): {str(error)[:200]}"
                await self._history_status("backfill_failed", detail, start, end, symbols)
                return
            except _Stopped:
                log.warning("order_flow.backfill_stopped", source="databento", symbols=symbols, published=published)
                await self._history_status(
                    "backfill_stopped", f"ingest stopped: gap not backfilled ({published} trades)", start, end, symbols
                )
                return
            if batch is None:
                log.info("order_flow.backfilled", source="databento", symbols=symbols, trades=published, **gap)
                detail = f"gap backfilled from Databento's historical API: {published} trades"
                await self._history_status("backfilled", detail, start, end, symbols)
                return
            for reject in batch.rejects:
                self.stats.rejects.add(reject)
            trades = [
                normalised for trade in batch.trades if (normalised := self.normaliser.process(trade)) is not None
            ]
            await self.publisher.publish_events(trades)
            published += len(trades)
            self.stats.backfilled += len(trades)
            service_metrics.BACKFILLED_TRADES.inc(len(trades))

    async def _history_status(self, code: str, detail: str, start: int, end: int, symbols: list[str]) -> None:
        self.stats.statuses.append(code)
        await self.publisher.publish_status("connected", code, detail, start, end, tuple(symbols))


class _Stopped(Exception):
    """Ingest stopped while a blocking call was under way."""


async def _next_unless_stopped(items: Iterator[Any], stop: asyncio.Event) -> Any:
    """``next(items, None)`` in a daemon thread (a request can take a minute to give up); :class:`_Stopped` at once
    when ``stop`` is set first (the call is left to its thread)."""
    if stop.is_set():
        raise _Stopped
    fetching = in_daemon_thread(lambda: next(items, None), name="orderflow-rest")
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({fetching, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not fetching.done():
        fetching.cancel()
        raise _Stopped
    return fetching.result()
