"""The Databento Live connection (through the official ``databento`` client), kept open for as long as ingest runs.

The same role as :class:`services.ingest.feed.PolygonFeed`: one connection at a time, its records into the inbox,
reconnected forever with exponential backoff and jitter (0.25 s doubling, capped) when it ends for any reason but our
stop, and a watchdog that reconnects when no market record arrived for ``watchdog_seconds`` while the market is open
(the gateway's heartbeats prove the connection, not the data: the client itself ends a session without them). A
refused key (``Authentication failed.``) stops ingest with :class:`~services.ingest.live_feed.FeedAuthError`, no retry.

Each connection is a fresh ``databento.Live`` client with no reconnect policy of its own: the client does not
reconnect after a clean close, nor after a record it cannot decode (it closes the connection itself, cleanly), so
this class treats any end of the session as a disconnect. The client runs on ingest's own event loop (its ``loop=``
argument): its record callback (:meth:`DatabentoFeed.receive`) runs inline in the socket's reads and only collects
the records of one read into a :class:`~services.ingest.databento_live.RecordChunk`, stamped with our receive time
(ns), put in the inbox once the read is done. Its one blocking call, the first ``subscribe`` (connect and
authenticate), runs in a daemon thread.

Subscriptions follow the positions: an opened position is subscribed on the open session at once; Databento Live
cannot unsubscribe, so a closed position's records go on arriving until the next connection and are dropped by the
parser (reject ``unsubscribed_symbol``, counted) — never a reconnect that would cost the other positions a gap. With
no open position there is no connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from orderflow_client import logs
from services.ingest.daemon_calls import in_daemon_thread
from services.ingest.databento_live import RecordChunk
from services.ingest.live_feed import LiveFeed
from shared import service_metrics
from shared.config import OrderFlowConfig

log = logs.get_logger(__name__)
AUTHENTICATION_FAILED = "Authentication failed."  # the gateway's reason for a wrong key
HEARTBEAT_SECONDS = 10  # asked of the gateway: at most this long without a record while the session is healthy
_RECORD_BYTES = {"MBP10Msg": 368, "MBOMsg": 56, "TradeMsg": 48}
_CONTROL = frozenset({"SystemMsg", "SymbolMappingMsg", "ErrorMsg"})  # not market data: the watchdog ignores them


def gateway_address(gateway: str) -> tuple[str | None, int | None]:
    """``host[:port]`` of the setting → the client's ``gateway=``/``port=`` (None: the client's default)::

    gateway_address("127.0.0.1:13000") == ("127.0.0.1", 13000); gateway_address("") == (None, None)
    """
    if not gateway:
        return None, None
    host, _, port = gateway.partition(":")
    return host, int(port) if port else None


class DatabentoFeed(LiveFeed):
    """One Databento Live session at a time, its records into the inbox, reconnected when it ends or is silent."""

    source = "databento"

    def __init__(self, config: OrderFlowConfig, **parts: Any) -> None:
        """``parts``: as :class:`~services.ingest.live_feed.LiveFeed`'s (api_key, inbox, subscriptions, …)."""
        super().__init__(config, **parts)
        self.session = 0  # connections made (the chunks' session number)
        self.client: Any = None  # the databento.Live of the open session
        self.streamed: set[str] = set()  # the symbols subscribed on the open session
        self._chunk: list[Any] = []
        self._chunk_bytes = 0
        self._chunk_received = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._data_in_chunk = False
        logging.getLogger("databento").setLevel(logging.WARNING)  # its debug lines: per record, and the auth line

    # --- the client's callback, inline in its socket reads ---------------------------------------------------

    def receive(self, record: Any) -> None:
        """Collect a record into the current read's chunk (stamped at its first record); the chunk goes to the
        inbox once the read's records are all dispatched (a callback scheduled behind the read)."""
        if not self._chunk:
            self._chunk_received = time.time_ns()
            assert self._loop is not None
            self._loop.call_soon(self._flush)
        self._chunk.append(record)
        name = type(record).__name__
        self._chunk_bytes += _RECORD_BYTES.get(name, 64)
        if name not in _CONTROL:
            self._data_in_chunk = True

    def _flush(self) -> None:
        records, size, received = self._chunk, self._chunk_bytes, self._chunk_received
        self._chunk, self._chunk_bytes = [], 0
        if not records:
            return
        if self._data_in_chunk:
            self._data_in_chunk = False
            self.last_data_ns = received
        if not self.connected:
            self.connected = True
            self.inbox.put_connected(received)
        if not self.inbox.put_frame(received, RecordChunk(self.session, records, size)):
            self.stats.dropped_frames += 1
            service_metrics.INGEST_QUEUE_DROPPED.inc()

    # --- subscriptions (called by Subscriptions.change on the loop) ------------------------------------------

    def subscribe(self, *topics: str) -> None:
        """New positions: subscribe their symbols on the open session (Subscriptions' ``T.AAPL``-style topics)."""
        self._subscribe_missing()

    def unsubscribe(self, *topics: str) -> None:
        """Closed positions: Databento Live cannot unsubscribe; their records are dropped until the next session."""
        symbols = sorted({topic.split(".", 1)[1] for topic in topics} & self.streamed)
        if symbols:
            log.info("order_flow.databento_records_dropped_until_reconnect", symbols=symbols)

    def _subscribe_missing(self) -> None:
        """Subscribe the positions' symbols the open session lacks; on failure end the session (the next one
        subscribes them all). Never while it is closed: the client would then connect, blocking the loop."""
        from databento.common.error import BentoError

        client = self.client
        missing = sorted(set(self.subscriptions.symbols) - self.streamed)
        if client is None or not missing or not client.is_connected():
            return
        try:
            client.subscribe(
                dataset=self.config.databento_dataset, schema=self.config.databento_schema, symbols=missing
            )
        except (BentoError, ValueError, OSError) as error:
            log.warning("order_flow.feed_subscribe_failed", code="subscribe_failed", error=type(error).__name__)
            client.terminate()
            return
        self.streamed.update(missing)

    # --- the connection ------------------------------------------------------------------------------------------

    def _new_client(self) -> Any:
        import databento  # only with the Databento source: a 1 s import

        host, port = gateway_address(self.config.databento_gateway)
        options: dict[str, Any] = {} if port is None else {"port": port}
        client = databento.Live(
            key=self._api_key, gateway=host, loop=self._loop, heartbeat_interval_s=HEARTBEAT_SECONDS, **options
        )
        client.add_callback(self.receive, self._callback_failed)
        return client

    def _callback_failed(self, error: Exception) -> None:
        log.error("order_flow.databento_callback_failed", code="internal_error", error=type(error).__name__)

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, and reconnect after every end, until ``stop`` (or the key is refused: ``auth_error``)."""
        self._loop = asyncio.get_running_loop()
        self.subscriptions.client = self
        await self.run_connections(self._connect_forever(stop))

    async def _connect_forever(self, stop: asyncio.Event) -> None:
        from databento.common.error import BentoError

        while not stop.is_set():
            symbols = self.subscriptions.symbols
            if not symbols:  # no position: no connection
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=0.5)
                continue
            self.session += 1
            client = self._new_client()
            started = time.time_ns()
            self.last_data_ns = started
            reason = "closed"
            try:
                await self._connect(client, symbols, stop)
                if stop.is_set():
                    reason = "stop"
                else:
                    reason = await self._watch(client, stop)
            except BentoError as error:
                if str(error) == AUTHENTICATION_FAILED:
                    self.refused(
                        "Databento rejected the API key (Authentication failed.): check DATABENTO_API_KEY", stop
                    )
                    return
                reason = f"BentoError: {str(error)[:200]}"
            except (ValueError, OSError) as error:  # the client's own refusals and socket errors: reconnect
                reason = f"{type(error).__name__}: {str(error)[:200]}"
            finally:
                self.client = None
                with contextlib.suppress(ValueError):
                    client.terminate()
            self._flush()
            if not await self.connection_ended(stop, started_ns=started, code=reason.split(":", 1)[0], reason=reason):
                return

    async def _connect(self, client: Any, symbols: list[str], stop: asyncio.Event) -> None:
        """Connect, authenticate and subscribe ``symbols`` (in a thread: the client blocks), then start."""
        dataset, schema = self.config.databento_dataset, self.config.databento_schema
        connecting = in_daemon_thread(
            lambda: client.subscribe(dataset=dataset, schema=schema, symbols=symbols),
            name="orderflow-databento-connect",
        )
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not connecting.done():  # stopped while connecting: the thread ends with the client's own timeouts
            connecting.add_done_callback(lambda done: done.cancelled() or done.exception())
            return
        connecting.result()
        self.client = client
        self.streamed = set(symbols)
        self._subscribe_missing()  # positions opened while connecting
        client.start()

    async def _watch(self, client: Any, stop: asyncio.Event) -> str:
        """Until the session ends (its reason), the watchdog trips (``watchdog_silence``) or ``stop``."""
        closing = asyncio.ensure_future(client.wait_for_close())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not closing.done():
                await asyncio.wait({closing, stopping}, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():
                    return "stop"
                silent = (time.time_ns() - self.last_data_ns) / 1e9
                if silent > self.config.watchdog_seconds and self.market_open():
                    log.warning(
                        "order_flow.feed_watchdog", silent_seconds=round(silent, 1), symbols=sorted(self.streamed)
                    )
                    self.stats.statuses.append("watchdog_silence")
                    await self.publisher.publish_status(
                        "watchdog_silence", "feed_silent", f"no record for {silent:.0f} s"
                    )
                    return "watchdog_silence"
            closing.result()  # BentoError for an error or a reset; a clean end returns
            return "closed"
        finally:
            stopping.cancel()
            if not closing.done():
                closing.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await closing
