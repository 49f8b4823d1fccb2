"""The dashboard's readers of the bus, one task each, feeding :class:`~services.dashboard.state.DashboardState`
and the :class:`~services.dashboard.hub.Hub` (never a Redis connection per open page):

- the **outputs** reader follows the alerts, exits and status streams (one blocking XREAD for the three), and sends
  each alert and exit recommendation to the pages as it comes, with the updated header and cards;
- the **market** reader follows the shown symbols' market streams (one blocking XREAD for all), and sends the charts'
  changes four times a second at most;
- the **slow** poller asks once a second for what changes slowly: the open positions, the detectors' leases, the
  detector group's lag, the bots' handled marks and decisions on the last exit recommendations (a market exit's per
  position it names; until each is settled: every bot's mark final with its decision recorded, or final for
  ``SETTLE_GRACE_NS`` without one); then the header and cards, sent only when they changed.

At start the outputs of the last 30 minutes are read, and the large-seller alerts of the New York day (back to
``DAY_ALERTS_LIMIT`` entries) for the largest seller today.

Each stream reader waits in Redis for its next entries (XREAD BLOCK up to ``BLOCK_MS``; on a cluster the bus polls
each stream every few ms instead), so an alert reaches the pages as soon as Redis has it, and an idle reader sends a
command a second. The market reader, after a read that brought entries, lets more gather for ``MARKET_GATHER_SECONDS``
before the next (the charts change four times a second: reading each entry as it comes would only cost CPU). A
symbol newly shown is followed from the market reader's next read (within ``BLOCK_MS``). While Redis does not
answer, the header says since when, and the readers catch up when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from orderflow_client import logs
from orderflow_client.bus.calls import OUTAGE_ERRORS
from orderflow_client.bus.connection import Bus
from orderflow_client.bus.decision_records import read_decisions
from orderflow_client.bus.leases import Leases, holder_of
from orderflow_client.bus.marks import HandledMarks
from orderflow_client.bus.streams import BusEntry, as_text, stream_id
from orderflow_client.dashboard_panel import decision_words, mark_key
from orderflow_client.errors import ConsumerGroupMissingError, WireDecodeError
from orderflow_client.positions import PositionRegistry
from orderflow_client.timestamps import NANOSECONDS_PER_SECOND, NEW_YORK, now_ns
from orderflow_client.wire import ExitRecommendation, FeedStatus, OrderFlowAlert, decode, unbatched
from services.dashboard.hub import Hub
from services.dashboard.state import LOG_WINDOW_NS, DashboardState
from services.dashboard.views import market_changes, output_view, summary_view

log = logs.get_logger(__name__)

BLOCK_MS = 1000  # how long a stream reader waits in Redis for new entries (well under the bus's socket timeout)
MARKET_GATHER_SECONDS = 0.05
MARKET_FLUSH_SECONDS = 0.25
SLOW_SECONDS = 1.0
READ_COUNT = 1000
OUTPUT_HISTORY = 5000  # entries of each output stream read at start (the last 30 minutes of them)
MARKET_HISTORY = 2000  # entries of each market stream read when its symbol first shows (up to 64 events each)
DAY_ALERTS_LIMIT = 50_000  # alert entries read back at most at start for the day's largest seller
HANDLED_MARKS = {b"done": "handled", b"parked": "gave up (parked)"}
SETTLE_GRACE_NS = 30 * NANOSECONDS_PER_SECOND  # a final mark with no decision recorded is settled after this
MARK_READS_AT_ONCE = 8  # handled marks asked at the same time (each a GET)


def new_york_day(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / NANOSECONDS_PER_SECOND, tz=NEW_YORK).date().isoformat()


def steady_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """A summary without the wall-clock fields the page does not read (it ages the last frame itself): the same
    steady summary is not sent again."""
    steady = {key: value for key, value in summary.items() if key != "now"}
    steady["health"] = {key: value for key, value in summary["health"].items() if key != "last_frame_age_s"}
    return steady


class Readers:
    """The readers of one dashboard; :meth:`run` until ``stop``."""

    def __init__(
        self,
        bus: Bus,
        state: DashboardState,
        hub: Hub,
        *,
        consumer_group: str,
        bot_names: tuple[str, ...] = ("bot",),
        detector_lease_seconds: float = 5.0,
        clock: Callable[[], int] = now_ns,
    ) -> None:
        self.bus = bus
        self.state = state
        self.hub = hub
        self.consumer_group = consumer_group
        self.bot_names = bot_names
        self.detector_lease_seconds = detector_lease_seconds
        self.clock = clock
        self.output_ids: dict[str, str] = {}
        self.market_ids: dict[str, str] = {}  # market stream → last entry id read
        self.leases = Leases(bus)
        self.positions = PositionRegistry(bus)
        self.settled: set[str] = set()  # last exit ids no longer asked about (see _poll_handled)
        self.failing: set[str] = set()  # the steps whose last Redis call failed (Redis unreachable until none)
        self.final_since: dict[str, int] = {}  # last exit id → when every bot's mark was first seen final (wall ns)

    async def start(self) -> None:
        """Read the recent history (the last 30 minutes of outputs) and the positions before serving the page."""
        await self._poll_slow()
        await self._seed_outputs()
        await self._follow_markets()

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [
            asyncio.ensure_future(self._loop(stop, self._follow_outputs, 0)),
            asyncio.ensure_future(self._loop(stop, self._follow_markets, MARKET_GATHER_SECONDS)),
            asyncio.ensure_future(self._loop(stop, self._flush_markets, MARKET_FLUSH_SECONDS)),
            asyncio.ensure_future(self._loop(stop, self._poll_slow, SLOW_SECONDS)),
        ]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _loop(self, stop: asyncio.Event, step: Callable[[], object], seconds: float) -> None:
        """Run ``step`` until ``stop``, waiting ``seconds`` after each that returns False (not to go again at once)."""
        while not stop.is_set():
            try:
                busy = await step()  # type: ignore[misc]
                if step.__name__ in self.failing:  # Redis answers this reader again (one reading no Redis says nothing)
                    self.failing.discard(step.__name__)
                    if not self.failing and self.state.unreachable_since_ns:
                        self.state.unreachable_since_ns = 0
                        self._publish_summary()
            except OUTAGE_ERRORS:
                self.failing.add(step.__name__)
                if not self.state.unreachable_since_ns:
                    self.state.unreachable_since_ns = self.clock()
                    self._publish_summary()
                busy = False
                await asyncio.sleep(1.0)
            except Exception as error:  # the page stays up; the log says what failed
                log.error(
                    "order_flow.dashboard_read_failed", step=step.__name__, error=f"{type(error).__name__}: {error}"
                )
                busy = False
                await asyncio.sleep(1.0)
            if not busy and seconds:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=seconds)

    def _publish_summary(self) -> None:
        summary = summary_view(self.state, self.clock())
        self.hub.publish_changed("summary", summary, steady_summary(summary))

    # --- the output streams ---------------------------------------------------------------------------------------
    async def _seed_outputs(self) -> None:
        keys = self.bus.keys
        history: list[BusEntry] = []
        for stream in (keys.alerts, keys.exits, keys.status):
            rows = await self.bus.read_range_reverse(stream, count=OUTPUT_HISTORY)
            self.output_ids[stream] = as_text(rows[0].entry_id) if rows else "0-0"
            history.extend(rows)
        messages = [message for message in (self._decode(entry) for entry in history) if message is not None]
        messages.sort(key=lambda message: getattr(message, "ts_event", 0))
        newest = max((getattr(message, "ts_event", 0) for message in messages), default=0)
        for message in messages:
            if newest - getattr(message, "ts_event", 0) <= LOG_WINDOW_NS or isinstance(message, FeedStatus):
                self.state.apply_output(message)
        alerts = [message for message in messages if isinstance(message, OrderFlowAlert)]
        rows = [row for row in history if row.stream == keys.alerts]  # newest first
        oldest_id = as_text(rows[-1].entry_id) if rows else ""
        await self._seed_largest_seller(alerts, oldest_id, more=len(rows) >= OUTPUT_HISTORY)

    async def _seed_largest_seller(self, alerts: list[OrderFlowAlert], oldest_id: str, *, more: bool) -> None:
        """The largest seller of the market clock's New York day among the large-seller alerts of that day, read
        back from ``oldest_id`` (exclusive) while they are of that day, ``DAY_ALERTS_LIMIT`` entries at most."""
        if not self.state.clock_ns:
            return
        day = new_york_day(self.state.clock_ns)
        read = len(alerts)
        while True:
            for alert in alerts:
                best = self.state.largest_seller
                if alert.alert_type != "large_seller" or new_york_day(alert.ts_event) != day:
                    continue
                if best is None or new_york_day(best.ts_event) != day or alert.order_size > best.order_size:
                    self.state.largest_seller = alert
            earliest = min((alert.ts_event for alert in alerts), default=0)
            if not more or not oldest_id or read >= DAY_ALERTS_LIMIT or new_york_day(earliest) < day:
                return
            rows = await self.bus.read_range_reverse(self.bus.keys.alerts, end=f"({oldest_id}", count=OUTPUT_HISTORY)
            read += len(rows)
            more = len(rows) >= OUTPUT_HISTORY
            oldest_id = as_text(rows[-1].entry_id) if rows else ""
            alerts = []
            for row in rows:
                with contextlib.suppress(WireDecodeError):
                    message = decode(row.payload)
                    if isinstance(message, OrderFlowAlert):
                        alerts.append(message)

    async def _follow_outputs(self) -> bool:
        entries = await self.bus.read_after(self.output_ids, count=READ_COUNT, block_ms=BLOCK_MS)
        for entry in entries:
            self.output_ids[entry.stream] = as_text(entry.entry_id)
            message = self._decode(entry)
            if message is None:
                continue
            self.state.apply_output(message)
            if isinstance(message, OrderFlowAlert | ExitRecommendation):
                self.hub.publish("output", output_view(message, self.state, stream_id(as_text(entry.entry_id))[0]))
        if entries:
            self._publish_summary()
        return True  # the read waited in Redis: read again at once

    def _decode(self, entry: BusEntry) -> object | None:
        try:
            return decode(entry.payload)
        except WireDecodeError:
            self.state.skipped += 1
            return None

    # --- the market streams ---------------------------------------------------------------------------------------
    async def _follow_markets(self) -> bool:
        keys = self.bus.keys
        shown = {keys.market(symbol) for symbol in self.state.symbols()}
        for stream in [stream for stream in self.market_ids if stream not in shown]:  # a position closed
            del self.market_ids[stream]
            self.state.forget(keys.symbol_of(stream))
        for stream in sorted(shown - set(self.market_ids)):
            await self._seed_market(stream)
        if not self.market_ids:
            return False  # nothing shown: look again soon
        entries = await self.bus.read_after(self.market_ids, count=READ_COUNT, block_ms=BLOCK_MS)
        seen = self.clock()
        for entry in entries:
            self.market_ids[entry.stream] = as_text(entry.entry_id)
            message = self._decode(entry)
            if message is not None:
                for event in unbatched(message):  # type: ignore[arg-type]
                    self.state.apply_market(event, seen)
        return not entries or len(entries) >= READ_COUNT  # waited in Redis, or more to read: again at once

    async def _seed_market(self, stream: str) -> None:
        rows = await self.bus.read_range_reverse(stream, count=MARKET_HISTORY)
        self.market_ids[stream] = as_text(rows[0].entry_id) if rows else "0-0"
        for entry in reversed(rows):
            message = self._decode(entry)
            if message is not None:
                for event in unbatched(message):  # type: ignore[arg-type]
                    self.state.apply_market(event, 0)

    async def _flush_markets(self) -> bool:
        changes = market_changes(self.state)
        if changes:
            self.hub.publish("market", changes)
        return False

    # --- what changes slowly ----------------------------------------------------------------------------------------
    async def _poll_slow(self) -> bool:
        self.state.set_positions(await self.positions.list())
        symbols = self.state.symbols()
        alive = await self.leases.members_seen("detector")
        self.state.detectors_alive = sum(age <= self.detector_lease_seconds for age in alive.values())
        if self.state.detectors_alive:
            holders = await self.leases.holders("detector", symbols)
            self.state.detectors = {symbol: holder_of(value) for symbol, value in holders.items()}
        await self._poll_lags()
        await self._poll_handled()
        self._publish_summary()
        return False

    async def _poll_lags(self) -> None:
        keys = self.bus.keys
        streams = [
            keys.market(symbol)
            for symbol in self.state.symbols()
            if self.market_ids.get(keys.market(symbol), "0-0") != "0-0"
        ]
        try:
            positions = await self.bus.group_positions(streams, self.consumer_group) if streams else {}
        except ConsumerGroupMissingError:  # one stream without the group yet: ask them one by one
            positions = {}
            for stream in streams:
                with contextlib.suppress(ConsumerGroupMissingError):
                    positions.update(await self.bus.group_positions([stream], self.consumer_group))
        self.state.lags = {keys.symbol_of(stream): position.lag for stream, position in positions.items()}

    async def _poll_handled(self) -> None:
        """Each bot's mark on each card's last exit recommendation, with the decision it recorded (``exit
        (handled)``, ``tighten stop 186.49 (handled)``), under :func:`~orderflow_client.dashboard_panel.mark_key`: a
        market exit's position id for each position it names (a bot marks and records each on its own), else the
        recommendation's id. Asked again until it is settled: every bot's mark final (done or parked) and its
        decision known, or every mark final for ``SETTLE_GRACE_NS`` (a bot that records no decision). A bot whose
        mark on a market exit is final but has none for a position it names passed that position over (it does not
        hold it: ``skipped (not held)``). Only the last exit recommendations are remembered (with their words)."""
        current = {mark_key(item, symbol): item.id for symbol, item in self.state.last_exits.items()}
        self.settled.intersection_update(current)
        for forgotten in set(self.final_since) - set(current):
            del self.final_since[forgotten]
        for forgotten in set(self.state.handled) - set(current):  # an earlier exit's words: no card shows them
            del self.state.handled[forgotten]
        pending = [key for key in current if key not in self.settled]
        if not pending:
            return
        wholes = list(dict.fromkeys(current[key] for key in pending if key != current[key]))  # market exits' ids
        final = dict.fromkeys(pending, True)
        recorded = dict.fromkeys(pending, True)
        for bot in self.bot_names:
            marks = HandledMarks(self.bus, bot)
            whole = dict(zip(wholes, await self._marks(marks, wholes), strict=True))  # read before the positions'
            decided = await read_decisions(self.bus, bot, pending)
            rest = [key for key in pending if key not in whole]
            read = whole | dict(zip(rest, await self._marks(marks, rest), strict=True))
            for key in pending:
                value, record, skipped = read[key], decided.get(key), False
                if value is None and key != current[key]:  # no mark on the position: where is the whole exit?
                    value = whole[current[key]]
                    skipped = value in HANDLED_MARKS  # done with the exit, never with this position: not held
                mark = "not handled yet" if value is None else HANDLED_MARKS.get(value, "working on it")
                mark = "skipped (not held)" if skipped else mark
                words = mark if record is None else f"{decision_words(record)} ({mark})"
                self.state.handled.setdefault(key, {})[bot] = words
                final[key] &= value in HANDLED_MARKS
                recorded[key] &= skipped or record is not None
        now = self.clock()
        for key in pending:
            if not final[key]:
                self.final_since.pop(key, None)
                continue
            since = self.final_since.setdefault(key, now)
            if recorded[key] or now - since >= SETTLE_GRACE_NS:
                self.settled.add(key)
                del self.final_since[key]

    @staticmethod
    async def _marks(marks: HandledMarks, ids: list[str]) -> list[bytes | None]:
        """The marks on ``ids``, ``MARK_READS_AT_ONCE`` GETs at a time."""
        values: list[bytes | None] = []
        for start in range(0, len(ids), MARK_READS_AT_ONCE):
            chunk = ids[start : start + MARK_READS_AT_ONCE]
            values.extend(await asyncio.gather(*(marks.holder(recommendation_id) for recommendation_id in chunk)))
        return values
