"""Following the position registry: ingest subscribes to ``T.SYM`` and ``Q.SYM`` of every open position and, while
any is open, of the index symbols of the market context (``market_symbols``, SPY by default, and the positions'
sector ETFs: :mod:`shared.market_symbols`), no more.

A change notice (``{"action":"open","symbol":"AAPL"}`` on the positions channel) applies within a second on the
open socket, and the registry is re-read every 5 s (a notice is lossy; every second when several ingests share the
symbols: each read renews this ingest's leases). A registry lost under it (Redis restarted
without persistence) is written back from the positions last seen, monitoring goes on, and a ``positions_lost``
status names the symbols: never a silent unsubscribe.

The same topics drive the Databento source (:mod:`services.ingest.databento_feed` is then the ``client``: it
subscribes a new symbol on its open session, and since Databento Live cannot unsubscribe, a closed position's records
are dropped until its next connection).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from orderflow_client import logs
from orderflow_client.bus.channels import Subscription
from orderflow_client.bus.connection import Bus
from orderflow_client.errors import BusUnavailableError, WireDecodeError
from orderflow_client.positions import PositionRegistry, decode_change
from orderflow_client.wire import FeedState, decode, unbatched
from services.ingest.backfill import Backfill
from services.ingest.normalise import Normaliser
from services.ingest.publisher import StreamPublisher
from shared import service_metrics
from shared.config import OrderFlowConfig
from shared.market_symbols import with_index_symbols
from shared.ownership import SymbolOwnership

log = logs.get_logger(__name__)


class Subscriptions:
    """The topics ingest is subscribed to (``T.AAPL``, ``Q.AAPL``…), applied on the socket open now, if any."""

    def __init__(self) -> None:
        self.topics: set[str] = set()
        self.wanted_symbols: frozenset[str] = frozenset()  # the topics' symbols: what may be published now
        self.client: Any = None  # the open polygon WebSocketClient (set by the feed on each connection), or the
        # DatabentoFeed: anything with subscribe(*topics) and unsubscribe(*topics)

    @property
    def symbols(self) -> list[str]:
        return sorted({topic.split(".", 1)[1] for topic in self.topics})

    def change(self, wanted: set[str]) -> tuple[set[str], set[str]]:
        """Subscribe to exactly ``wanted``; returns the topics ``(added, removed)``."""
        added, removed = wanted - self.topics, self.topics - wanted
        if not added and not removed:
            return added, removed
        self.topics = wanted
        self.wanted_symbols = frozenset(topic.split(".", 1)[1] for topic in wanted)
        if self.client is not None:
            if added:
                self.client.subscribe(*sorted(added))
            if removed:
                self.client.unsubscribe(*sorted(removed))
        return added, removed


class PositionFollower:
    """Keeps the :class:`Subscriptions` equal to the open positions."""

    def __init__(
        self,
        bus: Bus,
        registry: PositionRegistry,
        subscriptions: Subscriptions,
        publisher: StreamPublisher,
        normaliser: Normaliser,
        *,
        ownership: SymbolOwnership | None = None,
        backfill: Backfill | None = None,
        config: OrderFlowConfig | None = None,
    ) -> None:
        """``ownership``: with several ingests, the symbols this one owns (a lease each): it subscribes to those
        only, and a symbol taken over from another ingest first gets a ``handover`` gap and its trades backfilled
        (``backfill``), from the stream's last event to now. ``config``: its index symbols (``market_symbols``,
        the positions' ``sector_etfs``: :func:`shared.market_symbols.index_symbols`) are subscribed beside the
        positions while any is open, leased like them (exactly one ingest publishes each)."""
        self.bus = bus
        self.registry = registry
        self.subscriptions = subscriptions
        self.publisher = publisher
        self.normaliser = normaliser
        self.ownership = ownership
        self.backfill = backfill
        self.config = config
        self.stop = asyncio.Event()  # follow's: a hand-over's backfill ends at a stop
        # the registry re-read (a notice is lossy) every 5 s, every second with leases (each read renews them)
        self.refresh_seconds = 5.0 if ownership is None else 1.0

    async def reconcile(self) -> None:
        """Make the subscriptions equal to the open positions (with several ingests: the ones this ingest owns). A
        registry lost under it (Redis restarted without persistence) is written back from the positions last seen,
        monitoring goes on, and a ``positions_lost`` status names the symbols: never a silent unsubscribe."""
        positions, notices = await self.registry.follow()
        for notice in notices:
            await self.publisher.publish_status(
                cast(FeedState, notice.state), notice.code, notice.detail, symbols=notice.symbols
            )
        symbols = sorted({position.symbol for position in positions})
        open_positions = set(symbols)
        if self.config is not None:  # the index symbols while any position is open
            symbols = sorted(with_index_symbols(self.config, symbols))
        if self.ownership is not None:
            symbols = await self._owned(symbols)
        wanted = {f"{kind}.{symbol}" for symbol in symbols for kind in ("T", "Q")}
        added, removed = self.subscriptions.change(wanted)
        if not added and not removed:
            return
        for topic in removed:
            self.normaliser.forget(topic.split(".", 1)[1])
        symbols = self.subscriptions.symbols
        service_metrics.MONITORED_SYMBOLS.set(sum(1 for symbol in symbols if symbol in open_positions))
        log.info("order_flow.subscriptions_changed", added=sorted(added), removed=sorted(removed), symbols=symbols)

    async def _owned(self, symbols: list[str]) -> list[str]:
        """Of ``symbols``, those this ingest owns after settling its leases (statuses Redis refused while the lease
        was not held are published now for those); one taken over from another ingest, or taken again after this
        one lost it, is handed to the pipeline to bridge (:meth:`~services.ingest.pipeline.Pipeline.bridge_handovers`):
        a ``handover`` gap from its stream's last event (none left: from just before the first event refused), and
        the trades of that interval, before its first live frame."""
        assert self.ownership is not None
        refused, self.publisher.refused = self.publisher.refused, {}
        for symbol in refused:  # an append refused: its lease is another ingest's now (or nobody's)
            self.ownership.lost(symbol)
        owned = await self.ownership.settle(symbols)
        await self.publisher.publish_held_statuses(owned)
        for symbol in owned:
            if not self.ownership.took_over(symbol):
                continue
            last = await self._last_event_ns(symbol)
            if last is None and symbol in refused:  # the stream is empty (a Redis restart): from the first refused
                last = refused[symbol] - 1
            if last is not None and self.backfill is not None:
                # bridged by the pipeline before it publishes any live frame of the symbol (which waits in the inbox)
                self.backfill.handovers[symbol] = last
        return owned

    async def _last_event_ns(self, symbol: str) -> int | None:
        """Event time (ns) of the last event on ``symbol``'s stream; None when it has none."""
        for entry in await self.bus.read_range_reverse(self.bus.keys.market(symbol), count=1):
            try:
                return max(event.ts_event for event in unbatched(decode(entry.payload)))  # type: ignore[union-attr]
            except (WireDecodeError, ValueError):
                return None
        return None

    async def follow(self, stop: asyncio.Event) -> None:
        """Follow the change notices (and re-read every 5 s); survives Redis restarts."""
        self.stop = stop
        while not stop.is_set():
            try:
                async with self.bus.subscribe(self.bus.keys.positions_channel) as changes:
                    await self._follow_changes(changes, stop)
            except (OSError, BusUnavailableError) as error:
                log.error("order_flow.positions_unavailable", code="bus_unavailable", reason=str(error))
                await asyncio.sleep(1.0)

    async def _follow_changes(self, changes: Subscription, stop: asyncio.Event) -> None:
        last = 0.0
        while not stop.is_set():
            message = await changes.next_message(timeout=0.2)
            if message is not None and decode_change(message) is None:
                message = None
            if message is not None or time.monotonic() - last >= self.refresh_seconds:
                last = time.monotonic()
                await self.reconcile()
            if message is None and self.bus.embedded:
                await asyncio.sleep(0.2)
