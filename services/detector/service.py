"""The detector service: the rules core behind a Redis consumer group.

Loop (one process, one asyncio task):

1. **Symbols**: those given, else the open positions in the registry hash
   (``orderflow:positions``), re-read every ``refresh_seconds``; each
   symbol's stream gets the consumer group (created at ``0``: a new group
   reads the backlog).
2. **Warm-up** per stream: the history before the first unprocessed entry,
   back to ``spike + baseline + alert window`` (plus a minute) of event time,
   is run through the engine with its outputs dropped, so a restart neither
   misses nor invents an alert.
3. **Recovery**: this consumer's own pending entries (a crash before the ack)
   are processed first; entries of a stalled consumer idle longer than
   ``reclaim_idle_seconds`` are claimed with XAUTOCLAIM.
4. **Steady state**: XREADGROUP ``>``; each batch runs through the engine;
   alerts, exits and statuses are published, then the batch is acknowledged.
   Publishing is idempotent: one Lua call does ``SET NX`` on the output's
   deterministic id and only then XADD (and PUBLISH for exits), so a
   redelivered entry never yields a second alert.

Each symbol must be read by one detector at a time (its windows live in that
process); scale by giving detectors disjoint symbol sets. SIGTERM finishes
the batch in hand (publish + ack) and exits.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import msgspec

from orderflow_client import logs
from orderflow_client.bus.calls import OUTAGE_ERRORS
from orderflow_client.bus.connection import Bus
from orderflow_client.bus.dedup import PublishOnce
from orderflow_client.bus.groups import GroupPosition
from orderflow_client.bus.outage import Outage
from orderflow_client.bus.streams import BusEntry, as_text
from orderflow_client.errors import BusAuthenticationError, ConsumerGroupMissingError, WireDecodeError
from orderflow_client.positions import PositionRegistry
from orderflow_client.prices import format_price
from orderflow_client.signing import sign
from orderflow_client.timestamps import NANOSECONDS_PER_SECOND, now_ns, ns_to_utc_iso
from orderflow_client.wire import ExitRecommendation, FeedStatus, MarketEvent, OrderFlowAlert, decode, encode
from services.detector.engine import AlertsExpired, Engine, Output, ProfileUpdate, RuleSettings
from services.detector.integrity import ValidationIssue
from services.detector.profile_store import ProfileStore
from services.detector.profiles import ProfileError
from shared import service_metrics
from shared.conditions import ConditionTable
from shared.config import OrderFlowConfig

DEDUP_SECONDS = 7 * 24 * 3600
BATCH_ENTRIES = 5_000
"""At most this many entries a read over all streams (XREADGROUP's COUNT is per stream: 50 symbols × 1,000 made
50,000-entry batches, +44 MB and latency spikes)."""
RECLAIM_EVERY_SECONDS = 5.0
STOP_GRACE_SECONDS = 2.0  # SIGTERM: how long the batch in hand may take to finish
LAG_EVERY_SECONDS = 1.0  # consumer lag gauge and trimmed-unread check (one pipelined round trip)
log = logs.get_logger(__name__)

class _Stopping(Exception):
    """Stopped while Redis was down with a processed batch in hand (it stays pending: redelivered)."""


def default_consumer_name() -> str:
    """Stable across restarts on one host, so a restarted detector finds its own pending entries."""
    return f"detector-{socket.gethostname()}"


@dataclass
class DetectorStats:
    events: int = 0
    undecodable: int = 0
    processing_failures: int = 0
    alerts: int = 0
    exits: int = 0
    duplicates_suppressed: int = 0
    warmed_up_events: int = 0
    latencies_ms: list[float] = field(default_factory=list)


class DetectorService:
    """Consumes the market streams of the monitored symbols and publishes what the rules find."""

    def __init__(
        self,
        config: OrderFlowConfig,
        bus: Bus,
        *,
        symbols: Iterable[str] | None = None,
        consumer: str | None = None,
        conditions: ConditionTable | None = None,
        on_output: Callable[[Output], None] | None = None,
        refresh_seconds: float = 1.0,
        keep_latencies: bool = False,
    ) -> None:
        self.config = config
        self.bus = bus
        self.keys = bus.keys
        self.group = config.consumer_group
        self.consumer = consumer or default_consumer_name()
        self.fixed_symbols = tuple(symbols) if symbols else None
        self.engine = Engine(RuleSettings.from_config(config), conditions, config=config)
        self.on_output = on_output
        self.refresh_seconds = refresh_seconds
        self.keep_latencies = keep_latencies
        self.streams: dict[str, str] = {}  # stream key -> symbol
        self.registry = PositionRegistry(bus)
        self.profiles = ProfileStore(bus)
        self.stats = DetectorStats()
        self._publish_once = PublishOnce(bus)
        settings = self.engine.settings
        self.warmup_ns = (
            settings.spike_seconds + settings.baseline_seconds + 60
        ) * NANOSECONDS_PER_SECOND + settings.alert_window_ns
        self._last_refresh = 0.0
        self._last_lag = 0.0
        self._last_reclaim = 0.0
        self._batch_done = asyncio.Event()  # wakes the heartbeat: a batch may have shown a new large offer
        self._stop = asyncio.Event()
        self._outage = Outage("detector")
        self._last_entry: dict[str, bytes] = {}  # stream -> the last entry id handled
        self._trim_reported: dict[str, str] = {}  # stream -> the first entry id when its trimming was last reported
        self.engine.sessions.session(now_ns())  # load the calendar now, not on the first event

    # --- symbols -----------------------------------------------------------------
    async def monitored_symbols(self) -> list[str]:
        """``--symbol``s, else the open positions. A registry lost under the detector (Redis restarted without
        persistence) is written back from the positions last seen and monitoring goes on, with a
        ``positions_lost`` status naming them."""
        if self.fixed_symbols is not None:
            return list(self.fixed_symbols)
        positions, notices = await self.registry.follow()
        for notice in notices:
            now = now_ns()
            status = FeedStatus(
                source="detector",
                state=notice.state,
                ts_event=now,
                ts_recv=now,
                symbols=notice.symbols,
                code=notice.code,
                detail=notice.detail,
            )
            await self._once(f"{notice.state}:{','.join(notice.symbols)}:{now}", self.keys.status, status)
        return [position.symbol for position in positions]

    async def refresh(self) -> None:
        """Start reading the streams of newly monitored symbols (warm-up + recovery first)."""
        self._last_refresh = time.monotonic()
        wanted = await self.monitored_symbols()
        for symbol in wanted:
            stream = self.keys.market(symbol)
            if stream in self.streams:
                continue
            await self.bus.ensure_group(stream, self.group, "0")
            await self._load_profile(symbol)
            await self._warm_up(stream)
            self.streams[stream] = symbol
            await self._recover(stream)
        for stream, symbol in list(self.streams.items()):
            if symbol not in wanted:  # position closed: forget it (a reopening warms up afresh)
                del self.streams[stream]
                self.engine.symbols.pop(symbol, None)
        service_metrics.MONITORED_SYMBOLS.set(len(self.streams))

    async def _load_profile(self, symbol: str) -> None:
        """The symbol's stored profile as the history of its thresholds (adaptive mode); the threshold gauges
        show what the symbol starts with until its first calibration status."""
        large = self.config.large_order_size
        service_metrics.THRESHOLD_SHARES.labels(symbol=symbol, kind="large_order").set(large)
        service_metrics.THRESHOLD_SHARES.labels(symbol=symbol, kind="large_offer").set(large)
        service_metrics.CALIBRATED.labels(symbol=symbol).set(1 if self.config.threshold_mode == "absolute" else 0)
        if self.config.threshold_mode != "adaptive":
            return
        try:
            profile = await self.profiles.load(symbol)
        except ProfileError as error:
            service_metrics.VALIDATION_ERRORS.labels(code=error.code).inc()
            log.error("order_flow.profile_unreadable", symbol=symbol, code=error.code, reason=str(error))
            profile = None
        self.engine.set_profile(symbol, profile)
        if profile is None:
            log.warning("order_flow.profile_missing", symbol=symbol, detail="calibrating from the session itself")
        else:
            log.info("order_flow.profile_loaded", symbol=symbol, days=list(profile.days), source=profile.source)

    # --- start-up ----------------------------------------------------------------
    async def _history_end(self, stream: str) -> str | None:
        """XREVRANGE ``max`` covering what this group already processed: strictly
        before its oldest pending entry, else up to its last delivered entry.
        None when the group has processed nothing."""
        return await self.bus.processed_until(stream, self.group)

    async def _warm_up(self, stream: str) -> None:
        """Rebuild the windows from the processed history (outputs dropped: they
        were published before the restart; publishing is idempotent anyway)."""
        end = await self._history_end(stream)
        history: list[MarketEvent] = []
        newest_ts: int | None = None
        while end is not None:
            rows = await self.bus.read_range_reverse(stream, end=end, start="-", count=1000)
            far_enough = False
            for row in rows:
                try:
                    event = decode(row.payload)
                except WireDecodeError:
                    continue
                if _misplaced(event, row, self.keys.symbol_of(stream)) is not None:
                    continue  # a poison entry in the history: it was (or will be) dead-lettered when delivered
                newest_ts = event.ts_event if newest_ts is None else newest_ts
                if newest_ts - event.ts_event > self.warmup_ns:
                    far_enough = True
                    break
                history.append(event)
            if far_enough or len(rows) < 1000:
                break
            end = f"({as_text(rows[-1].entry_id)}"
        for event in reversed(history):
            try:
                self.engine.process(event)
            except Exception as error:
                self._rules_failed(event, error)
        self.stats.warmed_up_events += len(history)
        if history:
            log.info("order_flow.detector_warmed_up", stream=stream, events=len(history))

    async def _recover(self, stream: str) -> None:
        """Process this consumer's own pending entries of ``stream`` (crash before ack)."""
        while entries := await self.bus.read_own_pending(self.group, self.consumer, stream):
            kept = await self._without_overdelivered(entries)
            if kept:
                await self._handle(kept)
            if len(entries) < 1000:
                return

    async def _reclaim(self) -> None:
        self._last_reclaim = time.monotonic()
        idle_ms = int(self.config.reclaim_idle_seconds * 1000)
        found = await self.bus.reclaim_all(list(self.streams), self.group, self.consumer, min_idle_ms=idle_ms)
        for stream, (claimed, _deleted) in found.items():
            if claimed:
                log.warning("order_flow.entries_reclaimed", stream=stream, entries=len(claimed))
                kept = await self._without_overdelivered(claimed)
                if kept:
                    await self._handle(kept)

    # --- steady state --------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> DetectorStats:
        """Consume until ``stop`` is set; returns the counters."""
        await self.refresh()
        await self._reclaim()
        self._stop = stop
        heartbeat = asyncio.ensure_future(self._heartbeat(stop))
        consume = asyncio.ensure_future(self._consume(stop))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({consume, stopped, heartbeat}, return_when=asyncio.FIRST_COMPLETED)
            if (
                heartbeat.done()
                and not heartbeat.cancelled()
                and heartbeat.exception() is not None
                and not isinstance(heartbeat.exception(), _Stopping)
                and not stop.is_set()
            ):
                consume.cancel()  # never go on half-alive: without the heartbeat resting offers would wait for events
                await asyncio.gather(consume, return_exceptions=True)
                log.error("order_flow.detector_failed", code="internal_error", error=repr(heartbeat.exception())[:300])
                raise heartbeat.exception()
            if (
                not consume.done()
            ):  # stopping: the batch in hand may finish, a Redis call retrying into an outage may not
                done, _ = await asyncio.wait({consume}, timeout=STOP_GRACE_SECONDS)
                if not done:
                    consume.cancel()
                    log.warning(
                        "order_flow.detector_stopped_mid_call",
                        detail="the batch in hand stays pending and is redelivered",
                    )
            await consume
        except _Stopping:
            log.warning(
                "order_flow.detector_stopped_during_outage", detail="the batch in hand stays pending and is redelivered"
            )
        except asyncio.CancelledError:
            if not stop.is_set():
                raise
        finally:
            for task in (heartbeat, stopped):
                task.cancel()
            await asyncio.gather(heartbeat, stopped, return_exceptions=True)
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
                await self._recreate_groups(str(error))

    async def _step(self) -> None:
        if time.monotonic() - self._last_refresh >= self.refresh_seconds:
            await self.refresh()
        if time.monotonic() - self._last_reclaim >= RECLAIM_EVERY_SECONDS:
            await self._reclaim()
        if not self.streams:
            await asyncio.sleep(0.1)
            return
        if time.monotonic() - self._last_lag >= LAG_EVERY_SECONDS:
            await self._measure_lag()  # before the read, which would step over entries trimmed unread
        entries = await self.bus.read_group(
            self.group,
            self.consumer,
            list(self.streams),
            count=self._per_stream(),
            block_ms=None if self.bus.embedded else 200,
        )
        if entries:
            await self._handle(entries)
        elif self.bus.embedded:
            await asyncio.sleep(0.02)

    async def _until_done(self, attempt: Callable[[], Awaitable[None]]) -> None:
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

    async def _recreate_groups(self, reason: str) -> None:
        """The group was deleted (or Redis restarted empty): recreate it on every stream, after the last entry
        this detector handled (the stream's start where it handled none), and say so."""
        log.error("order_flow.consumer_group_recreated", code="bus_group_missing", reason=reason[:300])
        for stream, symbol in self.streams.items():
            start = self._last_entry.get(stream, b"0")
            if await self.bus.ensure_group(stream, self.group, as_text(start)):
                now = now_ns()
                status = FeedStatus(
                    source="detector",
                    state="gap",
                    ts_event=now,
                    ts_recv=now,
                    symbols=(symbol,),
                    code="group_recreated",
                    detail=f"consumer group {self.group} was missing on {stream}: recreated after entry {as_text(start)}",
                )
                await self._once(f"{stream}:group_recreated:{now}", self.keys.status, status)

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        """Event time passes between events: a large offer is reported the moment it has rested long enough,
        not at the stock's next event. Its own timer: a Redis BLOCK timeout is only as fine as the server's
        cron (100 ms at the default ``hz 10``). Woken after every batch, which may have shown a new offer."""
        while not stop.is_set():
            due = self.engine.next_due()
            self._batch_done.clear()
            try:
                await asyncio.wait_for(
                    self._batch_done.wait(), 0.2 if due is None else max(0.0, (due - now_ns()) / NANOSECONDS_PER_SECOND)
                )
            except TimeoutError:
                pass
            passed = self.engine.advance(now_ns())
            if passed:
                await self._until_done(lambda: self._publish(passed))

    def _per_stream(self) -> int:
        """XREADGROUP's COUNT (per stream) so that one read holds at most :data:`BATCH_ENTRIES` (and 1,000 a stream)."""
        return min(1000, max(20, BATCH_ENTRIES // max(1, len(self.streams))))

    async def drain(self) -> None:
        """Process everything delivered and undelivered now (tests, demo end)."""
        while True:
            entries = await self.bus.read_group(
                self.group, self.consumer, list(self.streams), count=self._per_stream(), block_ms=None
            )
            if not entries:
                return
            await self._handle(entries)

    async def _measure_lag(self) -> None:
        self._last_lag = time.monotonic()
        positions = await self.bus.group_positions(list(self.streams), self.group)
        for stream, symbol in list(self.streams.items()):
            position = positions[stream]
            if position.lag is not None:
                service_metrics.CONSUMER_LAG.labels(symbol=symbol).set(position.lag)
            trimmed = position.trimmed_unread()
            if trimmed != 0 and self._trim_reported.get(stream) != position.first_entry:
                self._trim_reported[stream] = position.first_entry
                await self._report_trimmed(stream, symbol, position, trimmed)

    async def _report_trimmed(self, stream: str, symbol: str, position: GroupPosition, trimmed: int | None) -> None:
        """Entries were trimmed (MAXLEN) before this detector read them: a gap, said so, and the symbol's
        windows reset (they would span it)."""
        start, end = position.trimmed_interval_ns()
        count = f"{trimmed:,}" if trimmed is not None else "an unknown number of"
        now = now_ns()
        status = FeedStatus(
            source="detector",
            state="gap",
            ts_event=now,
            ts_recv=now,
            symbols=(symbol,),
            code="trimmed_unread",
            detail=f"{count} entries of {stream} were trimmed (ORDER_FLOW_STREAM_MAX_LENGTH) before the detector "
            f"read them: raise the cap or add detectors",
            gap_start_ns=start,
            gap_end_ns=end,
        )
        service_metrics.FEED_GAPS.labels(reason="trimmed_unread").inc()
        log.error("order_flow.trimmed_unread", code="trimmed_unread", symbol=symbol, entries=trimmed, stream=stream)
        self.engine.process(status)
        await self._once(f"{stream}:trimmed_unread:{position.first_entry}", self.keys.status, status)

    async def _handle(self, entries: list[BusEntry]) -> None:
        outputs: list[Output] = []
        kinds: dict[type, int] = {}
        received: list[int] = []
        dead: list[tuple[BusEntry, str, str]] = []
        process = self.engine.process
        for entry in entries:
            try:
                event = decode(entry.payload)
            except WireDecodeError as error:
                self.stats.undecodable += 1
                service_metrics.VALIDATION_ERRORS.labels(code=error.code).inc()
                dead.append((entry, error.code, str(error)))
                continue
            problem = _misplaced(event, entry, self.streams.get(entry.stream, ""))
            if problem is not None:  # valid msgpack, but not what this stream and field may hold: a poison entry
                self.stats.undecodable += 1
                dead.append((entry, *problem))
                continue
            kind = type(event)
            kinds[kind] = kinds.get(kind, 0) + 1
            received.append(event.ts_recv)
            try:
                produced = process(event)
            except Exception as error:
                dead.append((entry, "processing_failed", self._rules_failed(event, error)))
                continue
            if produced:
                outputs.extend(produced)
        self.stats.events += len(entries)
        for kind, count in kinds.items():
            service_metrics.EVENTS_PROCESSED.labels(kind=kind.__struct_config__.tag).inc(count)
        by_stream: dict[str, list[bytes]] = {}
        for entry in entries:
            by_stream.setdefault(entry.stream, []).append(entry.entry_id)

        async def finish() -> None:  # the events are processed: what they gave must reach Redis, whatever it takes
            for entry, code, reason in dead:
                await self._dead_letter(entry, code, reason)
            if outputs:
                await self._publish(outputs)
            for stream, ids in by_stream.items():
                await self.bus.ack(stream, self.group, ids)

        await self._until_done(finish)
        for stream, ids in by_stream.items():
            self._last_entry[stream] = ids[-1]
        if received:
            done = now_ns()
            service_metrics.PROCESSING_LATENCY.observe(max(0, done - min(received)) / NANOSECONDS_PER_SECOND)
            if self.keep_latencies:
                self.stats.latencies_ms.extend((done - stamp) / 1e6 for stamp in received)
        service_metrics.HALTED_SYMBOLS.set(self.engine.halted_symbols())
        self._batch_done.set()

    def _rules_failed(self, event, error: Exception) -> str:
        """The rules raised on ``event`` (a defect, or an input nothing anticipated): logged with the traceback,
        the symbol's windows forgotten (their state is suspect) and the reason for the dead letter returned."""
        self.stats.processing_failures += 1
        symbol = getattr(event, "symbol", "")
        log.error(
            "order_flow.processing_failed",
            code="processing_failed",
            symbol=symbol,
            error=type(error).__name__,
            detail=str(error)[:300],
            exc_info=error,
        )
        if symbol:
            self.engine.reset(symbol, event.ts_event)
        return f"the rules raised {type(error).__name__}: {error}"

    async def _without_overdelivered(self, entries: list[BusEntry]) -> list[BusEntry]:
        """Entries delivered again (a restart's own pending ones, or reclaimed from a stalled detector): those
        delivered ``max_deliveries`` times already — their reader died on each — go to the dead-letter stream
        (acknowledged) instead of killing this detector too; the rest are returned to be handled."""
        counts = await self.bus.delivery_counts(self.group, self.consumer, entries)
        limit = self.config.max_deliveries
        keep = []
        for entry in entries:
            delivered = counts.get(entry.entry_id, 0)
            if delivered > limit:
                await self._dead_letter(
                    entry,
                    "delivery_limit",
                    f"delivered {delivered} times without an acknowledgement (ORDER_FLOW_MAX_DELIVERIES={limit})",
                )
                await self.bus.ack(entry.stream, self.group, [entry.entry_id])
            else:
                keep.append(entry)
        return keep

    async def _dead_letter(self, entry: BusEntry, code: str, reason: str) -> None:
        """Move an entry that cannot be handled to ``<stream>:dead`` with the reason, report it; the batch's ack
        then removes it from the pending list, so it can never crash or stall the detector again."""
        symbol = self.streams.get(entry.stream, "")
        entry_id = await self.bus.dead_letter(entry, code, reason)
        now = now_ns()
        status = FeedStatus(
            source="detector",
            state="dead_letter",
            ts_event=now,
            ts_recv=now,
            symbols=(symbol,) if symbol else (),
            code=code,
            detail=f"entry {entry_id} of {entry.stream} moved to {self.keys.dead_letters(entry.stream)}: {reason[:200]}",
        )
        await self._once(f"{entry.stream}:dead:{entry_id}", self.keys.status, status)

    async def _publish(self, outputs: list[Output]) -> None:
        for output in outputs:
            if isinstance(output, OrderFlowAlert):
                await self._publish_alert(output)
            elif isinstance(output, ExitRecommendation):
                await self._publish_exit(output)
            elif isinstance(output, FeedStatus):
                status_id = f"{','.join(output.symbols)}:status:{output.state}:{output.code}:{output.ts_event}"
                if not await self._once(status_id, self.keys.status, output):
                    continue  # a redelivered event: this status was published already
                log.warning(
                    f"order_flow.{output.state}",
                    symbol=",".join(output.symbols),
                    code=output.code,
                    detail=output.detail,
                    timestamp_utc=ns_to_utc_iso(output.ts_event),
                )
                if output.state in ("calibrating", "calibrated"):
                    self._threshold_metrics(output)
                if self.on_output:
                    self.on_output(output)
            elif isinstance(output, ValidationIssue):
                service_metrics.VALIDATION_ERRORS.labels(code=output.code).inc()
                log.error(
                    logs.DATA_VALIDATION_ERROR,
                    symbol=output.symbol,
                    code=output.code,
                    detail=output.detail,
                    halting=output.halting,
                    timestamp_utc=ns_to_utc_iso(output.ts_event),
                )
            elif isinstance(output, AlertsExpired):
                log.info(logs.ALERT_WINDOW_EXPIRED, alert_ids=list(output))
            elif isinstance(output, ProfileUpdate):
                await self.profiles.save(output.profile)
                log.info("order_flow.profile_saved", symbol=output.profile.symbol, days=list(output.profile.days))

    def _threshold_metrics(self, status: FeedStatus) -> None:
        for symbol in status.symbols:
            engine = self.engine.symbols.get(symbol)
            if engine is None:
                continue
            service_metrics.CALIBRATED.labels(symbol=symbol).set(1 if status.state == "calibrated" else 0)
            service_metrics.THRESHOLD_SHARES.labels(symbol=symbol, kind="large_order").set(
                engine.thresholds.large_order_size
            )
            service_metrics.THRESHOLD_SHARES.labels(symbol=symbol, kind="large_offer").set(engine.thresholds.offer_size)

    async def _once(self, output_id: str, stream: str, message, channel: str = "") -> bool:
        tag = type(message).__struct_config__.tag
        result = await self._publish_once.publish(
            output_id, stream, tag, encode(message), channel=channel, remember_seconds=DEDUP_SECONDS
        )
        if not result:
            self.stats.duplicates_suppressed += 1
            service_metrics.DUPLICATES_SKIPPED.labels(kind=tag).inc()
        return bool(result)

    async def _publish_alert(self, alert: OrderFlowAlert) -> None:
        latency_ms = (now_ns() - alert.ts_recv) / 1e6
        alert = msgspec.structs.replace(alert, latency_ms=round(latency_ms, 3))
        if not await self._once(alert.id, self.keys.alerts, alert):
            return
        self.stats.alerts += 1
        if self.keep_latencies:
            self.stats.latencies_ms.append(latency_ms)
        service_metrics.ALERTS.labels(alert_type=alert.alert_type, severity=alert.severity).inc()
        service_metrics.ALERT_LATENCY.observe(latency_ms / 1000)
        event = logs.LARGE_SELLER_DETECTED if alert.alert_type == "large_seller" else logs.RED_BURST_DETECTED
        log.warning(event, **_alert_fields(alert))
        if self.on_output:
            self.on_output(alert)

    async def _publish_exit(self, recommendation: ExitRecommendation) -> None:
        now = now_ns()
        recommendation = msgspec.structs.replace(
            recommendation, latency_ms=round((now - recommendation.ts_recv) / 1e6, 3)
        )
        if self.config.signing_key is not None:
            recommendation = sign(
                recommendation, self.config.signing_key.get_secret_value().encode(), self.config.signing_key_id, now
            )
        if not await self._once(recommendation.id, self.keys.exits, recommendation, self.keys.exit_channel):
            return
        self.stats.exits += 1
        service_metrics.EXIT_RECOMMENDATIONS.inc()
        log.warning(
            logs.EXIT_SIGNAL_TRIGGERED,
            id=recommendation.id,
            symbol=recommendation.symbol,
            trigger=recommendation.trigger,
            alert_ids=list(recommendation.alert_ids),
            reasoning=recommendation.reasoning,
            session=recommendation.session,
            timestamp_utc=recommendation.timestamp_utc,
            latency_ms=recommendation.latency_ms,
            source="detector",
        )
        if self.on_output:
            self.on_output(recommendation)


_MARKET_TAGS = {b"trade", b"quote", b"book", b"status"}


def _misplaced(event, entry: BusEntry, symbol: str) -> tuple[str, str] | None:
    """Why a decoded entry does not belong on a market stream: ``(code, reason)``, or None when it does."""
    tag = type(event).__struct_config__.tag.encode()
    if tag not in _MARKET_TAGS:
        return "wrong_type", f"a {tag.decode()} message on a market stream (only trade, quote, book, status)"
    if entry.field and entry.field != tag:
        return "wrong_field", f"field {as_text(entry.field)!r} holds a {tag.decode()}"
    if type(event) is FeedStatus:
        if event.symbols and symbol and symbol not in event.symbols:
            return "wrong_symbol", f"a status for {','.join(event.symbols)} on the stream of {symbol}"
    elif symbol and event.symbol != symbol:
        return "wrong_symbol", f"an event of {event.symbol} on the stream of {symbol}"
    return None


def _alert_fields(alert: OrderFlowAlert) -> dict:
    return {
        "id": alert.id,
        "symbol": alert.symbol,
        "alert_type": alert.alert_type,
        "severity": alert.severity,
        "source": alert.source,
        "order_size": alert.order_size,
        "price_level": format_price(alert.price_level),
        "volume_ratio": alert.volume_ratio,
        "sell_ratio": alert.sell_ratio,
        "two_sided": alert.two_sided,
        "session": alert.session,
        "timestamp_utc": alert.timestamp_utc,
        "latency_ms": alert.latency_ms,
        "evidence": alert.evidence,
    }
