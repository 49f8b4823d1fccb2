"""Live ingest: Polygon's WebSocket through polygon-api-client onto the streams.

Three tasks share one process:

* the **supervisor** runs ``WebSocketClient.connect`` (raw frames) and keeps
  it running: the client's reconnect counter never resets and a clean close
  returns silently (design.md §2), so each connection gets a fresh client
  with ``max_reconnects=0`` and we reconnect forever with exponential backoff
  and jitter, re-authenticating and re-subscribing. ``auth_failed`` stops the
  service with :class:`FeedAuthError` (no retry storm). A watchdog reconnects
  when no frame arrived for ``watchdog_seconds`` while the market is open.
* the client's callback only stamps the receive time and appends the frame
  to a bounded inbox: a slow processor would get the socket killed by
  Polygon. A full inbox drops frames, counted, and the dropped interval is
  published as a gap: never silent.
* the **processor** takes frames in order: records them (``--record``),
  parses (:mod:`services.ingest.polygon_ws`), deduplicates and classifies
  (:mod:`services.ingest.normalise`) and publishes batches to the per-symbol
  streams. After a disconnect it first publishes a ``gap`` status (start,
  end, symbols) on the status stream and each symbol's stream, then the
  trades missed meanwhile from REST ``/v3/trades`` (``backfilled``,
  deduplicated against what was already seen), then goes on with live
  frames. A Redis outage holds the batch, retries every second, and reports
  the interval as a gap when publishing resumes.
* the **position follower** keeps the subscriptions equal to the open
  positions (``T.SYM`` and ``Q.SYM``): a change notice applies within a
  second on the open socket, and the registry is re-read every 5 s.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from polygon import WebSocketClient
from polygon.exceptions import AuthError

from orderflow_client import logs
from orderflow_client.bus.channels import Subscription
from orderflow_client.bus.connection import Bus
from orderflow_client.bus.outage import Outage
from orderflow_client.errors import BusUnavailableError, OrderflowError
from orderflow_client.positions import PositionRegistry, decode_change
from orderflow_client.timestamps import now_ns, ns_to_utc_iso
from orderflow_client.wire import FeedStatus, MarketEvent
from services.ingest.capture import format_line
from services.ingest.normalise import Normaliser
from services.ingest.polygon_rest_client import PolygonRest, RestError
from services.ingest.polygon_rest_parse import parse_trades_page
from services.ingest.polygon_ws import parse_frame
from services.ingest.rejects import RejectCounter
from shared import service_metrics
from shared.conditions import ConditionTable
from shared.config import OrderFlowConfig
from shared.sessions import SessionClock

log = logs.get_logger(__name__)
SOURCE = "polygon"
BATCH_FRAMES = 500
BATCH_EVENTS = 5_000  # and at most about this many events a batch (a frame may hold hundreds)


def _off_loop(function):
    """Run a blocking call (a REST page: timeouts and retries can take a minute) in a daemon thread and await it.
    Not the default executor: ``asyncio.run`` joins that at exit, so a stop would wait for the call to give up."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(outcome, failed: bool) -> None:
        if not future.done():
            (future.set_exception if failed else future.set_result)(outcome)

    def work() -> None:
        try:
            outcome, failed = function(), False
        except BaseException as error:
            outcome, failed = error, True
        try:
            loop.call_soon_threadsafe(settle, outcome, failed)
        except RuntimeError:  # the loop is closed: nobody awaits it any more
            pass

    threading.Thread(target=work, name="orderflow-rest", daemon=True).start()
    return future


BACKFILL_PAGE_TRADES = 50_000  # trades per REST page (Polygon's maximum): what a backfill holds at once
SHUTDOWN_DRAIN_SECONDS = 5.0  # on stop, publish what was received for at most this long
NOISY_STATUSES = frozenset({"connected", "auth_success", "success"})


class FeedAuthError(OrderflowError):
    """Polygon refused the API key: stop, do not retry."""

    code = "feed_auth_failed"


@dataclass
class IngestStats:
    frames: int = 0
    events: int = 0
    dropped_frames: int = 0
    reconnects: int = 0
    gaps: int = 0
    backfilled: int = 0
    rejects: RejectCounter = field(default_factory=RejectCounter)
    statuses: list[str] = field(default_factory=list)


class CaptureRecorder:
    """Writes received frames in the capture format, one file per UTC day:
    ``<prefix>-YYYY-MM-DD.capture``."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self._day = ""
        self._file = None

    def write(self, ts_recv: int, frame: str | bytes) -> None:
        day = ns_to_utc_iso(ts_recv)[:10]
        if day != self._day:
            self.close()
            self._file = Path(f"{self.prefix}-{day}.capture").open("ab")
            self._day = day
        self._file.write(format_line(ts_recv, frame))

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class IngestService:
    """Polygon WebSocket → per-symbol streams, for the open positions."""

    def __init__(
        self,
        config: OrderFlowConfig,
        bus: Bus,
        *,
        api_key: str,
        rest: PolygonRest | None = None,
        conditions: ConditionTable | None = None,
        record: Path | None = None,
        market_hours_only: bool = True,
        backoff_cap_seconds: float = 30.0,
        on_status: Callable[[str], None] | None = None,
        latency_sink: list[float] | None = None,
    ) -> None:
        self.config = config
        self.bus = bus
        self.api_key = api_key
        self.rest = rest
        self.normaliser = Normaliser(conditions, method=config.side_method)
        self.registry = PositionRegistry(bus)
        self.recorder = CaptureRecorder(record) if record else None
        self.market_hours_only = market_hours_only
        self.backoff_cap = backoff_cap_seconds
        self.on_status = on_status
        self.latency_sink = latency_sink  # benchmarks: receive → on the stream, per event, in ms
        self.sessions = SessionClock()
        self.multiplier = config.round_lot_size if config.quote_size_unit == "round_lots" else 1
        self.stats = IngestStats()
        self.topics: set[str] = set()
        self.client: WebSocketClient | None = None
        self.inbox: deque = deque()
        self.inbox_frames = 0
        self.inbox_bytes = 0  # the frames' own size: with inbox_frames, what bounds the inbox
        self._stopping = asyncio.Event()  # run()'s stop: a backfill ends between pages when it is set
        self._outage = Outage("ingest")
        self.wakeup = asyncio.Event()
        self.connected = False
        self.last_frame_ns = 0
        self.gap_start: int | None = None
        self.dropped_since: int | None = None
        self.dropped_until = 0
        self.auth_error: FeedAuthError | None = None

    # --- subscriptions -------------------------------------------------------------
    @property
    def symbols(self) -> list[str]:
        return sorted({topic.split(".", 1)[1] for topic in self.topics})

    async def reconcile(self) -> None:
        """Make the subscriptions equal to the open positions. A registry lost under it (Redis restarted
        without persistence) is written back from the positions last seen, monitoring goes on, and a
        ``positions_lost`` status names the symbols: never a silent unsubscribe."""
        positions, notices = await self.registry.follow()
        for notice in notices:
            await self._publish_status(notice.state, notice.code, notice.detail, symbols=notice.symbols)
        wanted = {f"{kind}.{position.symbol}" for position in positions for kind in ("T", "Q")}
        added, removed = wanted - self.topics, self.topics - wanted
        if not added and not removed:
            return
        self.topics = wanted
        if self.client is not None:
            if added:
                self.client.subscribe(*sorted(added))
            if removed:
                self.client.unsubscribe(*sorted(removed))
        for topic in removed:
            self.normaliser.forget(topic.split(".", 1)[1])
        service_metrics.MONITORED_SYMBOLS.set(len(self.symbols))
        log.info("order_flow.subscriptions_changed", added=sorted(added), removed=sorted(removed), symbols=self.symbols)

    async def _follow_positions(self, stop: asyncio.Event) -> None:
        """Follow the change notices (and re-read every 5 s); survives Redis restarts."""
        while not stop.is_set():
            try:
                async with self.bus.subscribe(self.bus.keys.positions_channel) as changes:
                    await self._follow(changes, stop)
            except (OSError, BusUnavailableError) as error:
                log.error("order_flow.positions_unavailable", code="bus_unavailable", reason=str(error))
                await asyncio.sleep(1.0)

    async def _follow(self, changes: Subscription, stop: asyncio.Event) -> None:
        last = 0.0
        while not stop.is_set():
            message = await changes.next_message(timeout=0.2)
            if message is not None and decode_change(message) is None:
                message = None
            if message is not None or time.monotonic() - last >= 5.0:
                last = time.monotonic()
                await self.reconcile()
            if message is None and self.bus.embedded:
                await asyncio.sleep(0.2)

    # --- the socket ------------------------------------------------------------------
    async def _on_frames(self, frame: str | bytes) -> None:
        """The client's callback, inline in its receive loop: stamp and enqueue, nothing else."""
        received = time.time_ns()
        self.last_frame_ns = received
        if not self.connected:
            self.connected = True
            self.inbox.append(("connected", received, None))
        if self.inbox_frames >= self.config.ingest_queue_frames or self.inbox_bytes >= self.config.ingest_queue_bytes:
            self.stats.dropped_frames += 1
            service_metrics.INGEST_QUEUE_DROPPED.inc()
            self.dropped_since = self.dropped_since or received
            self.dropped_until = received
            return
        self.inbox.append(("frame", received, frame))
        self.inbox_frames += 1
        self.inbox_bytes += len(frame)
        self.wakeup.set()

    def _market_open(self) -> bool:
        return not self.market_hours_only or self.sessions.session(now_ns()) != "closed"

    async def _supervise(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            client = WebSocketClient(
                api_key=self.api_key,
                feed=self.config.polygon_feed,
                market="stocks",
                raw=True,
                secure=self.config.polygon_secure,
                max_reconnects=0,
                subscriptions=sorted(self.topics),
            )
            self.client = client
            started = time.time_ns()
            self.last_frame_ns = started
            connection = asyncio.ensure_future(client.connect(self._on_frames, max_size=None))
            reason = "closed"
            while not connection.done():
                await asyncio.wait({connection}, timeout=0.5)
                if stop.is_set():
                    reason = "stop"
                    break
                silent = (time.time_ns() - self.last_frame_ns) / 1e9
                if silent > self.config.watchdog_seconds and self._market_open():
                    reason = "watchdog_silence"
                    log.warning("order_flow.feed_watchdog", silent_seconds=round(silent, 1), symbols=self.symbols)
                    self.stats.statuses.append("watchdog_silence")
                    await self._publish_status("watchdog_silence", "feed_silent", f"no frame for {silent:.0f} s")
                    break
            if not connection.done():
                connection.cancel()
                try:
                    await client.close()
                except Exception:  # closing a half-open socket: nothing more to do
                    pass
            try:
                await connection
            except asyncio.CancelledError:
                pass
            except AuthError:
                self.auth_error = FeedAuthError("Polygon rejected the API key (auth_failed): check POLYGON_API_KEY")
                service_metrics.FEED_CONNECTED.set(0)
                stop.set()
                self.wakeup.set()
                return
            except Exception as error:  # ConnectionClosedError and friends: reconnect
                reason = type(error).__name__
            was_connected = self.connected
            if was_connected:
                self.connected = False
                service_metrics.FEED_CONNECTED.set(0)
                self.inbox.append(("disconnected", self.last_frame_ns, reason))
                self.wakeup.set()
            if stop.is_set():
                return
            failures = 0 if was_connected and time.time_ns() - started > 5e9 else failures + 1
            delay = min(self.backoff_cap, 0.25 * 2 ** min(failures, 10))
            delay = random.uniform(delay / 2, delay)
            self.stats.reconnects += 1
            service_metrics.FEED_RECONNECTS.inc()
            log.warning(
                "order_flow.feed_disconnected",
                reason=reason,
                reconnect_in_seconds=round(delay, 2),
                symbols=self.symbols,
            )
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass

    # --- processing ------------------------------------------------------------------
    async def _process(self, stop: asyncio.Event) -> None:
        stopping_since = None
        while True:
            if stop.is_set():
                stopping_since = stopping_since or time.monotonic()
                if self.inbox and time.monotonic() - stopping_since > SHUTDOWN_DRAIN_SECONDS:
                    log.error("order_flow.ingest_shutdown_dropped", code="shutdown", frames=self.inbox_frames)
                    self.inbox.clear()
                    self.inbox_frames = self.inbox_bytes = 0
            if not self.inbox:
                if stop.is_set():
                    return
                self.wakeup.clear()
                try:
                    await asyncio.wait_for(self.wakeup.wait(), timeout=0.5)
                except TimeoutError:
                    pass
                continue
            service_metrics.INGEST_QUEUE_DEPTH.set(self.inbox_frames)
            events: list[MarketEvent] = []
            oldest = None
            for _ in range(BATCH_FRAMES):
                if not self.inbox or len(events) >= BATCH_EVENTS:
                    break
                kind, stamp, payload = self.inbox.popleft()
                if kind == "frame":
                    self.inbox_frames -= 1
                    self.inbox_bytes -= len(payload)
                    oldest = oldest or stamp
                    events.extend(self._frame(stamp, payload))
                elif kind == "connected":
                    service_metrics.FEED_CONNECTED.set(1)
                    if self.gap_start is not None:
                        await self._publish_events(events)
                        events = []
                        await self._close_gap(self.gap_start, stamp, "socket_disconnect")
                        self.gap_start = None
                else:  # disconnected: say so now, so nobody trusts a silent symbol
                    await self._publish_events(events, oldest)
                    events, oldest = [], None
                    self.gap_start = stamp
                    await self._publish_status(
                        "disconnected", str(payload or "disconnected"), "feed disconnected; reconnecting"
                    )
            await self._publish_events(events, oldest)
            if (
                self.dropped_since is not None
                and self.inbox_frames < self.config.ingest_queue_frames // 2
                and self.inbox_bytes < self.config.ingest_queue_bytes // 2
            ):
                start, end = self.dropped_since, self.dropped_until
                self.dropped_since = None
                await self._close_gap(start, end, "queue_overflow")
            if self.recorder is not None:
                self.recorder.flush()

    def _frame(self, received: int, frame: str | bytes) -> list[MarketEvent]:
        self.stats.frames += 1
        service_metrics.FRAMES_RECEIVED.labels(source=SOURCE).inc()
        if self.recorder is not None:
            self.recorder.write(received, frame)
        parsed = parse_frame(frame, received, quote_size_multiplier=self.multiplier)
        for reject in parsed.rejects:
            self.stats.rejects.add(reject)
            service_metrics.FRAMES_REJECTED.labels(source=reject.source, code=reject.code).inc()
            log.error("order_flow.frame_rejected", code=reject.code, where=reject.where, detail=reject.detail[:200])
        for status in parsed.statuses:
            self._status(status.status, status.message)
        events = []
        for event in parsed.events:
            normalised = self.normaliser.process(event)
            if normalised is not None:
                events.append(normalised)
        return events

    def _status(self, status: str, message: str) -> None:
        self.stats.statuses.append(status)
        if self.on_status is not None:
            self.on_status(status)
        if status in NOISY_STATUSES:
            log.debug("order_flow.feed_status", status=status, message=message)
        elif status in ("max_connections", "force_disconnect", "slow_consumer"):
            log.error("order_flow.feed_status", status=status, code=status, message=message)
        else:
            log.warning("order_flow.feed_status", status=status, message=message)

    async def _publish_events(self, events: list[MarketEvent], oldest: int | None = None) -> None:
        if not events:
            return
        entries = [(self.bus.keys.market(event.symbol), event) for event in events]
        await self._publish_entries(entries)
        self.stats.events += len(events)
        counts: dict[str, int] = {}
        for event in events:
            tag = type(event).__struct_config__.tag
            counts[tag] = counts.get(tag, 0) + 1
        for tag, count in counts.items():
            service_metrics.EVENTS_PUBLISHED.labels(kind=tag).inc(count)
        if oldest is not None:
            done = time.time_ns()
            service_metrics.PUBLISH_LAG.observe((done - oldest) / 1e9)
            if self.latency_sink is not None:
                self.latency_sink.extend((done - event.ts_recv) / 1e6 for event in events)

    async def _publish_entries(self, entries: list) -> None:
        """Publish, riding out a Redis outage of any length (what was received is held meanwhile; a stop still
        ends it, after SHUTDOWN_DRAIN_SECONDS); its interval is then reported as a ``bus_outage`` gap."""
        while True:
            try:
                await self.bus.publish(entries)
                break
            except BusUnavailableError as error:
                self._outage.began(error)
                await asyncio.sleep(1.0)
        start = self._outage.since_ns
        if self._outage.ended() is not None:  # whichever publisher gets through first reports the outage, once
            await self._close_gap(start, now_ns(), "bus_outage", backfill=False)

    async def _publish_status(
        self, state: str, code: str, detail: str, start: int = 0, end: int = 0, symbols: tuple[str, ...] | None = None
    ) -> None:
        """A status on the status stream and the market stream of each of ``symbols`` (default: every subscribed one)."""
        stamp = now_ns()
        symbols = tuple(self.symbols) if symbols is None else symbols
        status = FeedStatus(
            source=SOURCE,
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
        await self._publish_entries(entries)

    async def _close_gap(self, start: int, end: int, reason: str, *, backfill: bool = True) -> None:
        """Report a gap, then publish the trades it hid (REST), before live data goes on."""
        self.stats.gaps += 1
        service_metrics.FEED_GAPS.labels(reason=reason).inc()
        seconds = (end - start) / 1e9
        log.warning(
            "order_flow.feed_gap",
            code=reason,
            gap_start=ns_to_utc_iso(start),
            gap_end=ns_to_utc_iso(end),
            seconds=round(seconds, 3),
            symbols=self.symbols,
        )
        await self._publish_status("gap", reason, f"{seconds:.1f} s without data", start, end)
        if backfill and self.rest is not None:
            for symbol in self.symbols:
                await self._backfill(symbol, start, end)

    async def _backfill(self, symbol: str, start: int, end: int) -> None:
        """Publish the trades a gap hid, from REST ``/v3/trades`` (ascending), **page by page**: each page (at most
        50,000 trades) is parsed, deduplicated against what the socket delivered, and published before the next is
        fetched, so memory stays one page however long the gap. A stop ends it at once, even mid-request."""
        params = {"timestamp.gte": start, "timestamp.lte": end, "order": "asc", "limit": BACKFILL_PAGE_TRADES}
        pages = self.rest.pages(f"/v3/trades/{symbol}", params)
        published = 0
        while not self._stopping.is_set():
            fetching = _off_loop(lambda: next(pages, None))
            stopping = asyncio.ensure_future(self._stopping.wait())
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
            await self._publish_events(trades)
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

    # --- run -------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> IngestStats:
        """Until ``stop`` is set (or the key is refused: :class:`FeedAuthError`)."""
        self._stopping = stop
        await self.reconcile()
        tasks = [
            asyncio.ensure_future(self._supervise(stop)),
            asyncio.ensure_future(self._process(stop)),
            asyncio.ensure_future(self._follow_positions(stop)),
        ]
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({stopping, *tasks}, return_when=asyncio.FIRST_COMPLETED)
            failed = [task for task in tasks if task.done() and not task.cancelled() and task.exception() is not None]
            if failed and not stop.is_set():  # a task died: never go on half-alive (publishing nothing, say nothing)
                error = failed[0].exception()
                log.error(
                    "order_flow.ingest_failed",
                    code="internal_error",
                    error=f"{type(error).__name__}: {str(error)[:300]}",
                    exc_info=error,
                )
                stop.set()
                raise error
            # what was received gets SHUTDOWN_DRAIN_SECONDS to reach Redis; a Redis that is down does not hold the stop
            done, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_DRAIN_SECONDS + 1.0)
            if pending:
                log.error(
                    "order_flow.ingest_stopped_unpublished",
                    code="bus_unavailable",
                    frames=self.inbox_frames,
                    detail="stopped before Redis took what was received; the detector will see a gap",
                )
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()
        finally:
            stopping.cancel()
            for task in tasks:
                task.cancel()
            if self.recorder is not None:
                self.recorder.close()
            service_metrics.FEED_CONNECTED.set(0)
        if self.auth_error is not None:
            raise self.auth_error
        return self.stats
