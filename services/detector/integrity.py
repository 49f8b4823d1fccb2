"""Data integrity of one symbol's events.

Each market event is checked before any rule sees it:

============================ ===================================================
``stale_data``               arrived more than ``stale_warning`` after its event
                             time (``ts_arrival − ts_event``, so replays judge it
                             as the live session did)
``stale_data_failure``       … more than ``stale_failure``
``future_timestamp``         event time more than the chronology tolerance after
                             its arrival (a clock problem)
``out_of_order``             a print more than the tolerance before the last print
``invalid_price``            a print at ≤ 0, a quote, book level or order below 0
``invalid_size``             a print of ≤ 0 shares, a negative quote/level/order size
============================ ===================================================

Any of these halts monitoring of the symbol (safety first: no alert from data that may be wrong): a
``monitoring_halted`` status is published, the rules stop and their windows
are reset. Monitoring resumes, with a ``monitoring_resumed`` status, only
after ``resume_after`` of event time during which every event was valid.

An event-time silence longer than ``gap_silence`` during the regular session
is a gap: a ``gap`` status is published and the windows reset (they span
missing data), without a halt. Pre-market and after-hours trading is thin;
silence there is normal, and session changes reset the windows anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from orderflow_client.wire import BookUpdate, FeedStatus, OrderUpdate, Quote, Trade
from services.detector.alert_builders import detector_status

MarketData = Trade | Quote | BookUpdate | OrderUpdate
"""The events the rules judge (a feed's :class:`~orderflow_client.wire.FeedStatus` is not checked)."""

HALTING = frozenset(
    {"stale_data", "stale_data_failure", "future_timestamp", "out_of_order", "invalid_price", "invalid_size"}
)


class ValidationIssue(NamedTuple):
    """A check an event failed. ``halting`` issues stop monitoring."""

    symbol: str
    code: str
    detail: str
    ts_event: int
    halting: bool


@dataclass(frozen=True)
class IntegritySettings:
    """The checks' limits, in ns (from ``stale_warning_seconds``, ``stale_failure_seconds``,
    ``resume_after_seconds``, ``chronology_tolerance_ms`` and ``gap_silence_seconds``)."""

    stale_warning_ns: int
    stale_failure_ns: int
    resume_after_ns: int
    tolerance_ns: int
    gap_silence_ns: int


@dataclass
class Verdict:
    """What the integrity check decided for one event."""

    usable: bool = True
    issues: list[ValidationIssue] = field(default_factory=list)
    statuses: list[FeedStatus] = field(default_factory=list)
    reset: bool = False


class Integrity:
    """Validation and halting state of one symbol."""

    def __init__(self, symbol: str, settings: IntegritySettings) -> None:
        self.symbol = symbol
        self.settings = settings
        self.halted = False
        self.halt_code = ""
        self.valid_since: int | None = None
        self.last_print_ts: int | None = None
        self.last_event_ts: int | None = None

    def _plainly_valid(self, event: MarketData) -> bool:
        """The common case, checked without allocating anything."""
        settings = self.settings
        age = 0 if type(event) is Trade and event.backfilled else event.ts_arrival - event.ts_event
        if age > settings.stale_warning_ns or -age > settings.tolerance_ns:
            return False
        if type(event) is Trade:
            return (
                event.price > 0
                and event.size > 0
                and (self.last_print_ts is None or event.ts_event >= self.last_print_ts - settings.tolerance_ns)
            )
        if type(event) is Quote:
            return event.bid_price >= 0 and event.ask_price >= 0 and event.bid_size >= 0 and event.ask_size >= 0
        if type(event) is BookUpdate:
            for price, size in event.bids:  # every level (a handful) in place
                if price <= 0 or size < 0:
                    return False
            for price, size in event.asks:
                if price <= 0 or size < 0:
                    return False
        elif type(event) is OrderUpdate:
            return event.price >= 0 and event.size >= 0 and event.remaining >= 0
        return True

    def _problems_of(self, event: MarketData) -> list[tuple[str, str]]:
        """Every check ``event`` fails: ``(code, detail)`` pairs, the first the one a halt reports."""
        settings = self.settings
        problems: list[tuple[str, str]] = []
        age = (
            0 if type(event) is Trade and event.backfilled else event.ts_arrival - event.ts_event
        )  # backfill is late by design
        if age > settings.stale_failure_ns:
            problems.append(
                ("stale_data_failure", f"arrived {age / NANOSECONDS_PER_SECOND:.1f} s after its event time")
            )
        elif age > settings.stale_warning_ns:
            problems.append(("stale_data", f"arrived {age / NANOSECONDS_PER_SECOND:.1f} s after its event time"))
        elif -age > settings.tolerance_ns:
            problems.append(("future_timestamp", f"event time {-age / NANOSECONDS_PER_SECOND:.3f} s after arrival"))
        if type(event) is Trade:
            if event.price <= 0:
                problems.append(("invalid_price", f"print at {event.price} nano-dollars"))
            if event.size <= 0:
                problems.append(("invalid_size", f"print of {event.size} shares"))
            if self.last_print_ts is not None and event.ts_event < self.last_print_ts - settings.tolerance_ns:
                earlier = (self.last_print_ts - event.ts_event) / NANOSECONDS_PER_SECOND
                problems.append(("out_of_order", f"print {earlier:.3f} s before the previous one"))
        elif type(event) is Quote:
            if event.bid_price < 0 or event.ask_price < 0:
                problems.append(("invalid_price", f"quote {event.bid_price}/{event.ask_price}"))
            if event.bid_size < 0 or event.ask_size < 0:
                problems.append(("invalid_size", f"quote sizes {event.bid_size}/{event.ask_size}"))
        elif type(event) is BookUpdate:
            for price, size in (*event.bids, *event.asks):
                if price <= 0 or size < 0:
                    problems.append(("invalid_price" if price <= 0 else "invalid_size", f"book level {price} x {size}"))
                    break
        elif type(event) is OrderUpdate:
            if event.price < 0:
                problems.append(("invalid_price", f"order {event.order_id} at {event.price} nano-dollars"))
            if event.size < 0 or event.remaining < 0:
                shares = f"{event.size} shares, {event.remaining} left"
                problems.append(("invalid_size", f"order {event.order_id}: {shares}"))
        return problems

    def check(self, event: MarketData, session: str = "regular") -> Verdict | None:
        """None when the event is fine and changes nothing (the hot path)."""
        settings = self.settings
        ts = event.ts_event
        last = self.last_event_ts
        if (
            not self.halted
            and self._plainly_valid(event)
            and (last is None or session != "regular" or ts - last <= settings.gap_silence_ns)
        ):
            if last is None or ts > last:
                self.last_event_ts = ts
            if type(event) is Trade and (self.last_print_ts is None or ts > self.last_print_ts):
                self.last_print_ts = ts
            return None
        verdict = Verdict()
        problems = self._problems_of(event)
        for code, detail in problems:
            verdict.issues.append(ValidationIssue(self.symbol, code, detail, ts, code in HALTING))
        if type(event) is Trade and not any(code == "out_of_order" for code, _ in problems):
            self.last_print_ts = ts if self.last_print_ts is None else max(self.last_print_ts, ts)
        if problems:
            verdict.usable = False
            self.valid_since = None
            if self.last_event_ts is not None and ts > self.last_event_ts:
                self.last_event_ts = ts  # bad data is not silence
            if not self.halted:
                self.halted = True
                self.halt_code = problems[0][0]
                verdict.reset = True
                verdict.statuses.append(
                    detector_status(self.symbol, "monitoring_halted", ts, self.halt_code, problems[0][1])
                )
            return verdict
        if (
            session == "regular"
            and self.last_event_ts is not None
            and ts - self.last_event_ts > settings.gap_silence_ns
        ):
            verdict.reset = True
            verdict.statuses.append(
                FeedStatus(
                    source="detector",
                    state="gap",
                    ts_event=ts,
                    ts_recv=event.ts_recv,
                    symbols=(self.symbol,),
                    code="event_silence",
                    detail=f"no event for {(ts - self.last_event_ts) / NANOSECONDS_PER_SECOND:.1f} s",
                    gap_start_ns=self.last_event_ts,
                    gap_end_ns=ts,
                )
            )
        if self.last_event_ts is None or ts > self.last_event_ts:
            self.last_event_ts = ts
        if self.halted:
            if self.valid_since is None:
                self.valid_since = ts
            if ts - self.valid_since < settings.resume_after_ns:
                verdict.usable = False
                return verdict
            self.halted = False
            verdict.reset = True
            verdict.statuses.append(
                detector_status(
                    self.symbol,
                    "monitoring_resumed",
                    ts,
                    self.halt_code,
                    f"{settings.resume_after_ns / NANOSECONDS_PER_SECOND:.0f} s of valid data",
                )
            )
        return verdict
