"""The thresholds of one symbol over time: absolute, from its profile, or calibrated from the session.

In adaptive mode the thresholds come from the symbol's profile, rebuilt
**walk-forward** at the first event of each trading day from the sessions
*before* it (``history``: a stored profile's sessions, then each session the
engine saw end). With no earlier session the day starts on the absolute
thresholds (status ``calibrating``); with ``first_day_thresholds = "prior"``,
once a minute of the regular session is seen, the first-day prior's thresholds
for the volume the day is expected to trade
(:mod:`~services.detector.threshold_prior`, status ``calibrating``, code
``first_day_prior``), moved toward the session's own fit as the calibration
time passes; after ``calibration_minutes`` of the regular session it takes
thresholds from what it has seen of the session so far (status
``calibrated``, source ``session_start``). A profile that arrives during the
day (:meth:`ThresholdLifecycle.adopt_profile`) replaces all of that. A
session's statistics are recorded (:class:`~services.detector.day_recorder.DayRecorder`) as the rules
run. In absolute mode the thresholds are the settings' throughout.

The statuses' details, as on the AlgoSeek AIG days (``orderflow analyze``)::

    calibrating  no_profile       no earlier session: absolute thresholds (10,000 shares) until a minute of
                                  the regular session is seen, then a first-day prior (large order 0.150 % of
                                  the expected day's volume) moving to the session's own fit over 15 minutes
    calibrating  first_day_prior  first-day prior: large order 2,932 shares (0.150 % of an expected 1,951,519
                                  shares, from 11,200 in the first 71 s of the regular session), large offer
                                  3,879 shares, burst ratio 5.96; moving to the session's own fit over 15 minutes
    calibrated   session_start    session_start 2013-10-07: large order 10,000 shares, large offer 10,000
                                  shares, burst ratio 3, without an intraday volume curve
    calibrated   profile          profile 2013-10-07: large order 7,437 shares, large offer 7,600 shares,
                                  burst ratio 5.3, with an intraday volume curve
"""

from __future__ import annotations

from orderflow_client.timestamps import NANOSECONDS_PER_SECOND, ns_to_utc_iso
from orderflow_client.wire import EvidenceValue
from services.detector.alert_builders import detector_status
from services.detector.bursts import RedBursts
from services.detector.day_recorder import DayRecorder
from services.detector.outputs import Output, ProfileUpdate
from services.detector.profiles import DayStatistics, SymbolProfile, build_profile
from services.detector.rule_settings import EXTENDED_SESSIONS, RuleSettings
from services.detector.threshold_fit import (
    Thresholds,
    blend_thresholds,
    fit_thresholds,
    prior_thresholds,
    thresholds_for,
)
from services.detector.threshold_prior import bundled_prior
from shared.sessions import SessionClock

REFIT_NS = 10 * NANOSECONDS_PER_SECOND
"""A day with no history refits its thresholds this often (event time) until it is calibrated …"""
CALIBRATED_REFIT_NS = 60 * NANOSECONDS_PER_SECOND
"""… and this often afterwards (each refit sorts the day's counters)."""
MIN_CALIBRATION_ORDERS = 20
"""Aggressive orders a day must show before its own large-order threshold replaces the absolute one.
Its own large-offer threshold applies once its displayed ask time (summed over levels) reaches
``persistence / (1 − offer_size_quantile)`` (2,000 s by default): before that, the quantile cannot tell
an offer displayed for the persistence time from one that never was."""
WAITING_FOR_REGULAR_SESSION = -1
""":attr:`ThresholdLifecycle.report_calibrated_at` of a day with no history before its regular session."""


class ThresholdLifecycle:
    """What the rules of one symbol judge against, and the recording of its sessions.

    The engine calls :meth:`new_day` at the first valid event of each trading day (adaptive mode),
    :meth:`record_session` when the session changes, and :meth:`calibrate` on every event of a day
    with no history; the rules read :meth:`large_order_size`, :meth:`offer_size` and
    :meth:`burst_ratio_threshold`. The red-burst rule (``bursts``) is kept in step: its volume curve,
    its critical threshold and the recorder that gets its ratio readings.
    """

    def __init__(
        self,
        symbol: str,
        settings: RuleSettings,
        sessions: SessionClock,
        bursts: RedBursts,
        history: tuple[DayStatistics, ...] = (),
        profile_source: str = "stream",
    ) -> None:
        self.symbol = symbol
        self.settings = settings
        self.sessions = sessions
        self.bursts = bursts
        self.absolute = Thresholds(
            settings.large_order_size,
            settings.large_order_size,
            "override" if settings.large_order_override else "absolute",
        )
        self.thresholds = self.absolute
        self.history = {session.day: session for session in history}
        self.profile_source = profile_source
        self.day_recorder: DayRecorder | None = None  # the regular session of the current day
        self.extended_recorder: DayRecorder | None = None  # a day with no history: its extended hours
        self.active_recorder: DayRecorder | None = None  # where the current session's events are recorded
        self.day_end = 0  # ns of event time: the current trading day ends here
        self.report_calibrated_at = 0  # ns of event time; WAITING_FOR_REGULAR_SESSION; 0: nothing to report
        self.next_refit = 0  # ns of event time
        self.fitted_today = False  # a day with no history has fitted its own thresholds
        self.session_fit: Thresholds | None = None  # … those thresholds (they never fall during the day)
        self.prior = bundled_prior() if settings.fit.first_day_prior and not settings.large_order_override else None
        self.prior_reported = False  # the day's first-day prior thresholds were reported (``calibrating``)

    # --- what the rules read -----------------------------------------------------------
    def large_order_size(self, session: str) -> int:
        """Shares that make an aggressive sell order large in ``session``."""
        return self._extended_size(session) or self.thresholds.large_order_size

    def offer_size(self, session: str) -> int:
        """Shares that make a displayed offer large in ``session``."""
        return self._extended_size(session) or self.thresholds.offer_size

    def burst_ratio_threshold(self, session: str) -> float:
        """The red-burst ratio: the setting, raised to the symbol's own ``burst_ratio_quantile``."""
        return max(self.settings.session_spike_threshold(session), self.thresholds.burst_ratio)

    def _extended_size(self, session: str) -> int:
        """An explicit extended-hours size (setting or override) in pre-market and after-hours, else 0."""
        if session in EXTENDED_SESSIONS and self.settings.extended_large_order_explicit:
            return self.settings.extended_large_order_size
        return 0

    def threshold_evidence(self, threshold: int, session: str) -> dict[str, EvidenceValue]:
        """Where a large-seller alert's ``threshold`` (shares) came from, for its evidence."""
        extended = bool(self._extended_size(session))
        source = "extended_hours" if extended else self.thresholds.source
        evidence: dict[str, EvidenceValue] = {"threshold": threshold, "threshold_source": source}
        if self.thresholds.days and not extended:
            evidence["profile_days"] = self.thresholds.days
        return evidence

    def recorded_sessions(self) -> list[DayStatistics]:
        """Every session this symbol has: its history and the session in progress (if it traded)."""
        sessions = dict(self.history)
        if self.day_recorder is not None and self.day_recorder.volume_total:
            sessions[self.day_recorder.day] = self.day_recorder.statistics()
        return [sessions[day] for day in sorted(sessions)]

    # --- the lifecycle -----------------------------------------------------------------
    def new_day(self, ts: int, session: str, outputs: list[Output]) -> None:
        """The first event of a trading day (``ts``, ns; ``session`` the one in force before it): close the last
        session, rebuild the profile walk-forward."""
        day, _start, self.day_end, market_open = self.sessions.day_of(ts)
        settings = self.settings
        finished = self.day_recorder
        if finished is not None and finished.volume_total:
            self.history[finished.day] = finished.statistics()
        self.day_recorder = DayRecorder(self.symbol, day, market_open if market_open is not None else ts)
        earlier = [statistics for past_day, statistics in self.history.items() if past_day < day]
        self.extended_recorder = None
        self.fitted_today = False
        self.session_fit = None
        self.prior_reported = False
        if not earlier:
            self._apply(self.absolute, None)
            self.report_calibrated_at = WAITING_FOR_REGULAR_SESSION
            self.extended_recorder = DayRecorder(self.symbol, day, market_open if market_open is not None else ts)
            self.next_refit = ts + REFIT_NS
            self.record_session(session)
            outputs.append(
                detector_status(
                    self.symbol,
                    "calibrating",
                    ts,
                    "no_profile",
                    f"no earlier session: absolute thresholds ({settings.large_order_size:,} shares) "
                    + (
                        f"until a minute of the regular session is seen, then a first-day prior (large order "
                        f"{100 * self.prior.volume_fraction:.3f} % of the expected day's volume) moving to "
                        f"the session's own fit over {settings.calibration_ns / 60e9:g} minutes"
                        if self.prior is not None
                        else f"until {settings.calibration_ns / 60e9:g} minutes of the regular session are seen"
                    ),
                )
            )
            return
        self.record_session(session)
        profile = build_profile(
            self.symbol,
            earlier,
            source=self.profile_source,
            built_utc=ns_to_utc_iso(ts),
            profile_days=settings.profile_days,
        )
        if finished is not None and finished.day in profile.days:
            outputs.append(ProfileUpdate(profile))
        self.report_calibrated_at = 0
        self._apply(self._profile_thresholds(profile, "profile", market_open), ts, outputs)

    def adopt_profile(self, profile: SymbolProfile, ts: int, outputs: list[Output]) -> None:
        """A profile arrived while the day runs (``ts``, ns of event time; e.g. the live calibration worker's,
        built from REST history): judge against it from now on, as if the day had started with its sessions.

        Its sessions before today become the history; :func:`thresholds_for` gives the thresholds (status
        ``calibrated``, source ``profile``); a day with no history stops calibrating itself, and its regular
        session keeps being recorded. A profile with no session before today, or absolute mode, changes no
        threshold (its earlier sessions are still kept for the next day)."""
        today = self.day_recorder.day if self.day_recorder is not None else None
        earlier = [session for session in profile.sessions if today is None or session.day < today]
        for session in earlier:
            self.history[session.day] = session
        if today is None or not earlier or not self.settings.adaptive:
            return
        if len(earlier) != len(profile.sessions):  # as if built at the day's start: nothing of today
            profile = build_profile(
                self.symbol,
                earlier,
                source=profile.source,
                built_utc=profile.built_utc,
                profile_days=self.settings.profile_days,
            )
        self.extended_recorder = None  # no more self-calibration
        self.fitted_today = False
        self.report_calibrated_at = 0
        if self.active_recorder is not self.day_recorder:  # extended hours: recorded only while calibrating
            self.active_recorder = None
            self.bursts.recorders = ()
        market_open = self.sessions.day_of(ts)[3]
        self._apply(self._profile_thresholds(profile, "profile", market_open), ts, outputs)

    def record_session(self, session: str) -> None:
        """Record the regular session into the day's statistics; on a day with no history, the extended
        sessions into their own (for calibration only: a profile holds regular sessions)."""
        self.active_recorder = self.day_recorder if session == "regular" else self.extended_recorder
        self.bursts.recorders = (self.active_recorder,) if self.active_recorder is not None else ()

    def calibrate(self, ts: int, session: str, outputs: list[Output]) -> None:
        """A day with no earlier session: refit every :data:`REFIT_NS` from what the day has shown so far.

        Until :data:`MIN_CALIBRATION_ORDERS` aggressive orders were seen the absolute thresholds hold;
        from then on the fitted ones, which never fall during the day (a large order must stay rare
        against all of the day so far). ``calibrated`` is reported after ``calibration_minutes`` of
        the regular session.
        """
        if ts < self.next_refit or self.day_recorder is None:
            return
        settings = self.settings
        calibrated = self.fitted_today and not self.report_calibrated_at
        self.next_refit = ts + (CALIBRATED_REFIT_NS if calibrated else REFIT_NS)
        regular = self.day_recorder
        day = (
            regular
            if self.extended_recorder is None or sum(regular.order_sizes.values()) >= MIN_CALIBRATION_ORDERS
            else self.extended_recorder
        )
        orders_known = sum(day.order_sizes.values()) >= MIN_CALIBRATION_ORDERS
        offers_known = sum(day.offer_sizes.values()) >= settings.persistence_ns / (1 - settings.fit.offer_size_quantile)
        if orders_known or offers_known:
            fitted = fit_thresholds(
                settings.fit,
                day.order_sizes,
                day.offer_sizes if offers_known else {},
                day.ratios,
                day.vwap,
                source="session_start",
                days=day.day,
                confidence=settings.calibration_confidence,
                offer_unit_ns=max(settings.persistence_ns, 1),
            )
            current = self.session_fit or self.absolute
            large = fitted.large_order_size if orders_known else current.large_order_size
            offer = max(fitted.offer_size, large)
            if self.fitted_today:  # never fall during the day
                large, offer = max(large, current.large_order_size), max(offer, current.offer_size)
            self.fitted_today = True
            burst_ratio = max(fitted.burst_ratio, current.burst_ratio)
            self.session_fit = self._with_override(
                Thresholds(large, offer, "session_start", day.day, None, burst_ratio)
            )
            self._apply(self.session_fit, None)
        if session == "regular" and self.report_calibrated_at < 0:
            self.report_calibrated_at = ts + settings.calibration_ns
        if self.prior is not None:
            self._blend_prior(ts, outputs)
        if session != "regular":
            return
        if 0 < self.report_calibrated_at <= ts and self.fitted_today:
            self.report_calibrated_at = 0
            self._apply(self.thresholds, ts, outputs)

    def _blend_prior(self, ts: int, outputs: list[Output]) -> None:
        """A day with no history, once a minute of its regular session is seen: the first-day prior's
        thresholds for the volume the day is expected to trade, moved toward the session's own fit as the
        calibration time passes (all of it once ``calibrated`` is reported)."""
        prior, regular = self.prior, self.day_recorder
        if prior is None or regular is None or not regular.first_ns or self.report_calibrated_at <= 0:
            return
        open_ns = regular.open_ns
        volume = prior.expected_volume(regular.volume_total, regular.first_ns - open_ns, ts - open_ns)
        if not volume:
            return
        calibration_ns = self.settings.calibration_ns
        weight = 1 - (self.report_calibrated_at - ts) / calibration_ns
        start = prior_thresholds(self.settings.fit, prior, volume, regular.vwap, days=regular.day)
        self._apply(blend_thresholds(start, self.session_fit, weight if self.fitted_today else 0.0), None)
        if not self.prior_reported:
            self.prior_reported = True
            outputs.append(
                detector_status(
                    self.symbol,
                    "calibrating",
                    ts,
                    "first_day_prior",
                    f"first-day prior: large order {start.large_order_size:,} shares "
                    f"({100 * prior.volume_fraction:.3f} % of an expected {volume:,} shares, from "
                    f"{regular.volume_total:,} in the first {(ts - regular.first_ns) / 1e9:.0f} s of the regular "
                    f"session), large offer {start.offer_size:,} shares, burst ratio {start.burst_ratio:g}; "
                    f"moving to the session's own fit over {calibration_ns / 60e9:g} minutes",
                )
            )

    def _profile_thresholds(self, profile: SymbolProfile, source: str, market_open: int | None) -> Thresholds:
        return self._with_override(thresholds_for(profile, self.settings.fit, source=source, open_ns=market_open))

    def _with_override(self, fitted: Thresholds) -> Thresholds:
        """A per-symbol ``large_order_size`` override wins over fitted order and offer sizes."""
        if not self.settings.large_order_override:
            return fitted
        size = self.settings.large_order_size
        return Thresholds(size, size, "override", fitted.days, fitted.curve, fitted.burst_ratio)

    def _apply(self, thresholds: Thresholds, ts: int | None, outputs: list[Output] | None = None) -> None:
        """Judge against ``thresholds`` from now on; with ``ts`` (ns), report them (``calibrated``)."""
        self.thresholds = thresholds
        self.bursts.curve = thresholds.curve
        settings = self.settings
        self.bursts.critical_threshold = max(
            settings.red_burst_threshold,
            thresholds.burst_ratio * settings.red_burst_threshold / settings.spike_threshold,
        )
        if ts is not None and outputs is not None:
            curve = "with" if thresholds.curve is not None else "without"
            burst_ratio = max(settings.spike_threshold, thresholds.burst_ratio)
            outputs.append(
                detector_status(
                    self.symbol,
                    "calibrated",
                    ts,
                    thresholds.source,
                    f"{thresholds.source} {thresholds.days}: large order {thresholds.large_order_size:,} shares, "
                    f"large offer {thresholds.offer_size:,} shares, burst ratio {burst_ratio:g}, "
                    f"{curve} an intraday volume curve",
                )
            )
