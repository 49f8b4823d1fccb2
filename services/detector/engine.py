"""The rules core: a pure state machine per symbol over market events.

``Engine.process(event)`` returns what the event caused — alerts, exit
recommendations, statuses, validation issues, expired alerts — and does no
I/O, so the live service, ``orderflow analyze`` and tests run the very same
code on the same events and get the same alert ids. Event time only: the
engine never reads a clock.

Per event, in order: session tagging; feed statuses from ingest (gaps and
trading halts reset the windows); integrity (a bad event halts monitoring);
a session change resets the windows; time-driven work (an aggressive order
that is complete, book appearances that have persisted, alerts leaving the
exit window); then the event itself moves the NBBO, the book, the tape
orders and the volume windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Union

from orderflow_client.prices import format_price
from orderflow_client.timestamps import NANOSECONDS_PER_SECOND, ns_to_utc_iso
from orderflow_client.wire import ExitRecommendation, FeedStatus, MarketEvent, OrderFlowAlert, Quote, Trade
from services.detector.book import Appearance, LargeOffers
from services.detector.bursts import BurstSignal, RedBursts
from services.detector.exits import ExitRule
from services.detector.integrity import Integrity, IntegritySettings, ValidationIssue
from services.detector.profiles import (
    DayRecorder,
    DayStatistics,
    FitRules,
    SymbolProfile,
    Thresholds,
    build_profile,
    fit_thresholds,
    thresholds_for,
)
from services.detector.tape import AggressiveOrder, TapeOrders
from shared.conditions import ConditionTable
from shared.config import OrderFlowConfig
from shared.nbbo import PrevailingQuote
from shared.sessions import SessionClock

EXTENDED = ("pre_market", "after_hours")
REFIT_NS = 10 * NANOSECONDS_PER_SECOND
"""A day with no history refits its thresholds this often (event time) until it is calibrated …"""
CALIBRATED_REFIT_NS = 60 * NANOSECONDS_PER_SECOND
"""… and this often afterwards (each refit sorts the day's counters)."""
MIN_CALIBRATION_ORDERS = 20
"""Aggressive orders a day must show before its own large-order threshold replaces the absolute one.
Its own large-offer threshold applies once its displayed ask time (summed over levels) reaches
``persistence / (1 − offer_size_quantile)`` (2,000 s by default): before that, the quantile cannot tell
an offer displayed for the persistence time from one that never was."""


class AlertsExpired(tuple):
    """Alerts that left the exit window (for ``order_flow.alert_window_expired``)."""


class ProfileUpdate(NamedTuple):
    """A symbol's profile rebuilt after a session ended (the service stores it)."""

    profile: SymbolProfile


Output = Union[OrderFlowAlert, ExitRecommendation, FeedStatus, ValidationIssue, AlertsExpired, ProfileUpdate]


@dataclass(frozen=True)
class RuleSettings:
    """The config values the rules use, in rule units (ns, shares)."""

    large_order_size: int
    extended_large_order_size: int
    spike_threshold: float
    extended_spike_threshold: float
    red_burst_threshold: float
    alert_window_ns: int
    spike_seconds: int
    baseline_seconds: int
    sell_ratio: float
    min_baseline_volume: int
    sweep_window_ns: int
    persistence_ns: int
    two_sided_ratio: float
    integrity: IntegritySettings
    adaptive: bool = False
    large_order_override: bool = False
    extended_large_order_explicit: bool = False
    fit: FitRules = FitRules()
    profile_days: int = 5
    calibration_ns: int = 15 * 60 * NANOSECONDS_PER_SECOND
    offer_return_ns: int = 0
    calibration_confidence: float = 0.0

    @classmethod
    def from_config(cls, config: OrderFlowConfig, symbol: str | None = None) -> RuleSettings:
        """The settings of ``symbol`` (its ``symbol_overrides`` over the global values)."""
        override = config.symbol_overrides.get(symbol) if symbol else None
        large = (override and override.large_order_size) or config.large_order_size
        spike = (override and override.volume_spike_threshold) or config.volume_spike_threshold
        return cls(
            large_order_size=large,
            extended_large_order_size=(override and override.large_order_size)
            or config.extended_hours_large_order_size
            or large,
            spike_threshold=spike,
            extended_spike_threshold=(override and override.volume_spike_threshold)
            or config.extended_hours_volume_spike_threshold
            or spike,
            red_burst_threshold=(override and override.red_burst_threshold) or config.red_burst_threshold,
            alert_window_ns=config.alert_window_seconds * NANOSECONDS_PER_SECOND,
            spike_seconds=config.spike_window_seconds,
            baseline_seconds=config.baseline_window_seconds,
            sell_ratio=config.sell_ratio_threshold,
            min_baseline_volume=(
                override.min_baseline_volume
                if override and override.min_baseline_volume is not None
                else config.min_baseline_volume
            ),
            sweep_window_ns=config.sweep_window_ms * 1_000_000,
            persistence_ns=int(config.book_persistence_seconds * NANOSECONDS_PER_SECOND),
            two_sided_ratio=config.two_sided_ratio,
            integrity=IntegritySettings(
                stale_warning_ns=int(config.stale_warning_seconds * NANOSECONDS_PER_SECOND),
                stale_failure_ns=int(config.stale_failure_seconds * NANOSECONDS_PER_SECOND),
                resume_after_ns=int(config.resume_after_seconds * NANOSECONDS_PER_SECOND),
                tolerance_ns=config.chronology_tolerance_ms * 1_000_000,
                gap_silence_ns=int(config.gap_silence_seconds * NANOSECONDS_PER_SECOND),
            ),
            adaptive=config.threshold_mode == "adaptive",
            large_order_override=bool(override and override.large_order_size),
            extended_large_order_explicit=bool(
                (override and override.large_order_size) or config.extended_hours_large_order_size
            ),
            fit=FitRules(
                large_order_quantile=config.large_order_quantile,
                offer_size_quantile=config.offer_size_quantile,
                burst_ratio_quantile=config.burst_ratio_quantile,
                min_size=config.adaptive_min_large_order_size,
                min_notional_dollars=config.adaptive_min_large_order_notional,
            ),
            profile_days=config.profile_days,
            calibration_ns=int(config.calibration_minutes * 60 * NANOSECONDS_PER_SECOND),
            offer_return_ns=int(config.book_return_seconds * NANOSECONDS_PER_SECOND),
            calibration_confidence=config.calibration_confidence,
        )

    def large_order(self, session: str) -> int:
        return self.extended_large_order_size if session in EXTENDED else self.large_order_size

    def spike(self, session: str) -> float:
        return self.extended_spike_threshold if session in EXTENDED else self.spike_threshold


class SymbolEngine:
    """All rules of one symbol.

    In adaptive mode the thresholds come from the symbol's profile, rebuilt
    **walk-forward** at the first event of each trading day from the sessions
    *before* it (``history``: a stored profile's sessions, then each session
    this engine saw end). With no earlier session the day starts on the
    absolute thresholds (status ``calibrating``) and, after
    ``calibration_minutes`` of the regular session, takes thresholds from
    what it has seen of the session so far (status ``calibrated``, source
    ``session_start``). A session's statistics are recorded as the rules run.
    """

    def __init__(
        self,
        symbol: str,
        settings: RuleSettings,
        conditions: ConditionTable,
        sessions: SessionClock,
        history: tuple[DayStatistics, ...] = (),
        profile_source: str = "stream",
    ) -> None:
        self.symbol = symbol
        self.settings = settings
        self.conditions = conditions
        self.sessions = sessions
        self.integrity = Integrity(symbol, settings.integrity)
        self.nbbo = PrevailingQuote()
        self.tape = TapeOrders(settings.sweep_window_ns)
        self.offers = LargeOffers(settings.persistence_ns, settings.offer_return_ns)
        self.bursts = RedBursts(
            spike_seconds=settings.spike_seconds,
            baseline_seconds=settings.baseline_seconds,
            min_baseline_volume=settings.min_baseline_volume,
            sell_ratio=settings.sell_ratio,
            critical_threshold=settings.red_burst_threshold,
        )
        self.exits = ExitRule(settings.alert_window_ns)
        self.session = ""
        self.absolute = Thresholds(
            settings.large_order_size,
            settings.large_order_size,
            "override" if settings.large_order_override else "absolute",
        )
        self.thresholds = self.absolute
        self.history = {session.day: session for session in history}
        self.profile_source = profile_source
        self.recorder: DayRecorder | None = None
        self.day_end = 0
        self.calibrate_at = 0  # ns of event time; -1: waiting for the regular session; 0: nothing to calibrate
        self.extended: DayRecorder | None = (
            None  # a day with no history: its pre-market and after-hours, for calibration
        )
        self.active: DayRecorder | None = None  # where this session's events are recorded
        self.next_refit = 0
        self.fitted_today = False  # a day with no history has fitted its own thresholds
        self.last_ts = 0  # the last usable event: its event time and receive time (ns), for :meth:`advance`
        self.last_recv = 0

    # --- the event path ----------------------------------------------------------
    def process(self, event: MarketEvent) -> list[Output]:
        outputs: list[Output] = []
        if type(event) is FeedStatus:
            if event.state in ("gap", "disconnected", "trading_halted", "trading_resumed"):
                self._reset(event.ts_event)
            return outputs
        ts = event.ts_event
        session = self.sessions.session(ts)
        verdict = self.integrity.check(event, session)
        if verdict is not None:
            outputs.extend(verdict.issues)
            outputs.extend(verdict.statuses)
            if verdict.reset:
                self._reset(ts)
            if not verdict.usable:
                return outputs
        self.last_ts, self.last_recv = ts, event.ts_recv
        if ts >= self.day_end and self.settings.adaptive:  # only a valid event starts a new day
            self._new_day(ts, outputs)
        if session != self.session:
            if self.session:
                self._reset(ts)
            self.session = session
            self._recording()
        if self.tape.current is not None or self.offers.appearances or self.exits.recent:
            self._time_passes(ts, session, event, outputs)
        if self.extended is not None:  # a day with no history calibrates itself
            self._calibration(ts, session, outputs)
        recorder = self.active
        kind = type(event)
        if kind is Trade:
            self._on_trade(event, session, outputs, recorder)
        elif kind is Quote:
            self.nbbo.update(ts, event.bid_price, event.ask_price)
            self.offers.on_quote(
                ts, event.bid_price, event.bid_size, event.ask_price, event.ask_size, self._offer_size(session)
            )
            if recorder is not None:
                recorder.quote(ts, event.bid_price, event.ask_price, event.ask_size)
        else:
            self.nbbo.update_from(event)
            self.offers.on_book(ts, event.bids, event.asks, self._offer_size(session))
            if recorder is not None:
                recorder.book(ts, event.bids, event.asks)
        return outputs

    # --- time passing between events (live) -------------------------------------------
    def advance(self, now_recv: int) -> list[Output]:
        """Live: event time moves on while no event arrives, so a large offer is reported once it has rested
        ``persistence`` and not only at the next event (seconds later on a quiet stock).

        ``now_recv`` is on the clock of ``ts_recv`` (ns); event time is the last event's plus the receive time
        elapsed since it arrived. The alert is stamped with the moment the offer had rested long enough (its
        ``latency_ms`` then says how late the heartbeat was) and carries the id the next event would have given
        it, so live and offline runs report the same alerts. The tape needs no heartbeat (a large order alerts at the print
        that makes it large), and nothing here starts a new session or day: that waits for a real event.
        """
        if not self.offers.appearances or not self.last_recv or self.integrity.halted:
            return []
        ts = self.last_ts + (now_recv - self.last_recv)
        if ts <= self.last_ts or (self.day_end and ts >= self.day_end) or self.sessions.session(ts) != self.session:
            return []
        outputs: list[Output] = []
        for appearance in self.offers.due(ts):  # reported as of the moment it had rested long enough
            due = appearance.start_ts + self.settings.persistence_ns
            self._on_offer(appearance, due, self._receive_time(due), self.session, outputs)
        return outputs

    def _receive_time(self, ts: int) -> int:
        """Event time ``ts`` on the ``ts_recv`` clock, the feed's delay taken as the last event's."""
        return ts - self.last_ts + self.last_recv

    def next_due(self) -> int | None:
        """When (``ts_recv`` clock, ns) the earliest unreported large offer will have rested long enough."""
        starts = [appearance.start_ts for appearance in self.offers.appearances.values() if not appearance.alerted]
        if not starts or not self.last_recv:
            return None
        return self._receive_time(min(starts) + self.settings.persistence_ns)

    def recorded_sessions(self) -> list[DayStatistics]:
        """Every session this engine knows: its history and the session in progress (if it traded)."""
        sessions = dict(self.history)
        if self.recorder is not None and self.recorder.volume_total:
            sessions[self.recorder.day] = self.recorder.statistics()
        return [sessions[day] for day in sorted(sessions)]

    # --- thresholds ------------------------------------------------------------------
    def _large_order(self, session: str) -> int:
        return self._extended_size(session) or self.thresholds.large_order_size

    def _spike(self, session: str) -> float:
        """The red-burst ratio: the setting, raised to the symbol's own ``burst_ratio_quantile``."""
        return max(self.settings.spike(session), self.thresholds.burst_ratio)

    def _offer_size(self, session: str) -> int:
        return self._extended_size(session) or self.thresholds.offer_size

    def _extended_size(self, session: str) -> int:
        """An explicit extended-hours size (setting or override) in pre-market and after-hours, else 0."""
        if session in EXTENDED and self.settings.extended_large_order_explicit:
            return self.settings.extended_large_order_size
        return 0

    def _new_day(self, ts: int, outputs: list[Output]) -> None:
        """The first event of a trading day: close the last session, rebuild the profile walk-forward."""
        day, _start, self.day_end, market_open = self.sessions.day_of(ts)
        settings = self.settings
        finished = self.recorder
        if finished is not None and finished.volume_total:
            self.history[finished.day] = finished.statistics()
        self.recorder = DayRecorder(self.symbol, day, market_open if market_open is not None else ts)
        earlier = [session for past_day, session in self.history.items() if past_day < day]
        self.extended = None
        self.fitted_today = False
        if not earlier:
            self._use(self.absolute, None)
            self.calibrate_at = -1
            self.extended = DayRecorder(self.symbol, day, market_open if market_open is not None else ts)
            self.next_refit = ts + REFIT_NS
            self._recording()
            outputs.append(
                self._status(
                    ts,
                    "calibrating",
                    "no_profile",
                    f"no earlier session: absolute thresholds ({settings.large_order_size:,} shares) "
                    f"until {settings.calibration_ns / 60e9:g} minutes of the regular session are seen",
                )
            )
            return
        self._recording()
        profile = build_profile(
            self.symbol,
            earlier,
            source=self.profile_source,
            built_utc=ns_to_utc_iso(ts),
            profile_days=settings.profile_days,
        )
        if finished is not None and finished.day in profile.days:
            outputs.append(ProfileUpdate(profile))
        self.calibrate_at = 0
        self._use(self._thresholds(profile, "profile", market_open), ts, outputs)

    def _recording(self) -> None:
        """Record the regular session into the day's statistics; on a day with no history, the extended
        sessions into their own (for calibration only: a profile holds regular sessions)."""
        self.active = self.recorder if self.session == "regular" else self.extended
        self.bursts.recorders = (self.active,) if self.active is not None else ()

    def _calibration(self, ts: int, session: str, outputs: list[Output]) -> None:
        """A day with no earlier session: refit every :data:`REFIT_NS` from what the day has shown so far.

        Until :data:`MIN_CALIBRATION_ORDERS` aggressive orders were seen the absolute thresholds hold;
        from then on the fitted ones, which never fall during the day (a large order must stay rare
        against all of the day so far). ``calibrated`` is reported after ``calibration_minutes`` of
        the regular session.
        """
        if ts < self.next_refit or self.recorder is None:
            return
        self.next_refit = ts + (CALIBRATED_REFIT_NS if self.fitted_today and not self.calibrate_at else REFIT_NS)
        regular = self.recorder
        day = (
            regular
            if self.extended is None or sum(regular.order_sizes.values()) >= MIN_CALIBRATION_ORDERS
            else self.extended
        )
        orders_known = sum(day.order_sizes.values()) >= MIN_CALIBRATION_ORDERS
        offers_known = sum(day.offer_sizes.values()) >= self.settings.persistence_ns / (
            1 - self.settings.fit.offer_size_quantile
        )
        if orders_known or offers_known:
            fitted = fit_thresholds(
                self.settings.fit,
                day.order_sizes,
                day.offer_sizes if offers_known else {},
                day.ratios,
                day.vwap,
                source="session_start",
                days=day.day,
                confidence=self.settings.calibration_confidence,
                offer_unit_ns=max(self.settings.persistence_ns, 1),
            )
            current = self.thresholds
            large = fitted.large_order_size if orders_known else current.large_order_size
            offer = max(fitted.offer_size, large)
            if self.fitted_today:  # never fall during the day
                large, offer = max(large, current.large_order_size), max(offer, current.offer_size)
            self.fitted_today = True
            self._use(
                self._overridden(
                    Thresholds(
                        large, offer, "session_start", day.day, None, max(fitted.burst_ratio, current.burst_ratio)
                    )
                ),
                None,
            )
        if session != "regular":
            return
        if self.calibrate_at < 0:
            self.calibrate_at = ts + self.settings.calibration_ns
        elif 0 < self.calibrate_at <= ts and self.fitted_today:
            self.calibrate_at = 0
            self._use(self.thresholds, ts, outputs)

    def _thresholds(self, profile: SymbolProfile, source: str, market_open: int | None) -> Thresholds:
        return self._overridden(thresholds_for(profile, self.settings.fit, source=source, open_ns=market_open))

    def _overridden(self, fitted: Thresholds) -> Thresholds:
        """A per-symbol ``large_order_size`` override wins over fitted order and offer sizes."""
        if not self.settings.large_order_override:
            return fitted
        size = self.settings.large_order_size
        return Thresholds(size, size, "override", fitted.days, fitted.curve, fitted.burst_ratio)

    def _use(self, thresholds: Thresholds, ts: int | None, outputs: list[Output] | None = None) -> None:
        self.thresholds = thresholds
        self.bursts.curve = thresholds.curve
        settings = self.settings
        self.bursts.critical_threshold = max(
            settings.red_burst_threshold,
            thresholds.burst_ratio * settings.red_burst_threshold / settings.spike_threshold,
        )
        if ts is not None and outputs is not None:
            curve = "with" if thresholds.curve is not None else "without"
            outputs.append(
                self._status(
                    ts,
                    "calibrated",
                    thresholds.source,
                    f"{thresholds.source} {thresholds.days}: large order {thresholds.large_order_size:,} shares, "
                    f"large offer {thresholds.offer_size:,} shares, burst ratio {max(self.settings.spike_threshold, thresholds.burst_ratio):g}, "
                    f"{curve} an intraday volume curve",
                )
            )

    def _status(self, ts: int, state: str, code: str, detail: str) -> FeedStatus:
        return FeedStatus(
            source="detector", state=state, ts_event=ts, ts_recv=ts, symbols=(self.symbol,), code=code, detail=detail
        )

    def flush(self) -> list[Output]:
        """End of input: complete the aggressive order in progress."""
        outputs: list[Output] = []
        order = self.tape.end()
        if order is not None:
            self._on_order(order, self.session or "regular", outputs)
        return outputs

    def _reset(self, ts: int) -> None:
        self.tape.end()
        self.offers.reset()
        self.bursts.reset(ts)

    def _time_passes(self, ts: int, session: str, event: MarketEvent, outputs: list[Output]) -> None:
        order = self.tape.flush(ts)
        if order is not None:
            self._on_order(order, session, outputs)
        if self.offers.appearances:
            for appearance in self.offers.due(ts):
                self._on_offer(appearance, ts, event.ts_recv, session, outputs)
        if self.exits.recent:
            expired = self.exits.expire(ts)
            if expired:
                outputs.append(AlertsExpired(alert.id for alert in expired))

    def _on_trade(self, trade: Trade, session: str, outputs: list[Output], recorder: DayRecorder | None) -> None:
        if not self.conditions.classify(trade.conditions, trade.correction).aggressive:
            return  # auctions, odd lots, late, average-price…: neither pressure nor volume here
        if recorder is not None:
            recorder.volume(trade.ts_event, trade.price, trade.size)
        bid, _ask = self.nbbo.before(trade.ts_event)
        if trade.side == "sell" and 0 < trade.price <= bid:
            finished = self.tape.on_sell(trade, bid)
            if finished is not None:
                self._on_order(finished, session, outputs)
            self._on_running_order(self.tape.current, session, outputs)
        else:
            finished = self.tape.end()
            if finished is not None:
                self._on_order(finished, session, outputs)
        self.bursts.add(trade.ts_event, trade.size, trade.side)
        signal = self.bursts.evaluate(trade.ts_event, self._spike(session))
        if signal is not None:
            self._emit(self._burst_alert(signal, trade, session), outputs)

    # --- alerts ------------------------------------------------------------------
    def _emit(self, alert: OrderFlowAlert, outputs: list[Output]) -> None:
        outputs.append(alert)
        recommendation = self.exits.on_alert(alert)
        if recommendation is not None:
            outputs.append(recommendation)

    def _on_order(self, order: AggressiveOrder, session: str, outputs: list[Output]) -> None:
        """A completed order: recorded; an alert only if its running size never crossed the threshold (it did not)."""
        if self.active is not None:
            self.active.order(order.size)

    def _on_running_order(self, order: AggressiveOrder, session: str, outputs: list[Output]) -> None:
        """The order's running size after a print: alert the moment it crosses the threshold (``warning``, or
        ``critical`` at twice it), and once more when a warning order crosses twice the threshold."""
        threshold = self._large_order(session)
        if order.size < threshold or order.alerted == "critical":
            return
        severity = "critical" if order.size >= 2 * threshold else "warning"
        if order.alerted == severity:
            return
        escalation = order.alerted == "warning"
        order.alerted = severity
        first_id = f"{self.symbol}:large_seller:tape:{order.first_ts}:{order.first_trade_id}"
        evidence = {
            "vwap": format_price(order.vwap),
            "worst_price": format_price(order.worst_price),
            "bid_before": format_price(order.bid_before),
            "prints": order.prints,
            "duration_ms": round((order.last_ts - order.first_ts) / 1e6, 3),
            "first_ts_utc": ns_to_utc_iso(order.first_ts),
            **self._threshold_evidence(threshold, session),
        }
        if escalation:
            evidence["escalates"] = first_id  # the same seller, now critical: not another seller for the exit rule
        alert = OrderFlowAlert(
            id=f"{first_id}:critical" if escalation else first_id,
            symbol=self.symbol,
            alert_type="large_seller",
            severity=severity,
            source="tape",
            ts_event=order.last_ts,
            ts_recv=order.last_ts_recv,
            timestamp_utc=ns_to_utc_iso(order.last_ts),
            order_size=order.size,
            price_level=order.worst_price,
            session=session,
            evidence=evidence,
        )
        self._emit(alert, outputs)

    def _threshold_evidence(self, threshold: int, session: str) -> dict[str, str | int]:
        extended = bool(self._extended_size(session))
        source = "extended_hours" if extended else self.thresholds.source
        evidence: dict[str, str | int] = {"threshold": threshold, "threshold_source": source}
        if self.thresholds.days and not extended:
            evidence["profile_days"] = self.thresholds.days
        return evidence

    def _on_offer(self, appearance: Appearance, ts: int, ts_recv: int, session: str, outputs: list[Output]) -> None:
        threshold = self._offer_size(session)
        largest_bid = self.offers.largest_bid()
        two_sided = largest_bid >= self.settings.two_sided_ratio * appearance.size
        severity = "critical" if appearance.size >= 2 * threshold and not two_sided else "warning"
        alert = OrderFlowAlert(
            id=f"{self.symbol}:large_seller:book:{appearance.price}:{appearance.start_ts}",
            symbol=self.symbol,
            alert_type="large_seller",
            severity=severity,
            source="book",
            ts_event=ts,
            ts_recv=ts_recv,
            timestamp_utc=ns_to_utc_iso(ts),
            order_size=appearance.size,
            price_level=appearance.price,
            two_sided=two_sided,
            session=session,
            evidence={
                "rested_seconds": round((ts - appearance.start_ts) / NANOSECONDS_PER_SECOND, 3),
                "since_utc": ns_to_utc_iso(appearance.start_ts),
                "largest_bid": largest_bid,
                **self._threshold_evidence(threshold, session),
            },
        )
        self._emit(alert, outputs)

    def _burst_alert(self, signal: BurstSignal, trade: Trade, session: str) -> OrderFlowAlert:
        reading = signal.reading
        return OrderFlowAlert(
            id=f"{self.symbol}:red_burst:{signal.episode_second}:{signal.severity}",
            symbol=self.symbol,
            alert_type="red_burst",
            severity=signal.severity,
            source="tape",
            ts_event=trade.ts_event,
            ts_recv=trade.ts_recv,
            timestamp_utc=ns_to_utc_iso(trade.ts_event),
            order_size=reading.spike_volume,
            price_level=trade.price,
            volume_ratio=round(reading.ratio, 4),
            sell_ratio=round(reading.sell_ratio, 4),
            session=session,
            evidence={
                "spike_volume": reading.spike_volume,
                "baseline_average": round(reading.baseline_average, 1),
                "sell_volume": reading.sell_volume,
                "buy_volume": reading.buy_volume,
                "spike_seconds": self.settings.spike_seconds,
                "baseline_seconds": self.settings.baseline_seconds,
                "threshold": self._spike(session),
                "threshold_source": "intraday_curve" if reading.curve_factor != 1.0 else "trailing_baseline",
                "curve_factor": round(reading.curve_factor, 3),
            },
        )


class Engine:
    """Every monitored symbol's rules; events of any symbol in arrival order.

    ``settings`` apply to every symbol, unless ``config`` is given: then each
    symbol gets its own (``symbol_overrides``).
    """

    def __init__(
        self,
        settings: RuleSettings,
        conditions: ConditionTable | None = None,
        sessions: SessionClock | None = None,
        config: OrderFlowConfig | None = None,
        profiles: dict[str, SymbolProfile] | None = None,
        profile_source: str = "stream",
    ) -> None:
        self.settings = settings
        self.config = config
        self.conditions = conditions or ConditionTable.bundled()
        self.sessions = sessions or SessionClock()
        self.symbols: dict[str, SymbolEngine] = {}
        self.profiles: dict[str, SymbolProfile] = dict(profiles or {})
        self.profile_source = profile_source

    def set_profile(self, symbol: str, profile: SymbolProfile | None) -> None:
        """Use ``profile``'s sessions as the history of ``symbol`` (before its first event)."""
        if profile is None:
            self.profiles.pop(symbol, None)
        else:
            self.profiles[symbol] = profile

    def engine_for(self, symbol: str) -> SymbolEngine:
        engine = self.symbols.get(symbol)
        if engine is None:
            settings = RuleSettings.from_config(self.config, symbol) if self.config is not None else self.settings
            profile = self.profiles.get(symbol)
            engine = self.symbols[symbol] = SymbolEngine(
                symbol,
                settings,
                self.conditions,
                self.sessions,
                profile.sessions if profile else (),
                self.profile_source,
            )
        return engine

    def reset(self, symbol: str, ts: int) -> None:
        """Forget ``symbol``'s windows as of event time ``ts`` (ns), as a feed gap does: after an event its
        rules failed on, their state cannot be trusted."""
        engine = self.symbols.get(symbol)
        if engine is not None:
            engine._reset(ts)

    def process(self, event: MarketEvent) -> list[Output]:
        if type(event) is FeedStatus:
            outputs: list[Output] = []
            for symbol in event.symbols or tuple(self.symbols):
                outputs.extend(self.engine_for(symbol).process(event))
            return outputs
        engine = self.symbols.get(event.symbol)
        return (engine or self.engine_for(event.symbol)).process(event)

    def flush(self) -> list[Output]:
        outputs: list[Output] = []
        for engine in self.symbols.values():
            outputs.extend(engine.flush())
        return outputs

    def advance(self, now_recv: int) -> list[Output]:
        """Live: let event time pass on every symbol (see :meth:`SymbolEngine.advance`)."""
        outputs: list[Output] = []
        for engine in self.symbols.values():
            if engine.offers.appearances:
                outputs.extend(engine.advance(now_recv))
        return outputs

    def next_due(self) -> int | None:
        """The earliest :meth:`SymbolEngine.next_due` of all symbols (None: nothing is waiting)."""
        due = [
            when
            for engine in self.symbols.values()
            if engine.offers.appearances and (when := engine.next_due()) is not None
        ]
        return min(due, default=None)

    def halted_symbols(self) -> int:
        return sum(engine.integrity.halted for engine in self.symbols.values())
