"""Frames from the inbox → recorded, parsed, deduplicated and classified → published in batches, in order.

The pipeline takes up to ``BATCH_FRAMES`` frames (and about ``BATCH_EVENTS`` events) a batch: records them
(``--record``), parses them (Polygon's text frames by :mod:`services.ingest.polygon_ws`; Databento's record chunks
by the parser the service passes, :mod:`services.ingest.databento_live`), deduplicates and classifies
(:mod:`services.ingest.normalise`) and publishes the batch to the per-symbol streams. An event of a symbol that is
not subscribed now (a late frame after an unsubscribe, a server's fault) is dropped as the reject
``unsubscribed_symbol``, never published; rejects that come in floods when expected (``unsubscribed_symbol``, and
``unknown_order`` of an order book joined mid-session) are logged once, then every ``QUIET_LOG_EVERY``-th.

After a disconnect it first publishes a ``disconnected`` status, and when the socket is back the gap with the trades
it hid (:mod:`services.ingest.backfill`), then goes on with live frames. On stop it publishes what was received for
at most ``SHUTDOWN_DRAIN_SECONDS``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Set
from typing import Any, Protocol

from orderflow_client import logs
from orderflow_client.timestamps import now_ns
from orderflow_client.wire import BookUpdate, Quote, Trade
from services.ingest.backfill import Backfill
from services.ingest.capture import CaptureRecorder
from services.ingest.inbox import Inbox
from services.ingest.normalise import Normaliser
from services.ingest.polygon_ws import parse_frame
from services.ingest.publisher import StreamPublisher
from services.ingest.rejects import Reject
from services.ingest.stats import IngestStats
from shared import service_metrics

log = logs.get_logger(__name__)
BATCH_FRAMES = 500
BATCH_EVENTS = 5_000  # and at most about this many events a batch (a frame may hold hundreds)
SHUTDOWN_DRAIN_SECONDS = 5.0  # on stop, publish what was received for at most this long
NOISY_STATUSES = frozenset({"connected", "auth_success", "success", "subscription_ack"})
QUIET_CODES = frozenset({"unsubscribed_symbol", "unknown_order"})
QUIET_LOG_EVERY = 10_000


class Parsed(Protocol):
    """What a parser makes of one frame (or record chunk)."""

    @property
    def events(self) -> list[Any]: ...
    @property
    def statuses(self) -> list[Any]: ...
    @property
    def rejects(self) -> list[Reject]: ...


Parser = Callable[[Any, int], Parsed]
"""``parser(frame, received ns)``: a frame's events, statuses and rejects."""


class Pipeline:
    """Drains the inbox onto the streams, batch after batch."""

    def __init__(
        self,
        inbox: Inbox,
        publisher: StreamPublisher,
        backfill: Backfill,
        normaliser: Normaliser,
        stats: IngestStats,
        *,
        quote_size_multiplier: int = 1,
        recorder: CaptureRecorder | None = None,
        on_status: Callable[[str], None] | None = None,
        parser: Parser | None = None,
        subscribed: Callable[[], Set[str]] | None = None,
    ) -> None:
        """``quote_size_multiplier``: shares per quoted size unit (a round lot when Polygon quotes in round lots);
        ``on_status``: called with every feed status (``auth_success``…); ``parser``: the source's (default:
        Polygon's text frames); ``subscribed``: the symbols subscribed now (None: no check)."""
        self.inbox = inbox
        self.publisher = publisher
        self.backfill = backfill
        self.normaliser = normaliser
        self.stats = stats
        self.multiplier = quote_size_multiplier
        self.recorder = recorder
        self.on_status = on_status
        self.parser: Parser = parser or self._polygon_frame
        self.subscribed = subscribed
        self.quiet_counts: Counter[str] = Counter()

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``, and then until the inbox is empty (``SHUTDOWN_DRAIN_SECONDS`` at most)."""
        inbox = self.inbox
        stopping_since = None
        while True:
            if stop.is_set():
                stopping_since = stopping_since or time.monotonic()
                if inbox.entries and time.monotonic() - stopping_since > SHUTDOWN_DRAIN_SECONDS:
                    log.error("order_flow.ingest_shutdown_dropped", code="shutdown", frames=inbox.frames)
                    inbox.clear()
            if not inbox.entries:
                if stop.is_set() and (
                    not inbox.feed_running or time.monotonic() - (stopping_since or 0) > SHUTDOWN_DRAIN_SECONDS
                ):
                    return
                await inbox.wait(timeout=0.1 if stop.is_set() else 0.5)
                continue
            service_metrics.INGEST_QUEUE_DEPTH.set(inbox.frames)
            events: list[Trade | Quote | BookUpdate] = []
            oldest = None
            for _ in range(BATCH_FRAMES):
                if not inbox.entries or len(events) >= BATCH_EVENTS:
                    break
                if self.backfill.handovers:  # a symbol taken over: its gap and backfill before any of its live frames
                    await self.publisher.publish_events(events, oldest)
                    events, oldest = [], None
                    await self.bridge_handovers(stop)
                kind, stamp, payload = inbox.pop_oldest()
                if kind == "frame":
                    oldest = oldest or stamp
                    events.extend(self._events_of_frame(stamp, payload))
                elif kind == "connected":
                    service_metrics.FEED_CONNECTED.set(1)
                    if self.backfill.gap_start is not None:
                        await self.publisher.publish_events(events)
                        events = []
                        await self.backfill.close_gap(self.backfill.gap_start, stamp, "socket_disconnect", stop)
                        self.backfill.gap_start = None
                else:  # disconnected: say so now, so nobody trusts a silent symbol
                    await self.publisher.publish_events(events, oldest)
                    events, oldest = [], None
                    self.backfill.gap_start = stamp
                    stopped = payload == "stop"  # a stop says it is a stop, not a drop
                    await self.publisher.publish_status(
                        "disconnected",
                        str(payload or "disconnected"),
                        "ingest stopped; not reconnecting" if stopped else "feed disconnected; reconnecting",
                    )
            await self.publisher.publish_events(events, oldest)
            overflow = inbox.overflow_ended()
            if overflow is not None:
                await self.backfill.close_gap(*overflow, "queue_overflow", stop)
            if self.recorder is not None:
                self.recorder.flush()

    async def bridge_handovers(self, stop: asyncio.Event) -> None:
        """Each symbol taken over from another ingest since the last batch: a ``handover`` gap from just after its
        stream's last event to now, and the trades of that interval backfilled — before its first live frame, which
        waits in the inbox (the symbol was subscribed after it was handed here), so its prints stay in order."""
        while self.backfill.handovers:
            symbol, last = self.backfill.handovers.popitem()
            await self.backfill.close_gap(last + 1, now_ns(), "handover", stop, [symbol])

    def _polygon_frame(self, frame: str | bytes, received: int) -> Parsed:
        return parse_frame(frame, received, quote_size_multiplier=self.multiplier)

    def _events_of_frame(self, received: int, frame: Any) -> list[Trade | Quote | BookUpdate]:
        """A frame's events, ready for the bus; its statuses and rejects counted and logged."""
        self.stats.frames += 1
        service_metrics.FRAMES_RECEIVED.labels(source=self.publisher.source).inc()
        if self.recorder is not None:
            self.recorder.write(received, frame)
        parsed = self.parser(frame, received)
        for reject in parsed.rejects:
            self._count_reject(reject)
        for status in parsed.statuses:
            self._feed_status(status.status, status.message)
        subscribed = self.subscribed() if self.subscribed is not None else None
        events = []
        for event in parsed.events:
            if subscribed is not None and event.symbol not in subscribed:
                self._count_reject(Reject("ingest", "unsubscribed_symbol", f"frame@{received}", event.symbol))
                continue
            normalised = self.normaliser.process(event)
            if normalised is not None:
                events.append(normalised)
        return events

    def _count_reject(self, reject: Reject) -> None:
        """Count a reject and log it (a flood of an expected code: once, then every ``QUIET_LOG_EVERY``-th)."""
        self.stats.rejects.add(reject)
        service_metrics.FRAMES_REJECTED.labels(source=reject.source, code=reject.code).inc()
        if reject.code in QUIET_CODES:
            self.quiet_counts[reject.code] += 1
            seen = self.quiet_counts[reject.code]
            if seen % QUIET_LOG_EVERY != 1:
                return
            log.warning(
                "order_flow.frame_rejected", code=reject.code, where=reject.where, detail=reject.detail[:200], seen=seen
            )
            return
        log.error("order_flow.frame_rejected", code=reject.code, where=reject.where, detail=reject.detail[:200])

    def _feed_status(self, status: str, message: str) -> None:
        """A protocol status from Polygon (``auth_success``, ``max_connections``…): counted, logged by severity."""
        self.stats.statuses.append(status)
        if self.on_status is not None:
            self.on_status(status)
        if status in NOISY_STATUSES:
            log.debug("order_flow.feed_status", status=status, message=message)
        elif status in ("max_connections", "force_disconnect", "slow_consumer"):
            log.error("order_flow.feed_status", status=status, code=status, message=message)
        else:
            log.warning("order_flow.feed_status", status=status, message=message)
