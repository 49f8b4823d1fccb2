"""What both live sources' feeds share (:class:`~services.ingest.feed.PolygonFeed`,
:class:`~services.ingest.databento_feed.DatabentoFeed`): their settings, the pipeline told they run (so a stop's
last entries are published), the market-hours check of the watchdog, a refused key, and what follows the end of a
connection — a ``disconnected`` entry for the pipeline, the reconnect's wait (:mod:`services.ingest.reconnect`),
``order_flow.feed_disconnected``::

    if not await self.connection_ended(stop, started_ns=started, code="closed"):
        return  # stopping
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any

from orderflow_client import logs
from orderflow_client.errors import OrderflowError
from services.ingest.inbox import Inbox
from services.ingest.publisher import StreamPublisher
from services.ingest.reconnect import ReconnectBackoff
from services.ingest.stats import IngestStats
from services.ingest.subscriptions import Subscriptions
from shared import service_metrics
from shared.config import OrderFlowConfig
from shared.sessions import SessionClock

log = logs.get_logger(__name__)


class FeedAuthError(OrderflowError):
    """The data vendor refused the API key: stop, do not retry."""

    code = "feed_auth_failed"


class LiveFeed:
    """One connection at a time to a live source (the subclass makes and watches it)."""

    source = ""  # the source named on logs: polygon, databento

    def __init__(
        self,
        config: OrderFlowConfig,
        *,
        api_key: str,
        inbox: Inbox,
        subscriptions: Subscriptions,
        publisher: StreamPublisher,
        stats: IngestStats,
        market_hours_only: bool = True,
        backoff_cap_seconds: float = 30.0,
    ) -> None:
        self.config = config
        self._api_key = api_key
        self.inbox = inbox
        self.subscriptions = subscriptions
        self.publisher = publisher
        self.stats = stats
        self.market_hours_only = market_hours_only
        self.backoff = ReconnectBackoff(backoff_cap_seconds)
        self.sessions = SessionClock()
        self.connected = False
        self.last_data_ns = 0  # our receive time (ns) of the last market data
        self.auth_error: FeedAuthError | None = None

    async def run_connections(self, connections: Coroutine[Any, Any, None]) -> None:
        """Run the subclass's connection loop (``connections``: connect, watch, and after each end
        :meth:`connection_ended`) until it returns; meanwhile the pipeline waits for the feed's last entries at a
        stop (a stop is published as a stop)."""
        self.inbox.feed_running = True
        try:
            await connections
        finally:
            self.inbox.feed_running = False
            self.inbox.wake()

    def market_open(self) -> bool:
        """Whether the watchdog should expect data now (always, when not limited to market hours)."""
        return not self.market_hours_only or self.sessions.session(time.time_ns()) != "closed"

    def refused(self, message: str, stop: asyncio.Event) -> None:
        """The vendor refused the key: remember why (the service raises it), stop ingest, no retry."""
        self.auth_error = FeedAuthError(message)
        service_metrics.FEED_CONNECTED.set(0)
        stop.set()
        self.inbox.wake()

    async def connection_ended(self, stop: asyncio.Event, *, started_ns: int, code: str, reason: str = "") -> bool:
        """A connection begun at ``started_ns`` ended (``code``: why, in a word; ``reason``: the detail logged): a
        ``disconnected`` entry for the pipeline if it had delivered data, then the reconnect's wait. False when
        stopping (no wait, no reconnect)."""
        was_connected = self.connected
        if was_connected:
            self.connected = False
            service_metrics.FEED_CONNECTED.set(0)
            self.inbox.put_disconnected(self.last_data_ns, code)
        if stop.is_set():
            return False
        delay = self.backoff.after_drop(was_connected=was_connected, lasted_ns=time.time_ns() - started_ns)
        self.stats.reconnects += 1
        service_metrics.FEED_RECONNECTS.inc()
        log.warning(
            "order_flow.feed_disconnected",
            source=self.source,
            reason=reason or code,
            reconnect_in_seconds=round(delay, 2),
            symbols=self.subscriptions.symbols,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        return True
