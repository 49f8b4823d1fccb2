"""The detector service: the rules core behind a Redis consumer group, and its loop.

Three parts, each in its own module:

- **what to monitor** (:mod:`services.detector.monitored_symbols`): the symbols given, else the open positions in
  the registry hash (``orderflow:positions``), re-read every ``refresh_seconds``, and each symbol's profile;
- **the consumer** (:mod:`services.detector.consumer`): each symbol's stream read through the group (warm-up,
  recovery of this consumer's pending entries, reclaim from stalled consumers, lag, entries trimmed unread, dead
  letters), each batch run through the engine;
- **the sink** (:mod:`services.detector.sink`): what the rules found published once (alerts, signed exits,
  statuses, profiles), with its metrics and log lines.

This module is the loop that drives them: :meth:`DetectorService.run` reads until ``stop`` is set while a
heartbeat lets event time pass between events, and it is the one place failures turn into recovery: a Redis
outage of any length is waited out (reconnecting with backoff, ``order_flow.bus_unavailable`` logged and gauged), a
processed batch is held until Redis takes its outputs and acks, a consumer group deleted under the detector is
recreated where it left off. A stop (SIGTERM) finishes the batch in hand within :data:`STOP_GRACE_SECONDS`, else
leaves it pending (redelivered at the next start), and returns — also during an outage, also while starting. Only
refused credentials and a task that died end it with an error (the latter logged as ``order_flow.detector_failed``).

Each symbol must be read by one detector at a time (its windows live in that process): detectors share the symbols
through a lease each in Redis (:mod:`shared.ownership`), so more detectors need only their own names.

While any symbol is monitored, so are the index symbols of the market context (``market_symbols``, the monitored
symbols' ``sector_etfs``: :mod:`shared.market_symbols`), leased like any symbol: their rules (``market_selloff``)
run on the detector holding the lease, and every other detector tails their streams for its alerts' context
(:mod:`services.detector.index_reader`). The engine is told the open positions (not the indexes) at every refresh:
the positions a market-wide exit names.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import time
from collections.abc import Awaitable, Callable, Iterable

from orderflow_client import logs
from orderflow_client.bus.calls import OUTAGE_ERRORS
from orderflow_client.bus.connection import Bus
from orderflow_client.bus.outage import Outage
from orderflow_client.errors import BusAuthenticationError, ConsumerGroupMissingError, OrderflowError
from orderflow_client.timestamps import NANOSECONDS_PER_SECOND, now_ns
from services.detector.calibration_worker import HistorySource
from services.detector.consumer import GroupConsumer
from services.detector.engine import Engine
from services.detector.index_reader import IndexTail
from services.detector.monitored_symbols import MonitoredSymbols
from services.detector.rule_settings import RuleSettings
from services.detector.sink import OutputSink, PublishedOutput
from services.detector.stats import DetectorStats
from services.detector.threshold_fit import Thresholds
from shared import service_metrics
from shared.conditions import ConditionTable
from shared.config import OrderFlowConfig
from shared.market_symbols import index_symbols
from shared.ownership import SymbolOwnership

STOP_GRACE_SECONDS = 2.0  # SIGTERM: how long the batch in hand may take to finish
LEAVE_SECONDS = 1.0  # a stop's release of the leases waits no longer (Redis away: they expire on their own)
HEARTBEAT_IDLE_SECONDS = 0.2  # the heartbeat's longest sleep when no large offer is waiting
log = logs.get_logger(__name__)


class _Stopping(Exception):
    """Stopped while Redis was down with a processed batch in hand (it stays pending: redelivered)."""


def default_consumer_name() -> str:
    """Stable across restarts on one host, so a restarted detector finds its own pending entries."""
    return f"detector-{socket.gethostname()}"


class DetectorService:
    """Consumes the market streams of the monitored symbols and publishes what the rules find.

    ``symbols``: the symbols to monitor (default: the open positions); ``consumer``: this detector's name in the
    group (default :func:`default_consumer_name`); ``on_output``: sees each alert, exit and status as published;
    ``keep_latencies``: keep every event's and alert's latency in ``stats.latencies_ms`` (benchmarks)."""

    def __init__(
        self,
        config: OrderFlowConfig,
        bus: Bus,
        *,
        symbols: Iterable[str] | None = None,
        consumer: str | None = None,
        conditions: ConditionTable | None = None,
        on_output: Callable[[PublishedOutput], None] | None = None,
        refresh_seconds: float = 1.0,
        keep_latencies: bool = False,
        history: HistorySource | None = None,
    ) -> None:
        """``history``: where the calibration worker fetches a profile for a symbol without a fresh one (Polygon REST:
        :class:`services.offline.calibrate.RestHistory`; None: no live calibration, logged once)."""
        self.config = config
        self.bus = bus
        self.keys = bus.keys
        self.consumer = consumer or default_consumer_name()
        self.engine = Engine(RuleSettings.from_config(config), conditions, config=config)
        self.refresh_seconds = refresh_seconds
        self.stats = DetectorStats()
        self.ownership = (
            SymbolOwnership(bus, self.consumer, config.detector_lease_seconds, exclusive=symbols is not None)
            if config.detector_lease_seconds > 0
            else None
        )
        self.sink = OutputSink(
            config,
            bus,
            self.stats,
            thresholds_of=self._thresholds_of,
            on_output=on_output,
            keep_latencies=keep_latencies,
            fence_of=self.ownership.fence if self.ownership is not None else None,
        )
        self.monitored = MonitoredSymbols(config, bus, self.engine, self.sink, symbols, history)
        self.group_consumer = GroupConsumer(
            config,
            bus,
            self.engine,
            self.sink,
            self.stats,
            name=self.consumer,
            until_taken=self._until_taken,
            keep_latencies=keep_latencies,
            ownership=self.ownership,
        )
        self.index_tail = IndexTail(config, bus, self.engine)
        self._own_arrived: float | None = None  # monotonic time of the last batch of this detector's own streams
        self._stop = asyncio.Event()  # run's; until then a batch waits out an outage for as long as it lasts
        self._outage = Outage("detector")
        self._last_refresh = 0.0
        self._missing_group: str | None = None  # why the group must be recreated before the next read
        self.engine.sessions.session(now_ns())  # load the calendar now, not on the first event

    # --- symbols -----------------------------------------------------------------------
    async def monitored_symbols(self) -> list[str]:
        """The symbols to monitor now (see :meth:`MonitoredSymbols.wanted`)."""
        return await self.monitored.wanted()

    async def refresh(self) -> None:
        """Publish again the outputs no replica acknowledged yet; start reading the streams of newly monitored
        symbols (group, profile, warm-up and recovery first); forget those no longer monitored (a reopening warms up
        afresh)."""
        self._last_refresh = time.monotonic()
        await self.sink.confirm()
        positions = await self.monitored.wanted()
        self.engine.set_open_positions(positions)
        indexes = index_symbols(self.config, positions)  # read beside the positions while any is open
        wanted = positions + [symbol for symbol in indexes if symbol not in positions]
        if self.ownership is not None:  # of those, the ones this detector owns now
            wanted = await self.ownership.settle(wanted)
        # an index owned here runs through the group (process updates the context); the others are tailed, for the
        # context only: dropped before an owned one is warmed up, never fed twice
        await self.index_tail.follow(symbol for symbol in indexes if symbol not in wanted)
        for symbol in indexes:
            if symbol in wanted:  # read through the group here: a silence of it is the gap rule's, not a tail's
                service_metrics.INDEX_SILENT.labels(symbol=symbol).set(0)
        self.index_tail.check_silence(self._own_arrived)
        streams = self.group_consumer.streams
        for symbol in wanted:
            stream = self.keys.market(symbol)
            if stream in streams:
                continue
            await self.group_consumer.join(stream)
            await self.monitored.load_profile(symbol)
            await self.group_consumer.catch_up(stream, symbol)
        for stream, symbol in list(streams.items()):
            if symbol not in wanted:
                self.group_consumer.forget(stream)
                self.engine.symbols.pop(symbol, None)
        service_metrics.MONITORED_SYMBOLS.set(sum(1 for symbol in streams.values() if symbol in positions))

    async def leave(self) -> None:
        """A clean stop: this detector's leases released, so the others take its symbols over at once (not after
        the lease time), within :data:`LEAVE_SECONDS`. Redis away: nothing to do, the leases expire."""
        if self.ownership is not None:
            with contextlib.suppress(*OUTAGE_ERRORS, TimeoutError):  # at most a second: a stop stays quick
                await asyncio.wait_for(self.ownership.leave(), LEAVE_SECONDS)

    def _thresholds_of(self, symbol: str) -> Thresholds | None:
        engine = self.engine.symbols.get(symbol)
        return None if engine is None else engine.thresholds

    async def drain(self) -> None:
        """Process everything delivered and undelivered now (tests, demo end): the index tails first."""
        while await self.index_tail.poll():
            pass
        await self.group_consumer.drain()

    # --- the loop ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> DetectorStats:
        """Consume until ``stop`` is set; returns the counters.

        A stop returns, whatever the detector was doing: the batch in hand gets :data:`STOP_GRACE_SECONDS`, then
        is left pending (``order_flow.detector_stopped_mid_call``); a batch Redis never took during an outage stays
        pending (``order_flow.detector_stopped_during_outage``). A task that died (a defect: the rules raising in
        the heartbeat, an unexpected error in the read loop) is logged as ``order_flow.detector_failed`` and its
        error raised, even when it died at the moment of the stop: never half-alive, never an unlogged failure
        (refused credentials too: code ``bus_authentication``, :class:`BusAuthenticationError` raised)."""
        self._stop = stop
        consume = asyncio.ensure_future(self._consume(stop))
        heartbeat = asyncio.ensure_future(self._heartbeat(stop))
        stopped = asyncio.ensure_future(stop.wait())
        keeping = asyncio.ensure_future(self.ownership.keep(stop) if self.ownership is not None else stop.wait())
        try:
            await asyncio.wait({consume, heartbeat, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set() and not consume.done() and not _died(heartbeat):
                # stopping: the batch in hand may finish, a Redis call retrying into an outage may not
                await asyncio.wait({consume}, timeout=STOP_GRACE_SECONDS)
                if not consume.done():
                    consume.cancel()
                    log.warning(
                        "order_flow.detector_stopped_mid_call",
                        detail="the batch in hand stays pending and is redelivered",
                    )
        finally:  # whatever ended the wait (a stop, a task that died, run itself cancelled): no task outlives run
            for task in (consume, heartbeat, stopped, keeping):
                task.cancel()
            await asyncio.gather(consume, heartbeat, stopped, keeping, return_exceptions=True)
            await self.monitored.close()
        for task in (consume, heartbeat):
            error = _failure(task, stop)
            if error is not None:
                log.error(
                    "order_flow.detector_failed",
                    code=error.code if isinstance(error, OrderflowError) else "internal_error",
                    error=repr(error)[:300],
                    exc_info=error,
                )
                raise error
        if _stopped_during_outage(consume):
            log.warning(
                "order_flow.detector_stopped_during_outage", detail="the batch in hand stays pending and is redelivered"
            )
        return self.stats

    async def _consume(self, stop: asyncio.Event) -> None:
        """The read loop, and the one place its failures turn into recovery: a Redis outage of any length is
        waited out (reconnecting with backoff, ``bus_unavailable`` logged and gauged), a consumer group deleted
        under the detector is recreated where it left off; only refused credentials end it."""
        while not stop.is_set():
            try:
                await self._step()
                self._outage.ended()
            except BusAuthenticationError:
                raise
            except OUTAGE_ERRORS as error:
                self._outage.began(error)
                if not await self._outage.pause(stop):
                    return
            except ConsumerGroupMissingError as error:
                self._missing_group = str(error)  # recreated at the next step (an outage then is waited out too)

    async def _step(self) -> None:
        if self._missing_group is not None:
            await self.group_consumer.recreate_groups(self._missing_group)
            self._missing_group = None
        if time.monotonic() - self._last_refresh >= self.refresh_seconds:
            await self.refresh()
        await self.index_tail.poll()  # before the batch: its alerts see the index up to now
        handled = self.stats.events
        await self.group_consumer.poll()
        if self.stats.events != handled:
            self._own_arrived = time.monotonic()

    async def _until_taken(self, attempt: Callable[[], Awaitable[None]]) -> None:
        """Run ``attempt`` until Redis takes it (outputs and acks of a batch already processed: never dropped);
        :class:`_Stopping` when stopped first (the batch stays pending and is redelivered)."""
        while True:
            try:
                await attempt()
                self._outage.ended()
                return
            except BusAuthenticationError:
                raise
            except OUTAGE_ERRORS as error:
                self._outage.began(error)
                if not await self._outage.pause(self._stop):
                    raise _Stopping from None

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        """Event time passes between events: a large offer is reported the moment it has rested long enough,
        not at the stock's next event. Its own timer: a Redis BLOCK timeout is only as fine as the server's
        cron (100 ms at the default ``hz 10``). Woken after every batch, which may have shown a new offer."""
        batch_handled = self.group_consumer.batch_handled
        while not stop.is_set():
            due = self.engine.next_due()
            batch_handled.clear()
            sleep = HEARTBEAT_IDLE_SECONDS if due is None else max(0.0, (due - now_ns()) / NANOSECONDS_PER_SECOND)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(sleep):
                    await batch_handled.wait()
            passed = self.engine.advance(now_ns())
            if passed:
                await self._until_taken(functools.partial(self.sink.publish, passed))


def _failure(task: asyncio.Future[None], stop: asyncio.Event) -> BaseException | None:
    """What ``task`` (done) died of, None when it ended as a stop may end it: returned, cancelled, stopped with a
    batch Redis never took (:class:`_Stopping`), or Redis gone under the stop (an outage error, not refused
    credentials: nothing was lost, the batch in hand stays pending)."""
    error = None if task.cancelled() else task.exception()
    if error is None or isinstance(error, _Stopping):
        return None
    if stop.is_set() and isinstance(error, OUTAGE_ERRORS) and not isinstance(error, BusAuthenticationError):
        return None
    return error


def _died(task: asyncio.Future[None]) -> bool:
    """Whether ``task`` ended with an error other than a stop during an outage."""
    return task.done() and not task.cancelled() and not isinstance(task.exception(), _Stopping | type(None))


def _stopped_during_outage(task: asyncio.Future[None]) -> bool:
    return task.done() and not task.cancelled() and isinstance(task.exception(), _Stopping)
