"""The detector's consumer: the market streams of the monitored symbols, read through the consumer group.

For each stream (``{prefix}:md:{SYM}``), in this order:

1. **Group**: created at ``0`` unless it exists (a new group reads the backlog).
2. **Warm-up**: the history before the first unprocessed entry, back to ``spike + baseline + alert window`` (plus
   a minute) of event time — an index's over two context windows, its market state rebuilt from it — is run through
   the engine with its outputs dropped, so a restart or a take-over neither misses nor invents an alert.
3. **Recovery**: this consumer's own pending entries (a crash before the ack) are processed first.

Then, at each :meth:`GroupConsumer.poll`: entries of a stalled consumer idle longer than ``reclaim_idle_seconds``
are claimed with XAUTOCLAIM (every :data:`RECLAIM_EVERY_SECONDS`); the consumer lag gauge is set and entries
trimmed before this detector read them are reported as a gap (every :data:`LAG_EVERY_SECONDS`); then XREADGROUP
``>`` and the batch runs through the engine. A batch's outputs are published through the sink
(:mod:`services.detector.sink`) and its entries acknowledged, in a call the service makes hold until Redis takes it
(``until_taken``). An entry that cannot be handled (undecodable, not what its stream may hold, the rules raise on
it, delivered ``max_deliveries`` times) goes to ``<stream>:dead`` with the reason and is acknowledged.

Redis failures are raised to the caller: the service's loop is the one place they turn into recovery.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from orderflow_client import logs
from orderflow_client.bus.connection import Bus
from orderflow_client.bus.groups import GroupPosition
from orderflow_client.bus.streams import BusEntry, as_text
from orderflow_client.errors import WireDecodeError
from orderflow_client.timestamps import NANOSECONDS_PER_SECOND, now_ns
from orderflow_client.wire import FeedStatus, MarketEvent, decode
from services.detector.alert_builders import detector_status
from services.detector.engine import Engine
from services.detector.market_entries import MARKET_FIELDS, Misplaced, market_events
from services.detector.outputs import Output
from services.detector.sink import OutputSink
from services.detector.stats import DetectorStats
from shared import service_metrics
from shared.config import OrderFlowConfig
from shared.ownership import SymbolOwnership

BATCH_ENTRIES = 1_000
"""At most this many entries (1,000 – 64,000 events) a read over all streams (XREADGROUP's COUNT is per stream:
50 symbols × 1,000 made 50,000-entry batches, +44 MB and latency spikes)."""
RECLAIM_EVERY_SECONDS = 5.0
LAG_EVERY_SECONDS = 1.0  # consumer lag gauge and trimmed-unread check (one pipelined round trip)
log = logs.get_logger(__name__)

UntilTaken = Callable[[Callable[[], Awaitable[None]]], Awaitable[None]]
"""Runs an attempt (a processed batch's dead letters, outputs and acks) until Redis takes it: the service's."""


class GroupConsumer:
    """Reads the market streams of the monitored symbols as ``name`` in the configured group (see the module's
    docstring). ``streams`` maps each stream read to its symbol; ``batch_handled`` is set after every batch (the
    service's heartbeat wakes on it: a batch may have shown a new large offer)."""

    def __init__(
        self,
        config: OrderFlowConfig,
        bus: Bus,
        engine: Engine,
        sink: OutputSink,
        stats: DetectorStats,
        *,
        name: str,
        until_taken: UntilTaken,
        keep_latencies: bool = False,
        ownership: SymbolOwnership | None = None,
    ) -> None:
        self.config = config
        self.bus = bus
        self.keys = bus.keys
        self.group = config.consumer_group
        self.name = name
        self.engine = engine
        self.sink = sink
        self.stats = stats
        self.until_taken = until_taken
        self.keep_latencies = keep_latencies
        self.ownership = ownership
        self.streams: dict[str, str] = {}  # stream key -> symbol
        self.last_entry: dict[str, bytes] = {}  # stream -> the last entry id handled
        self.batch_handled = asyncio.Event()
        self._trim_reported: dict[str, str] = {}  # stream -> its first entry id when its trimming was last reported
        self._last_lag = self._last_reclaim = 0.0  # monotonic times
        settings = engine.settings
        windows_seconds = settings.spike_seconds + settings.baseline_seconds + 60
        self.warmup_ns = windows_seconds * NANOSECONDS_PER_SECOND + settings.alert_window_ns

    # --- joining and leaving a stream -------------------------------------------------
    async def join(self, stream: str) -> None:
        """The group on ``stream`` (and the stream), created at ``0`` unless it exists."""
        await self.bus.ensure_group(stream, self.group, "0")

    async def catch_up(self, stream: str, symbol: str) -> None:
        """Start reading ``stream`` (of ``symbol``): warm the engine up on what the group already processed, then
        handle this consumer's own pending entries — with leases, every pending entry of the stream, taken over
        from the detector that held it before (its lease is this one's now: it can publish nothing more)."""
        await self._warm_up(stream)
        self.streams[stream] = symbol
        try:
            if self.ownership is not None and (claimed := await self.bus.take_over(stream, self.group, self.name)):
                log.info("order_flow.entries_taken_over", stream=stream, entries=claimed)
            await self._recover(stream)
        except BaseException:  # (an outage) not read until the next refresh does all of it again, warm-up first
            del self.streams[stream]
            self.engine.symbols.pop(symbol, None)
            raise

    def forget(self, stream: str) -> None:
        """Stop reading ``stream`` (its position closed; a reopening warms up afresh)."""
        del self.streams[stream]

    async def _warm_up(self, stream: str) -> None:
        """Rebuild the windows (an index's market state afresh: :meth:`MarketWatch.restart_index`) from the processed
        history, outputs dropped (published before; publishing is idempotent anyway). The history ends strictly
        before the group's oldest pending entry, else at its last delivered entry; none if nothing was processed."""
        end = await self.bus.processed_until(stream, self.group)
        history: list[MarketEvent] = []
        newest_ts: int | None = None
        symbol = self.keys.symbol_of(stream)
        market = self.engine.market
        warmup_ns = market.restart_index(symbol, self.warmup_ns) if market is not None else self.warmup_ns
        while end is not None:
            rows = await self.bus.read_range_reverse(stream, end=end, start="-", count=1000)
            far_enough = False
            for row in rows:
                try:
                    events = market_events(decode(row.payload), row, symbol)
                except WireDecodeError:
                    continue
                if isinstance(events, Misplaced):
                    continue  # a poison entry in the history: it was (or will be) dead-lettered when delivered
                for event in reversed(events):
                    newest_ts = event.ts_event if newest_ts is None else newest_ts
                    if newest_ts - event.ts_event > warmup_ns:
                        far_enough = True
                        break
                    history.append(event)
                if far_enough:
                    break
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
        while entries := await self.bus.read_own_pending(self.group, self.name, stream):
            kept = await self._without_overdelivered(entries)
            if kept:
                await self._handle(kept)
            if len(entries) < 1000:
                return

    # --- steady state -------------------------------------------------------------------
    async def poll(self) -> None:
        """One round: reclaim from stalled consumers and measure the lag when due, then read a batch and handle it
        (waiting up to 200 ms for one on a real Redis)."""
        if time.monotonic() - self._last_reclaim >= RECLAIM_EVERY_SECONDS:
            await self._reclaim()
        if not self.streams:
            await asyncio.sleep(0.1)
            return
        if time.monotonic() - self._last_lag >= LAG_EVERY_SECONDS:
            await self._measure_lag()  # before the read, which would step over entries trimmed unread
        entries = await self.bus.read_group(
            self.group,
            self.name,
            list(self.streams),
            count=self._per_stream(),
            block_ms=None if self.bus.embedded else 200,
        )
        if entries:
            await self._handle(entries)
        elif self.bus.embedded:
            await asyncio.sleep(0.02)

    async def drain(self) -> None:
        """Process everything delivered and undelivered now (tests, demo end)."""
        while self.streams:
            entries = await self.bus.read_group(
                self.group, self.name, list(self.streams), count=self._per_stream(), block_ms=None
            )
            if not entries:
                return
            await self._handle(entries)

    def _per_stream(self) -> int:
        """XREADGROUP's COUNT (per stream) so that one read holds at most :data:`BATCH_ENTRIES` (and 1,000 a stream)."""
        return min(1000, max(20, BATCH_ENTRIES // max(1, len(self.streams))))

    async def _reclaim(self) -> None:
        self._last_reclaim = time.monotonic()
        idle_ms = int(self.config.reclaim_idle_seconds * 1000)
        found = await self.bus.reclaim_all(list(self.streams), self.group, self.name, min_idle_ms=idle_ms)
        for stream, (claimed, _deleted) in found.items():
            if claimed:
                log.warning("order_flow.entries_reclaimed", stream=stream, entries=len(claimed))
                kept = await self._without_overdelivered(claimed)
                if kept:
                    await self._handle(kept)

    async def recreate_groups(self, reason: str) -> None:
        """The group was deleted (or Redis restarted empty): recreate it on every stream, after the last entry
        this detector handled (the stream's start where it handled none), and say so."""
        log.error("order_flow.consumer_group_recreated", code="bus_group_missing", reason=reason[:300])
        for stream, symbol in self.streams.items():
            start = self.last_entry.get(stream, b"0")
            if await self.bus.ensure_group(stream, self.group, as_text(start)):
                now = now_ns()
                detail = f"consumer group {self.group} was missing on {stream}: recreated after entry {as_text(start)}"
                status = detector_status(symbol, "gap", now, "group_recreated", detail)
                await self.sink.publish_status(f"{stream}:group_recreated:{now}", status)

    # --- lag and entries trimmed unread ----------------------------------------------------
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
        detail = (
            f"{count} entries of {stream} were trimmed (ORDER_FLOW_STREAM_MAX_LENGTH) before the detector "
            f"read them: raise the cap or add detectors"
        )
        status = detector_status(symbol, "gap", now_ns(), "trimmed_unread", detail, gap_start_ns=start, gap_end_ns=end)
        service_metrics.FEED_GAPS.labels(reason="trimmed_unread").inc()
        log.error("order_flow.trimmed_unread", code="trimmed_unread", symbol=symbol, entries=trimmed, stream=stream)
        self.engine.process(status)
        await self.sink.publish_status(f"{stream}:trimmed_unread:{position.first_entry}", status)

    # --- a batch ---------------------------------------------------------------------------
    async def _handle(self, entries: list[BusEntry]) -> None:
        lapsed = {stream for stream in self.streams if not self._holds(stream)}  # a detector paused past a lease
        for stream in lapsed:  # handles nothing of that symbol on waking
            self._lost(stream, "lease lapsed")
        entries = [entry for entry in entries if entry.stream not in lapsed] if lapsed else entries
        outputs: list[Output] = []
        kinds: dict[type, int] = {}
        received: list[int] = []
        dead: list[tuple[BusEntry, str, str]] = []
        process = self.engine.process
        handled = 0
        for entry in entries:
            try:
                events = market_events(decode(entry.payload), entry, self.streams.get(entry.stream, ""))
            except WireDecodeError as error:
                self.stats.undecodable += 1
                service_metrics.VALIDATION_ERRORS.labels(code=error.code).inc()
                dead.append((entry, error.code, str(error)))
                continue
            if isinstance(events, Misplaced):  # valid msgpack, but not what this stream and field may hold: poison
                self.stats.undecodable += 1
                dead.append((entry, events.code, events.reason))
                continue
            handled += len(events)
            failure = ""
            for position, event in enumerate(events, 1):
                kind = type(event)
                kinds[kind] = kinds.get(kind, 0) + 1
                received.append(event.ts_recv)
                try:
                    produced = process(event)
                except Exception as error:  # the entry's other events still run (the symbol's windows were reset)
                    reason = self._rules_failed(event, error)
                    failure = failure or (f"event {position} of {len(events)}: {reason}" if len(events) > 1 else reason)
                    continue
                if produced:
                    outputs.extend(produced)
            if failure:
                dead.append((entry, "processing_failed", failure))
        self.stats.events += handled
        for kind, count in kinds.items():
            service_metrics.EVENTS_PROCESSED.labels(kind=MARKET_FIELDS[kind].decode()).inc(count)
        by_stream: dict[str, list[bytes]] = {}
        for entry in entries:
            by_stream.setdefault(entry.stream, []).append(entry.entry_id)

        unacknowledged: set[str] = set()

        async def finish() -> None:  # the events are processed: what they gave must reach Redis, whatever it takes
            for entry, code, reason in dead:
                await self._dead_letter(entry, code, reason)
            if outputs:
                await self.sink.publish(outputs)
            fenced = {self.keys.market(symbol) for symbol in self.sink.fenced}
            for stream, ids in by_stream.items():  # a lost symbol's entries stay pending for its new owner:
                if stream in fenced or not self._holds(stream):  # refused at a publish, or lapsed in a pause (the
                    unacknowledged.add(stream)  # clock decides an ack: Redis cannot fence it, another slot)
                else:
                    await self.bus.ack(stream, self.group, ids)

        await self.until_taken(finish)
        for stream in (unacknowledged - {self.keys.market(symbol) for symbol in self.sink.fenced}) & set(self.streams):
            self._lost(stream, "lease lapsed")
        for symbol in list(self.sink.fenced):
            self.sink.fenced.discard(symbol)
            if self.keys.market(symbol) in self.streams:
                self._lost(self.keys.market(symbol), "publish refused")
        for stream, ids in by_stream.items():
            self.last_entry[stream] = ids[-1]
        if received:
            done = now_ns()
            service_metrics.PROCESSING_LATENCY.observe(max(0, done - min(received)) / NANOSECONDS_PER_SECOND)
            if self.keep_latencies:
                self.stats.latencies_ms.extend((done - stamp) / 1e6 for stamp in received)
        service_metrics.HALTED_SYMBOLS.set(self.engine.halted_symbols())
        self.batch_handled.set()

    def _holds(self, stream: str) -> bool:
        """Whether this detector may still act on ``stream`` (its symbol's lease held by its clock; no leases: yes)."""
        return self.ownership is None or self.ownership.holds(self.keys.symbol_of(stream))

    def _lost(self, stream: str, reason: str) -> None:
        """Stop handling ``stream``: its symbol's lease is another detector's now (its windows are forgotten; the
        entries in hand stay pending, unacknowledged, for the new owner)."""
        symbol = self.streams.pop(stream)
        self.engine.symbols.pop(symbol, None)
        if self.ownership is not None:
            self.ownership.lost(symbol)
        log.warning("order_flow.symbol_handed_over", symbol=symbol, reason=reason)

    def _rules_failed(self, event: MarketEvent, error: Exception) -> str:
        """The rules raised on ``event`` (a defect, or an input nothing anticipated): logged with the traceback,
        the symbol's windows forgotten (their state is suspect) and the reason for the dead letter returned."""
        self.stats.processing_failures += 1
        symbol = event.symbol if not isinstance(event, FeedStatus) else ""
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

    # --- entries that cannot be handled -------------------------------------------------------
    async def _without_overdelivered(self, entries: list[BusEntry]) -> list[BusEntry]:
        """Entries delivered again (a restart's own pending ones, or reclaimed from a stalled detector): those
        delivered ``max_deliveries`` times already — their reader died on each — go to the dead-letter stream
        (acknowledged) instead of killing this detector too; the rest are returned to be handled."""
        counts = await self.bus.delivery_counts(self.group, self.name, entries)
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
            detail=f"entry {entry_id} of {entry.stream} moved to {self.keys.dead_letters(entry.stream)}: "
            f"{reason[:200]}",
        )
        await self.sink.publish_status(f"{entry.stream}:dead:{entry_id}", status)
