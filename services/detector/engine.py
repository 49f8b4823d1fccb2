"""The rules core: a pure state machine per symbol over market events.

``Engine.process(event)`` returns what the event caused — alerts, exit recommendations, statuses, validation issues,
expired alerts (see :mod:`services.detector.outputs`) — and does no I/O, so the live service, ``orderflow analyze``
and tests run the very same code on the same events and get the same alert ids. Event time only, never a clock.

Per event: session tagging; feed statuses (gaps and halts reset the windows); integrity (a bad event halts
monitoring); a new day rebuilds the thresholds; a session change resets the windows; time-driven work (a complete
aggressive order, persisted book appearances, alerts leaving the exit window); then the event moves the NBBO, the
book, the resting orders, the tape orders and the volume windows. :class:`~services.detector.market_watch.MarketWatch`
sees each event past the integrity checks first (prices, index flow) and each alert last (context, exit cost).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, cast

from orderflow_client.wire import (
    BookUpdate,
    FeedStatus,
    MarketEvent,
    OrderFlowAlert,
    OrderUpdate,
    Quote,
    Severity,
    Trade,
    TradingSession,
)
from services.detector.alert_builders import (
    iceberg_alert,
    large_offer_alert,
    large_order_alert,
    pulled_order,
    red_burst_alert,
)
from services.detector.book import Appearance, LargeOffers
from services.detector.bursts import RedBursts
from services.detector.day_recorder import DayRecorder
from services.detector.exits import ExitRule
from services.detector.integrity import Integrity, MarketData
from services.detector.market_watch import MarketWatch
from services.detector.orders import Iceberg, SellOrders
from services.detector.outputs import ExpiredAlerts, Output
from services.detector.profiles import DayStatistics, SymbolProfile
from services.detector.rule_settings import RuleSettings
from services.detector.tape import AggressiveOrder, TapeOrders
from services.detector.threshold_fit import Thresholds
from services.detector.threshold_lifecycle import ThresholdLifecycle
from shared.conditions import ConditionTable
from shared.config import OrderFlowConfig
from shared.nbbo import PrevailingQuote
from shared.sessions import SessionClock

RESETTING_FEED_STATES = ("gap", "disconnected", "trading_halted", "trading_resumed")
"""Feed statuses after which a symbol's windows cannot be trusted (they span missing or halted trading)."""


class SymbolEngine:
    """All rules of one symbol (thresholds: see :class:`~services.detector.threshold_lifecycle.ThresholdLifecycle`)."""

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
        self.orders = SellOrders()
        self.bursts = RedBursts(
            spike_seconds=settings.spike_seconds,
            baseline_seconds=settings.baseline_seconds,
            min_baseline_volume=settings.min_baseline_volume,
            sell_ratio=settings.sell_ratio,
            critical_threshold=settings.red_burst_threshold,
        )
        self.exits = ExitRule(settings.alert_window_ns)
        self.lifecycle = ThresholdLifecycle(symbol, settings, sessions, self.bursts, history, profile_source)
        self.session: TradingSession | Literal[""] = ""  # the session of the last usable event
        self.last_ts = 0  # the last usable event: its event time and receive time (ns), for :meth:`advance`
        self.last_recv = 0
        self.market: MarketWatch | None = None  # market context: sees each usable event first, each alert last

    @property
    def thresholds(self) -> Thresholds:
        """What the rules judge against now (outside extended-hours sizes)."""
        return self.lifecycle.thresholds

    def recorded_sessions(self) -> list[DayStatistics]:
        """Every session this engine knows: its history and the session in progress (if it traded)."""
        return self.lifecycle.recorded_sessions()

    # --- the event path ----------------------------------------------------------
    def process_status(self, status: FeedStatus) -> list[Output]:
        """A feed's status: gaps, disconnections and trading halts reset the windows."""
        if status.state in RESETTING_FEED_STATES:
            self.reset_windows(status.ts_event)
        return []

    def process(self, event: MarketData) -> list[Output]:
        outputs: list[Output] = []
        ts = event.ts_event
        session = self.sessions.session(ts)
        verdict = self.integrity.check(event, session)
        if verdict is not None:
            outputs.extend(verdict.issues)
            outputs.extend(verdict.statuses)
            if verdict.reset:
                self.reset_windows(ts)
            if not verdict.usable:
                return outputs
        if self.market is not None:
            self.market.observe(event)
        self.last_ts, self.last_recv = ts, event.ts_recv
        lifecycle = self.lifecycle
        if ts >= lifecycle.day_end and self.settings.adaptive:  # only a valid event starts a new day
            lifecycle.new_day(ts, self.session, outputs)
        if session != self.session:
            if self.session:
                self.reset_windows(ts)
            self.session = session
            lifecycle.record_session(session)
        if self.tape.current is not None or self.offers.appearances or self.exits.recent:
            self._time_passes(ts, event.ts_recv, session, outputs)
        if lifecycle.extended_recorder is not None:  # a day with no history calibrates itself
            lifecycle.calibrate(ts, session, outputs)
        recorder = lifecycle.active_recorder
        if type(event) is Trade:
            self._on_trade(event, session, outputs, recorder)
        elif type(event) is Quote:
            self.nbbo.update(ts, event.bid_price, event.ask_price)
            self.offers.on_quote(
                ts, event.bid_price, event.bid_size, event.ask_price, event.ask_size, lifecycle.offer_size(session)
            )
            if recorder is not None:
                recorder.record_quote(ts, event.bid_price, event.ask_price, event.ask_size)
        elif type(event) is BookUpdate:
            self.nbbo.update_from(event)
            self.offers.on_book(ts, event.bids, event.asks, lifecycle.offer_size(session))
            if recorder is not None:
                recorder.record_book(ts, event.bids, event.asks)
        elif type(event) is OrderUpdate:
            self._on_order(event, session, outputs)
        return outputs

    # --- time passing between events (live) -------------------------------------------
    def advance(self, now_recv: int) -> list[Output]:
        """Live: a large offer is reported once it rested ``persistence`` though no event came (``now_recv``: ns,
        ``ts_recv`` clock), stamped then with the id the next event would give it. A new day waits for an event."""
        if not self.offers.appearances or not self.last_recv or self.integrity.halted:
            return []
        ts = self.last_ts + (now_recv - self.last_recv)
        day_end = self.lifecycle.day_end
        if ts <= self.last_ts or (day_end and ts >= day_end):
            return []
        session = self.sessions.session(ts)
        if session != self.session:
            return []
        outputs: list[Output] = []
        for appearance in self.offers.due(ts):  # reported as of the moment it had rested long enough
            due = appearance.start_ts + self.settings.persistence_ns
            self._offer_rested(appearance, due, self._receive_time(due), session, outputs)
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

    def flush(self) -> list[Output]:  # end of input: complete the aggressive order in progress
        order = self.tape.end_order()
        if order is not None:
            self._order_completed(order)
        return []

    def reset_windows(self, ts: int) -> None:
        """Forget the windows as of ``ts`` (ns): the tape order, the book's appearances and orders, the bursts."""
        self.tape.end_order()
        self.offers.reset()
        self.orders.reset()
        self.bursts.reset(ts)

    def _time_passes(self, ts: int, ts_recv: int, session: TradingSession, outputs: list[Output]) -> None:
        order = self.tape.order_ended_by(ts)
        if order is not None:
            self._order_completed(order)
        if self.offers.appearances:
            for appearance in self.offers.due(ts):
                self._offer_rested(appearance, ts, ts_recv, session, outputs)
        if self.exits.recent:
            expired = self.exits.expire(ts)
            if expired:
                outputs.append(ExpiredAlerts(alert.id for alert in expired))

    def _on_trade(
        self, trade: Trade, session: TradingSession, outputs: list[Output], recorder: DayRecorder | None
    ) -> None:
        if not self.conditions.classify(trade.conditions, trade.correction).aggressive:
            return  # auctions, odd lots, late, average-price…: neither pressure nor volume here
        if recorder is not None:
            recorder.record_print(trade.ts_event, trade.price, trade.size)
        bid, _ask = self.nbbo.before(trade.ts_event)
        if trade.side == "sell" and 0 < trade.price <= bid:
            finished = self.tape.on_sell(trade, bid)
            if finished is not None:
                self._order_completed(finished)
            running = self.tape.current
            if running is not None:  # always: the print joined or started it
                self._order_grew(running, session, outputs)
        else:
            finished = self.tape.end_order()
            if finished is not None:
                self._order_completed(finished)
        self.bursts.add(trade.ts_event, trade.size, trade.side)
        threshold = self.lifecycle.burst_ratio_threshold(session)
        signal = self.bursts.evaluate(trade.ts_event, threshold)
        if signal is not None:
            alert = red_burst_alert(
                self.symbol,
                signal,
                trade,
                session,
                threshold=threshold,
                spike_seconds=self.settings.spike_seconds,
                baseline_seconds=self.settings.baseline_seconds,
            )
            self._emit(alert, outputs)

    def _on_order(self, update: OrderUpdate, session: TradingSession, outputs: list[Output]) -> None:
        threshold = self.lifecycle.offer_size(session)
        signal = self.orders.on_order(update, threshold)
        if isinstance(signal, Iceberg):
            evidence = self.lifecycle.threshold_evidence(threshold, session)
            self._emit(iceberg_alert(self.symbol, signal, threshold, session, evidence), outputs)
        elif signal is not None and signal.order.named_by:  # the seller an alert named left without selling
            outputs.append(pulled_order(self.symbol, signal))

    # --- alerts ------------------------------------------------------------------
    def _emit(self, alert: OrderFlowAlert, outputs: list[Output]) -> None:
        if self.market is not None:
            return self.market.emit(self, alert, outputs)
        outputs.append(alert)
        recommendation = self.exits.on_alert(alert)
        if recommendation is not None:
            outputs.append(recommendation)

    def _order_completed(self, order: AggressiveOrder) -> None:
        """A completed order: recorded; it alerted while running if it crossed the threshold."""
        recorder = self.lifecycle.active_recorder
        if recorder is not None:
            recorder.record_order(order.size)

    def _order_grew(self, order: AggressiveOrder, session: TradingSession, outputs: list[Output]) -> None:
        """Alert when the order's running size crosses the threshold (``critical`` at twice it), again at twice."""
        threshold = self.lifecycle.large_order_size(session)
        if order.size < threshold or order.alerted == "critical":
            return
        severity: Literal["warning", "critical"] = "critical" if order.size >= 2 * threshold else "warning"
        if order.alerted == severity:
            return
        escalation = order.alerted == "warning"
        order.alerted = severity
        evidence = self.lifecycle.threshold_evidence(threshold, session)
        self._emit(large_order_alert(self.symbol, order, severity, session, evidence, escalation=escalation), outputs)

    def _offer_rested(
        self, appearance: Appearance, ts: int, ts_recv: int, session: TradingSession, outputs: list[Output]
    ) -> None:
        """A large offer rested long enough (as of ``ts``): ``critical`` at twice the threshold unless two-sided;
        with orders, judged on the largest single order (one seller, named)."""
        threshold = self.lifecycle.offer_size(session)
        largest_bid = self.offers.largest_bid()
        two_sided = largest_bid >= self.settings.two_sided_ratio * appearance.size
        orders = self.orders.resting_at(appearance.price) if self.orders.seen else None
        seller = appearance.size if orders is None else max((order.size for order in orders), default=0)
        severity: Severity = "critical" if seller >= 2 * threshold and not two_sided else "warning"
        evidence = self.lifecycle.threshold_evidence(threshold, session)
        alert = large_offer_alert(
            self.symbol, appearance, ts, ts_recv, severity, session, evidence, two_sided, largest_bid, orders
        )
        if orders and orders[0].size >= threshold:
            orders[0].named_by = alert.id  # one order is the large seller: say so if it leaves without selling
        self._emit(alert, outputs)


class Engine:
    """Every monitored symbol's rules; events of any symbol in arrival order. ``settings`` apply to every symbol,
    unless ``config`` is given: then each symbol gets its own (``symbol_overrides``)."""

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
        market, symbols = settings.market, self.symbols
        self.market = MarketWatch(market, self.conditions, self.sessions, symbols, self.profiles) if market else None

    def set_open_positions(self, symbols: Iterable[str]) -> None:  # named by a market-scope exit (sorted)
        if self.market is not None:
            self.market.set_open_positions(symbols)

    def observe_index(self, event: MarketEvent) -> None:
        """Move an index's state with ``event`` only (no rules, no outputs): another detector runs its rules."""
        if self.market is not None and type(event) is not FeedStatus:
            self.market.observe(cast(MarketData, event))

    def is_index(self, symbol: str) -> bool:  # an index of market context (market_symbols, sector_etfs)
        return self.market is not None and symbol in self.market.indexes

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
            engine.market = self.market
        return engine

    def reset(self, symbol: str, ts: int) -> None:
        """Forget ``symbol``'s windows as of event time ``ts`` (ns), as a feed gap does (its rules failed)."""
        engine = self.symbols.get(symbol)
        if engine is not None:
            engine.reset_windows(ts)

    def process(self, event: MarketEvent) -> list[Output]:
        if type(event) is FeedStatus:
            outputs: list[Output] = []
            for symbol in event.symbols or tuple(self.symbols):
                outputs.extend(self.engine_for(symbol).process_status(event))
            return outputs
        data = cast(MarketData, event)  # not a status: a trade, a quote or a book
        engine = self.symbols.get(data.symbol) or self.engine_for(data.symbol)
        return engine.process(data) if self.market is None else self.market.process(engine, data)

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
