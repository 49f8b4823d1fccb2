"""Live calibration: a symbol the detector starts monitoring with no fresh profile gets one from REST history at once.

Adaptive mode only. When the detector starts monitoring a symbol (a position opened) whose stored profile is missing
or stale (its newest session older than ``profile_max_age_days`` trading days), :class:`CalibrationWorker` fetches
the symbol's last ``profile_days`` trading days of trades and quotes from Polygon REST, newest day first, in a child
process (:mod:`services.detector.calibration_process`: the fetch and the replay of the days through the rules engine
never hold the GIL against the detector's event loop; its :class:`HistorySource`:
:class:`services.offline.calibrate.RestHistory`, given by the detect command; a source without ``runs_in_process``
runs in a thread),
bounded by ``calibration_fetch_requests`` requests and ``calibration_fetch_seconds``: at a bound it stops and builds
the profile from the whole days it has.
Meanwhile the symbol runs on the session's own fit. The profile is saved under ``{prefix}:profile:{SYM}`` (the key
``orderflow calibrate`` uses) and handed to the engine: a symbol already running adopts it mid-session
(``ThresholdLifecycle.adopt_profile``: status ``calibrated``, code ``profile``), one with no event yet starts on it.

Progress is published as detector statuses ``calibrating`` with code ``profile_fetching``, at the start and after
each day (rate: one per day fetched), e.g.::

    calibrating  profile_fetching     fetching 5 trading days of REST history (at most 200 requests, 60 s);
                                      the session's own fit meanwhile
    calibrating  profile_fetching     2 of 5 days fetched, 14 requests, 1,204,311 events
    calibrating  profile_unavailable  REST history unavailable (rest_unavailable): the session's own fit meanwhile;
                                      next try in 60 s

A failure (REST down, 401, 429 past the client's retries, a timeout, Redis away while saving) is logged
(``order_flow.calibration_failed`` with a code), counted in :attr:`CalibrationWorker.outcomes` and tried again
after :data:`RETRY_BASE_SECONDS`, doubling up to :data:`RETRY_CAP_SECONDS` (from :meth:`CalibrationWorker.tick`,
never in a loop of its own). No API key: ``order_flow.calibration_unavailable`` once and the old behaviour.

Before each regular open (NYSE), ``profile_refresh_minutes_before_open`` ahead, :meth:`CalibrationWorker.tick`
rebuilds the profiles of the held symbols that lack the last trading day, so the next day starts on fresh ones.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import concurrent.futures.process
import threading
from collections.abc import Callable, Iterable
from datetime import date
from typing import Protocol

from orderflow_client import logs
from orderflow_client.bus.calls import OUTAGE_ERRORS
from orderflow_client.timestamps import NANOSECONDS_PER_SECOND, now_ns, ns_to_utc_iso
from services.detector.alert_builders import detector_status
from services.detector.calibration_process import CalibrationProcess, FetchProgress, HistoryUnavailableError, StopFlag
from services.detector.engine import Engine
from services.detector.outputs import Output
from services.detector.profile_store import ProfileStore, new_york_day, whole_trading_days
from services.detector.profiles import DayStatistics, ProfileError, SymbolProfile, build_profile
from services.detector.sink import OutputSink
from shared import service_metrics
from shared.config import OrderFlowConfig
from shared.sessions import SessionClock

RETRY_BASE_SECONDS = 60.0
"""A failed calibration is tried again after this long, doubling with each failure in a row …"""
RETRY_CAP_SECONDS = 1800.0
"""… up to this long."""
log = logs.get_logger(__name__)


class HistorySource(Protocol):
    """Where the worker's history comes from (Polygon REST: :class:`services.offline.calibrate.RestHistory`).

    A source with a true ``runs_in_process`` attribute is pickled to the worker's child process and fetches there
    (it must pickle, and so must what it returns and raises); any other runs in a thread (tests' hand-made ones)."""

    def fetch(
        self, symbol: str, days: list[date], cancelled: StopFlag, on_day: Callable[[FetchProgress], None]
    ) -> tuple[list[DayStatistics], FetchProgress]:
        """``symbol``'s regular sessions of ``days`` within the fetch bounds, blocking: a day cut short by a bound is
        left out (``progress.stopped``); ``cancelled`` set stops it at its next request or wait; ``on_day(progress)``
        after each whole day; after them, ``progress.index``'s sessions of minute prices (the beta's). Raises
        :class:`HistoryUnavailableError`."""
        ...


class CalibrationWorker:
    """Builds missing or stale profiles from REST history beside the detector (see the module's docstring).

    ``history`` fetches the sessions (None: live calibration unavailable, logged once); ``clock`` gives the time
    now (UTC ns; tests drive it). Entry points: :meth:`request` when the detector starts monitoring a symbol,
    :meth:`tick` at each refresh of the monitored symbols, :meth:`close` at a stop."""

    def __init__(
        self,
        config: OrderFlowConfig,
        engine: Engine,
        sink: OutputSink,
        store: ProfileStore,
        history: HistorySource | None,
        *,
        clock: Callable[[], int] = now_ns,
    ) -> None:
        self.config = config
        self.engine = engine
        self.sink = sink
        self.store = store
        self.history = history
        self.clock = clock
        self.enabled = config.threshold_mode == "adaptive"
        self.held: set[str] = set()  # the symbols the detector monitors
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.failing: set[asyncio.Task[None]] = set()  # a defect's failure being recorded (cancelled by close)
        self.cancels: dict[str, threading.Event] = {}  # the fetches under way in a thread
        self.process = CalibrationProcess()  # where a source that runs in a process fetches (started lazily)
        self.failures: dict[str, tuple[int, int]] = {}  # symbol -> (failures in a row, next try at ns)
        self.outcomes: collections.Counter[str] = collections.Counter()  # built, bounded, failed codes, fresh
        self.last_progress: dict[str, FetchProgress] = {}
        self.quiet: set[str] = set()  # symbols rebuilt with no status (they run on a stored profile meanwhile)
        self._sessions = SessionClock()
        self._refreshed_day = ""  # the trading day whose pre-open refresh ran
        self._one_fetch = asyncio.Semaphore(1)  # one fetch at a time: one REST rate limit
        self._unavailable_logged = False
        self._last_status_ns = 0

    # --- entry points ------------------------------------------------------------------
    def request(self, symbol: str, reason: str = "monitoring") -> None:
        """The detector starts monitoring ``symbol``: build its profile unless a fresh one is stored (checked in
        the worker's task; nothing is fetched then)."""
        if not self.enabled:
            return
        self.held.add(symbol)
        if self._available():
            self._start(symbol, reason, self.clock())

    def tick(self, monitored: Iterable[str] | None = None, now: int | None = None) -> None:
        """At each refresh of the monitored symbols (``monitored``: all of them now, None: unchanged): try again
        the failures that are due, and in the ``profile_refresh_minutes_before_open`` before a regular open rebuild
        the held symbols' profiles that lack the last trading day (once per day)."""
        if not self.enabled:
            return
        if monitored is not None:
            self.held &= set(monitored)
        if not self.held or not self._available():
            return
        now = self.clock() if now is None else now
        for symbol, (_count, due) in list(self.failures.items()):
            if symbol in self.held and due <= now:
                self._start(symbol, "retry", now)
        lead_ns = int(self.config.profile_refresh_minutes_before_open * 60 * NANOSECONDS_PER_SECOND)
        market_open, market_close = self._sessions.regular_hours(now)
        day = new_york_day(now).isoformat()
        before_open = market_open < market_close and market_open - lead_ns <= now < market_open
        if lead_ns and before_open and self._refreshed_day != day:
            self._refreshed_day = day
            log.info("order_flow.profile_refresh_started", symbols=sorted(self.held), day=day)
            for symbol in sorted(self.held):
                self._start(symbol, "before_open", now)

    async def close(self) -> None:
        """Stop every fetch (at its next request or wait), wait for the tasks, stop the child process."""
        for cancelled in self.cancels.values():
            cancelled.set()
        tasks = [*self.tasks.values(), *self.failing]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.process.close()

    # --- one symbol ----------------------------------------------------------------------
    def _available(self) -> bool:
        key = self.config.polygon_api_key
        if self.history is not None and key is not None and key.get_secret_value():
            return True
        if not self._unavailable_logged:
            self._unavailable_logged = True
            why = "no POLYGON_API_KEY" if self.history is not None else "no history source"
            log.warning(
                "order_flow.calibration_unavailable",
                detail=f"{why}: a symbol with no profile calibrates from its own session",
            )
        return False

    def _start(self, symbol: str, reason: str, now: int) -> None:
        if symbol in self.tasks:
            return
        task = asyncio.get_running_loop().create_task(self._calibrate(symbol, reason, now))
        self.tasks[symbol] = task
        task.add_done_callback(lambda done: self._finished(symbol, done))

    def _finished(self, symbol: str, task: asyncio.Task[None]) -> None:
        self.tasks.pop(symbol, None)
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()  # a defect: logged and tried again later; the detector goes on
        log.error("order_flow.calibration_failed", symbol=symbol, code="internal_error", exc_info=error)
        failing = task.get_loop().create_task(self._failed(symbol, "internal_error", repr(error), self.clock()))
        self.failing.add(failing)
        failing.add_done_callback(self.failing.discard)

    async def _calibrate(self, symbol: str, reason: str, now: int) -> None:
        config = self.config
        max_age = config.profile_max_age_days
        days = whole_trading_days(self._sessions, now, max(config.profile_days, max_age))
        try:
            stored = await self.store.load(symbol)
        except ProfileError:
            stored = None
        except OUTAGE_ERRORS as error:
            await self._failed(symbol, "bus_unavailable", str(error), now)
            return
        newest_needed = days[-1] if reason == "before_open" else days[-max_age]
        if stored is not None and stored.last_day >= newest_needed.isoformat():
            self._count("fresh")
            self.failures.pop(symbol, None)
            log.info("order_flow.profile_fresh", symbol=symbol, last_day=stored.last_day, reason=reason)
            return
        if stored is not None:  # the symbol runs on a profile meanwhile: the rebuild is logged, no status
            self.quiet.add(symbol)
        try:
            await self._rebuild(symbol, days[-config.profile_days :], reason, stored, now)
        finally:
            self.quiet.discard(symbol)

    async def _rebuild(
        self, symbol: str, wanted: list[date], reason: str, stored: SymbolProfile | None, now: int
    ) -> None:
        """Fetch ``wanted`` days, build the profile, save it and hand it to the engine (failures handled)."""
        config = self.config
        async with self._one_fetch:
            sessions, progress = await self._fetch_sessions(symbol, wanted, reason, stored, now)
        if progress is None:
            return
        index = progress.index
        minutes = [session for session in sessions if index and session.symbol == index]
        sessions = [session for session in sessions if session.symbol == symbol]
        if not sessions:
            code = f"{progress.stopped}_bound" if progress.stopped else "no_history"
            await self._failed(symbol, code, f"no whole regular session in {len(wanted)} trading days", now)
            return
        # a stored profile's sessions stay where no newer one was fetched (a bound kept some days out)
        earlier = list(stored.sessions) if stored is not None else []
        profile = build_profile(
            symbol,
            earlier + sessions,
            source="rest",
            built_utc=ns_to_utc_iso(self.clock()),
            profile_days=config.profile_days,
            index=index,
            index_sessions=minutes,
        )
        no_beta = progress.index_missing or ("" if profile.beta else f"too few minutes shared with {index}")
        try:
            await self.store.save(profile)
            await self._hand_over(profile)
        except OUTAGE_ERRORS as error:
            await self._failed(symbol, "bus_unavailable", str(error), now)
            return
        self.failures.pop(symbol, None)
        outcome = "bounded" if progress.stopped else "built"
        self._count(outcome)
        log.info(
            "order_flow.calibration_done",
            symbol=symbol,
            days=list(profile.days),
            requests=progress.requests,
            events=progress.events,
            stopped_at_bound=progress.stopped or None,
            reason=reason,
            beta=profile.beta or None,
            beta_index=profile.beta_index or None,
            beta_missing=no_beta or None,
        )

    async def _fetch_sessions(
        self, symbol: str, days: list[date], reason: str, stored: SymbolProfile | None, now: int
    ) -> tuple[list[DayStatistics], FetchProgress | None]:
        """The sessions of ``days`` from REST within the bounds; progress None when REST failed (handled)."""
        config = self.config
        history = self.history
        assert history is not None  # _available
        cancelled = self.cancels[symbol] = threading.Event()
        loop = asyncio.get_running_loop()
        log.info(
            "order_flow.calibration_started",
            symbol=symbol,
            reason=reason,
            days=[day.isoformat() for day in days],
            stored_last_day=stored.last_day if stored is not None else None,
        )
        await self._status(
            symbol,
            "profile_fetching",
            f"fetching {len(days)} trading days of REST history (at most {config.calibration_fetch_requests} "
            f"requests, {config.calibration_fetch_seconds:g} s); the session's own fit meanwhile",
        )

        published: list[asyncio.Future[None]] = []

        def on_day(progress: FetchProgress) -> None:  # in the fetch's thread
            future = asyncio.run_coroutine_threadsafe(self._progress_status(progress), loop)
            published.append(asyncio.wrap_future(future, loop=loop))

        def on_day_in_loop(progress: FetchProgress) -> None:  # the child's progress, polled on the event loop
            published.append(loop.create_task(self._progress_status(progress)))

        try:
            if getattr(history, "runs_in_process", False):
                sessions, progress = await self.process.fetch(history, symbol, days, on_day_in_loop)
            else:
                sessions, progress = await asyncio.to_thread(history.fetch, symbol, days, cancelled, on_day)
        except asyncio.CancelledError:
            cancelled.set()  # the thread (the child: its own event) stops at its next request or wait
            raise
        except HistoryUnavailableError as error:
            await self._failed(symbol, error.code, str(error), now)
            return [], None
        except concurrent.futures.process.BrokenProcessPool as error:  # the child died (killed, out of memory)
            await self._failed(symbol, "process_failed", repr(error), now)
            return [], None
        finally:
            self.cancels.pop(symbol, None)
            await asyncio.gather(*published)  # progress before what follows
        self.last_progress[symbol] = progress
        if progress.stopped:
            log.warning(
                "order_flow.calibration_bounded",
                symbol=symbol,
                bound=progress.stopped,
                days_done=progress.days_done,
                days_wanted=progress.days_wanted,
                requests=progress.requests,
                detail="the profile is built from the whole days fetched",
            )
        return sessions, progress

    async def _hand_over(self, profile: SymbolProfile) -> None:
        """The engine judges ``symbol`` against ``profile``: adopted mid-session when the symbol already runs,
        its history from its first event otherwise. A symbol no longer monitored keeps the stored profile only."""
        symbol = profile.symbol
        if symbol not in self.held:
            return
        self.engine.set_profile(symbol, profile)
        running = self.engine.symbols.get(symbol)
        if running is None:
            return
        outputs: list[Output] = []
        # event time: the symbol's own last event (a replayed day runs on its own clock), else the clock
        running.lifecycle.adopt_profile(profile, running.last_ts or self._status_ns(), outputs)
        await self.sink.publish(outputs)

    async def _failed(self, symbol: str, code: str, reason: str, now: int) -> None:
        """Count a failure and set its next try; ``now``: when the run started (the clock if later)."""
        now = max(now, self.clock())
        count = self.failures.get(symbol, (0, 0))[0] + 1
        delay = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** (count - 1))
        self.failures[symbol] = (count, now + int(delay * NANOSECONDS_PER_SECOND))
        self._count(code)
        log.warning(
            "order_flow.calibration_failed",
            symbol=symbol,
            code=code,
            reason=reason[:300],
            failures_in_a_row=count,
            retry_in_seconds=delay,
        )
        detail = f"REST history unavailable ({code}): the session's own fit meanwhile; next try in {delay:g} s"
        await self._status(symbol, "profile_unavailable", detail)

    def _count(self, outcome: str) -> None:
        """One calibration's outcome: ``built``, ``bounded``, ``fresh`` or a failure's code."""
        self.outcomes[outcome] += 1
        service_metrics.CALIBRATION_RUNS.labels(outcome=outcome).inc()

    # --- statuses --------------------------------------------------------------------------
    async def _progress_status(self, progress: FetchProgress) -> None:
        self.last_progress[progress.symbol] = progress
        await self._status(
            progress.symbol,
            "profile_fetching",
            f"{progress.days_done} of {progress.days_wanted} days fetched, {progress.requests} requests, "
            f"{progress.events:,} events",
        )

    async def _status(self, symbol: str, code: str, detail: str) -> None:
        """A ``calibrating`` status of ``symbol`` through the sink (none for a symbol in :attr:`quiet`); Redis
        away: logged, not retried (the next status says more)."""
        if symbol in self.quiet:
            return
        try:
            await self.sink.publish([detector_status(symbol, "calibrating", self._status_ns(), code, detail)])
        except OUTAGE_ERRORS as error:
            log.warning("order_flow.calibration_status_lost", symbol=symbol, code=code, reason=str(error)[:300])

    def _status_ns(self) -> int:
        """The clock, made strictly increasing: each status gets an id of its own."""
        self._last_status_ns = max(self.clock(), self._last_status_ns + 1)
        return self._last_status_ns
