"""Live ingest: Polygon's WebSocket (or Databento Live) onto the per-symbol streams, for the open positions.

:class:`IngestService` wires the parts and supervises their three tasks:

* the **feed** keeps one connection open, reconnecting with backoff, and puts each frame, stamped, in the bounded
  **inbox** (:mod:`services.ingest.inbox`): Polygon's WebSocket (:mod:`services.ingest.feed`), or with
  ``data_source=databento`` the official Databento Live client (:mod:`services.ingest.databento_feed`: chunks of
  DBN records, parsed by :mod:`services.ingest.databento_live`; its gaps backfilled from Databento's historical API
  when a :class:`~services.ingest.databento_history.DatabentoHistorical` is given);
* the **pipeline** (:mod:`services.ingest.pipeline`) parses, deduplicates, classifies and publishes the frames in
  batches through the one **publisher** (:mod:`services.ingest.publisher`, which rides out Redis outages), and after
  a disconnect or an overflow reports the gap and publishes the trades it hid (:mod:`services.ingest.backfill`);
* the **position follower** (:mod:`services.ingest.subscriptions`) keeps the subscriptions equal to the open
  positions and, while any is open, the index symbols of the market context (:mod:`shared.market_symbols`) —
  with several ingests, the ones this ingest owns (a lease each, :mod:`shared.ownership`; every append
  checks it), a symbol taken over from another ingest bridged by a ``handover`` gap and its trades backfilled.

A task that dies ends ingest at once (logged as ``order_flow.ingest_failed``, the error raised): never half-alive,
receiving and publishing nothing, so its supervisor restarts it. The command (``orderflow ingest``) sets ``stop`` on
SIGTERM/SIGINT; what was received then gets ``SHUTDOWN_DRAIN_SECONDS`` to reach Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from orderflow_client import logs
from orderflow_client.bus.calls import OUTAGE_ERRORS
from orderflow_client.bus.connection import Bus
from orderflow_client.positions import PositionRegistry
from services.ingest.backfill import Backfill
from services.ingest.capture import CaptureRecorder
from services.ingest.databento_history import DatabentoHistorical
from services.ingest.feed import PolygonFeed
from services.ingest.inbox import Inbox
from services.ingest.normalise import Normaliser
from services.ingest.pipeline import SHUTDOWN_DRAIN_SECONDS, Pipeline
from services.ingest.polygon_rest_client import PolygonRest
from services.ingest.publisher import SOURCE, StreamPublisher
from services.ingest.stats import IngestStats
from services.ingest.subscriptions import PositionFollower, Subscriptions
from shared import service_metrics
from shared.conditions import ConditionTable
from shared.config import OrderFlowConfig
from shared.ownership import SymbolOwnership

if TYPE_CHECKING:
    from services.ingest.databento_feed import DatabentoFeed

log = logs.get_logger(__name__)


class IngestService:
    """Polygon WebSocket (or Databento Live: ``config.data_source``) → per-symbol streams, for the open positions."""

    def __init__(
        self,
        config: OrderFlowConfig,
        bus: Bus,
        *,
        api_key: str,
        rest: PolygonRest | None = None,
        history: DatabentoHistorical | None = None,
        conditions: ConditionTable | None = None,
        record: Path | None = None,
        market_hours_only: bool = True,
        backoff_cap_seconds: float = 30.0,
        on_status: Callable[[str], None] | None = None,
        latency_sink: list[float] | None = None,
        name: str | None = None,
    ) -> None:
        """``api_key``: the source's (Polygon's or Databento's); ``rest``: backfills gaps when given (Polygon);
        ``history``: backfills gaps when given (Databento's historical API, the Databento source);
        ``record``: every frame is recorded to ``<record>-YYYY-MM-DD.capture`` (Polygon only: ValueError with
        Databento); ``latency_sink``: benchmarks collect receive → on the stream, per event, in ms; ``name``: this
        ingest's among several sharing the symbols (default ``ingest-<hostname>``)."""
        databento = config.data_source == "databento"
        if databento and record is not None:
            raise ValueError("recording (--record) takes Polygon frames only")
        self.config = config
        self.bus = bus
        self.stats = IngestStats()
        self.normaliser = Normaliser(conditions, method=config.side_method)
        self.recorder = CaptureRecorder(record) if record else None
        self.inbox = Inbox(config.ingest_queue_frames, config.ingest_queue_bytes)
        self.subscriptions = Subscriptions()
        self.name = name or f"ingest-{socket.gethostname()}"
        self.ownership = (
            SymbolOwnership(bus, self.name, config.ingest_lease_seconds, kind="ingest")
            if config.ingest_lease_seconds > 0
            else None
        )
        self.publisher = StreamPublisher(
            bus,
            self.stats,
            symbols=lambda: self.subscriptions.symbols,
            latency_sink=latency_sink,
            source="databento" if databento else SOURCE,
            fence_of=self.ownership.fence if self.ownership is not None else None,
        )
        self.backfill = Backfill(
            self.publisher,
            self.normaliser,
            self.stats,
            None if databento else rest,
            symbols=lambda: self.subscriptions.symbols,
            history=history if databento else None,
        )
        parser = None
        feed_class: type[PolygonFeed] | type[DatabentoFeed] = PolygonFeed
        if databento:
            from services.ingest.databento_feed import DatabentoFeed
            from services.ingest.databento_live import LiveRecordParser

            feed_class = DatabentoFeed
            parser = LiveRecordParser(self.stats, wanted=lambda: self.subscriptions.wanted_symbols).parse
        self.feed = feed_class(
            config,
            api_key=api_key,
            inbox=self.inbox,
            subscriptions=self.subscriptions,
            publisher=self.publisher,
            stats=self.stats,
            market_hours_only=market_hours_only,
            backoff_cap_seconds=backoff_cap_seconds,
        )
        self.pipeline = Pipeline(
            self.inbox,
            self.publisher,
            self.backfill,
            self.normaliser,
            self.stats,
            quote_size_multiplier=config.round_lot_size if config.quote_size_unit == "round_lots" else 1,
            recorder=self.recorder,
            on_status=on_status,
            parser=parser,
            subscribed=lambda: self.subscriptions.wanted_symbols,
        )
        self.follower = PositionFollower(
            bus,
            PositionRegistry(bus),
            self.subscriptions,
            self.publisher,
            self.normaliser,
            ownership=self.ownership,
            backfill=self.backfill,
            config=config,
        )

    @property
    def symbols(self) -> list[str]:
        """The symbols subscribed now, sorted."""
        return self.subscriptions.symbols

    async def run(self, stop: asyncio.Event) -> IngestStats:
        """Until ``stop`` is set (or the key is refused: :class:`~services.ingest.live_feed.FeedAuthError`)."""
        await self.follower.reconcile()
        tasks = [
            asyncio.ensure_future(self.feed.run(stop)),
            asyncio.ensure_future(self.pipeline.run(stop)),
            asyncio.ensure_future(self.follower.follow(stop)),
        ]
        if self.ownership is not None:  # the leases renewed on their own timer, whatever a refresh is doing
            tasks.append(asyncio.ensure_future(self.ownership.keep(stop)))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({stopping, *tasks}, return_when=asyncio.FIRST_COMPLETED)
            failed = [
                error
                for task in tasks
                if task.done() and not task.cancelled() and (error := task.exception()) is not None
            ]
            if failed and not stop.is_set():  # a task died: never go on half-alive (publishing nothing, say nothing)
                error = failed[0]
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
                    frames=self.inbox.frames,
                    detail="stopped before Redis took what was received; the detector will see a gap",
                )
            for task in done:
                if not task.cancelled() and (error := task.exception()) is not None:
                    raise error
        finally:
            stopping.cancel()
            for task in tasks:
                task.cancel()
            if self.recorder is not None:
                self.recorder.close()
            service_metrics.FEED_CONNECTED.set(0)
        if self.ownership is not None:  # a clean stop: the other ingests take its symbols at once (Redis away: they
            with contextlib.suppress(*OUTAGE_ERRORS, TimeoutError):  # expire; a stop waits a second at most)
                await asyncio.wait_for(self.ownership.leave(), 1.0)
        if self.feed.auth_error is not None:
            raise self.feed.auth_error
        return self.stats
