"""The Polygon/Massive WebSocket connection (through ``massive`` or ``polygon-api-client``:
:mod:`services.ingest.polygon_clients`), kept open for as long as ingest runs.

The client's reconnect counter never resets and a clean close returns silently, so each connection gets a fresh
``WebSocketClient`` with ``max_reconnects=0`` and :meth:`PolygonFeed.run` reconnects forever, with exponential
backoff and jitter (0.25 s doubling, capped), re-authenticating and re-subscribing. ``auth_failed`` stops ingest
with :class:`~services.ingest.live_feed.FeedAuthError` (no retry storm). A watchdog reconnects when no frame arrived
for ``watchdog_seconds`` while the market is open. The client's callback (:meth:`PolygonFeed.receive`) only stamps
each frame's receive time and puts it in the :class:`~services.ingest.inbox.Inbox`: the pipeline does the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from orderflow_client import logs
from services.ingest.live_feed import LiveFeed
from services.ingest.polygon_clients import client_classes
from shared import service_metrics

log = logs.get_logger(__name__)


class PolygonFeed(LiveFeed):
    """One Polygon WebSocket connection at a time, its frames into the inbox, reconnected when it drops or is silent."""

    source = "polygon"

    async def receive(self, frame: str | bytes) -> None:
        """The client's callback, inline in its receive loop: stamp and enqueue, nothing else."""
        received = time.time_ns()
        self.last_data_ns = received
        if not self.connected:
            self.connected = True
            self.inbox.put_connected(received)
        if not self.inbox.put_frame(received, frame):
            self.stats.dropped_frames += 1
            service_metrics.INGEST_QUEUE_DROPPED.inc()

    async def _watch(self, connection: asyncio.Future[None], stop: asyncio.Event) -> str:
        """Until the connection ends (``closed``), ``stop`` is set (``stop``) or the watchdog trips
        (``watchdog_silence``, said on the status stream): why the connection is to end."""
        while not connection.done():
            await asyncio.wait({connection}, timeout=0.5)
            if stop.is_set():
                return "stop"
            silent = (time.time_ns() - self.last_data_ns) / 1e9
            if silent > self.config.watchdog_seconds and self.market_open():
                log.warning(
                    "order_flow.feed_watchdog", silent_seconds=round(silent, 1), symbols=self.subscriptions.symbols
                )
                self.stats.statuses.append("watchdog_silence")
                await self.publisher.publish_status("watchdog_silence", "feed_silent", f"no frame for {silent:.0f} s")
                return "watchdog_silence"
        return "closed"

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, and reconnect after every drop, until ``stop`` (or the key is refused: ``auth_error``)."""
        await self.run_connections(self._connect_forever(stop))

    async def _connect_forever(self, stop: asyncio.Event) -> None:
        classes = client_classes(self.config.polygon_client)
        while not stop.is_set():
            client = classes.websocket(
                api_key=self._api_key,
                feed=self.config.polygon_feed,
                market="stocks",
                raw=True,
                secure=self.config.polygon_secure,
                max_reconnects=0,
                subscriptions=sorted(self.subscriptions.topics),
            )
            self.subscriptions.client = client
            started = time.time_ns()
            self.last_data_ns = started
            connection = asyncio.ensure_future(client.connect(self.receive, max_size=None))
            try:
                reason = await self._watch(connection, stop)
            finally:  # also when this task is cancelled: the socket never outlives the feed
                if not connection.done():
                    connection.cancel()
                    with contextlib.suppress(Exception):  # closing a half-open socket: nothing more to do
                        await client.close()
            try:
                await connection
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():  # this task is being cancelled, not the connection
                    raise
            except classes.auth_error:
                self.refused("Polygon rejected the API key (auth_failed): check POLYGON_API_KEY", stop)
                return
            except Exception as error:  # ConnectionClosedError and friends: reconnect
                reason = type(error).__name__
            if not await self.connection_ended(stop, started_ns=started, code=reason):
                return
