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
from typing import Union

from services.detector.book import Appearance, LargeOffers
from services.detector.bursts import BurstSignal, RedBursts
from services.detector.exits import ExitRule
from services.detector.integrity import Integrity, IntegritySettings, ValidationIssue
from services.detector.sessions import SessionClock
from services.detector.tape import AggressiveOrder, TapeOrders
from shared.conditions import ConditionTable
from shared.config import OrderFlowConfig
from shared.nbbo import PrevailingQuote
from shared.prices import format_price
from shared.timestamps import ns_to_utc_iso
from shared.wire import ExitRecommendation, FeedStatus, MarketEvent, OrderFlowAlert, Quote, Trade

NANOS = 1_000_000_000
EXTENDED = ("pre_market", "after_hours")


class AlertsExpired(tuple):
    """Alerts that left the exit window (for ``order_flow.alert_window_expired``)."""


Output = Union[OrderFlowAlert, ExitRecommendation, FeedStatus, ValidationIssue, AlertsExpired]


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

    @classmethod
    def from_config(cls, config: OrderFlowConfig, symbol: str | None = None) -> RuleSettings:
        """The settings of ``symbol`` (its ``symbol_overrides`` over the global values)."""
        override = config.symbol_overrides.get(symbol) if symbol else None
        large = (override and override.large_order_size) or config.large_order_size
        spike = (override and override.volume_spike_threshold) or config.volume_spike_threshold
        return cls(
            large_order_size=large,
            extended_large_order_size=(override and override.large_order_size) or config.extended_hours_large_order_size or large,
            spike_threshold=spike,
            extended_spike_threshold=(override and override.volume_spike_threshold) or config.extended_hours_volume_spike_threshold or spike,
            red_burst_threshold=(override and override.red_burst_threshold) or config.red_burst_threshold,
            alert_window_ns=config.alert_window_seconds * NANOS,
            spike_seconds=config.spike_window_seconds,
            baseline_seconds=config.baseline_window_seconds,
            sell_ratio=config.sell_ratio_threshold,
            min_baseline_volume=(override.min_baseline_volume if override and override.min_baseline_volume is not None
                                 else config.min_baseline_volume),
            sweep_window_ns=config.sweep_window_ms * 1_000_000,
            persistence_ns=int(config.book_persistence_seconds * NANOS),
            two_sided_ratio=config.two_sided_ratio,
            integrity=IntegritySettings(
                stale_warning_ns=int(config.stale_warning_seconds * NANOS),
                stale_failure_ns=int(config.stale_failure_seconds * NANOS),
                resume_after_ns=int(config.resume_after_seconds * NANOS),
                tolerance_ns=config.chronology_tolerance_ms * 1_000_000,
                gap_silence_ns=int(config.gap_silence_seconds * NANOS),
            ),
        )

    def large_order(self, session: str) -> int:
        return self.extended_large_order_size if session in EXTENDED else self.large_order_size

    def spike(self, session: str) -> float:
        return self.extended_spike_threshold if session in EXTENDED else self.spike_threshold


class SymbolEngine:
    """All rules of one symbol."""

    def __init__(self, symbol: str, settings: RuleSettings, conditions: ConditionTable, sessions: SessionClock) -> None:
        self.symbol = symbol
        self.settings = settings
        self.conditions = conditions
        self.sessions = sessions
        self.integrity = Integrity(symbol, settings.integrity)
        self.nbbo = PrevailingQuote()
        self.tape = TapeOrders(settings.sweep_window_ns)
        self.offers = LargeOffers(settings.persistence_ns)
        self.bursts = RedBursts(
            spike_seconds=settings.spike_seconds, baseline_seconds=settings.baseline_seconds,
            min_baseline_volume=settings.min_baseline_volume, sell_ratio=settings.sell_ratio,
            critical_threshold=settings.red_burst_threshold,
        )
        self.exits = ExitRule(settings.alert_window_ns)
        self.session = ""

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
        if session != self.session:
            if self.session:
                self._reset(ts)
            self.session = session
        if self.tape.current is not None or self.offers.appearances or self.exits.recent:
            self._time_passes(ts, session, event, outputs)
        kind = type(event)
        if kind is Trade:
            self._on_trade(event, session, outputs)
        elif kind is Quote:
            self.nbbo.update(ts, event.bid_price, event.ask_price)
            self.offers.on_quote(ts, event.bid_price, event.bid_size, event.ask_price, event.ask_size,
                                 self.settings.large_order(session))
        else:
            self.nbbo.update_from(event)
            self.offers.on_book(ts, event.bids, event.asks, self.settings.large_order(session))
        return outputs

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

    def _on_trade(self, trade: Trade, session: str, outputs: list[Output]) -> None:
        if not self.conditions.classify(trade.conditions, trade.correction).aggressive:
            return  # auctions, odd lots, late, average-price…: neither pressure nor volume here
        bid, _ask = self.nbbo.before(trade.ts_event)
        if trade.side == "sell" and 0 < trade.price <= bid:
            finished = self.tape.on_sell(trade, bid)
        else:
            finished = self.tape.end()
        if finished is not None:
            self._on_order(finished, session, outputs)
        self.bursts.add(trade.ts_event, trade.size, trade.side)
        signal = self.bursts.evaluate(trade.ts_event, self.settings.spike(session))
        if signal is not None:
            self._emit(self._burst_alert(signal, trade, session), outputs)

    # --- alerts ------------------------------------------------------------------
    def _emit(self, alert: OrderFlowAlert, outputs: list[Output]) -> None:
        outputs.append(alert)
        recommendation = self.exits.on_alert(alert)
        if recommendation is not None:
            outputs.append(recommendation)

    def _on_order(self, order: AggressiveOrder, session: str, outputs: list[Output]) -> None:
        threshold = self.settings.large_order(session)
        if order.size < threshold:
            return
        alert = OrderFlowAlert(
            id=f"{self.symbol}:large_seller:tape:{order.first_ts}:{order.first_trade_id}",
            symbol=self.symbol,
            alert_type="large_seller",
            severity="critical" if order.size >= 2 * threshold else "warning",
            source="tape",
            ts_event=order.last_ts,
            ts_recv=order.last_ts_recv,
            timestamp_utc=ns_to_utc_iso(order.last_ts),
            order_size=order.size,
            price_level=order.worst_price,
            session=session,
            evidence={
                "vwap": format_price(order.vwap),
                "worst_price": format_price(order.worst_price),
                "bid_before": format_price(order.bid_before),
                "prints": order.prints,
                "duration_ms": round((order.last_ts - order.first_ts) / 1e6, 3),
                "first_ts_utc": ns_to_utc_iso(order.first_ts),
                "threshold": threshold,
            },
        )
        self._emit(alert, outputs)

    def _on_offer(self, appearance: Appearance, ts: int, ts_recv: int, session: str, outputs: list[Output]) -> None:
        threshold = self.settings.large_order(session)
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
                "rested_seconds": round((ts - appearance.start_ts) / NANOS, 3),
                "since_utc": ns_to_utc_iso(appearance.start_ts),
                "largest_bid": largest_bid,
                "threshold": threshold,
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
            },
        )


class Engine:
    """Every monitored symbol's rules; events of any symbol in arrival order.

    ``settings`` apply to every symbol, unless ``config`` is given: then each
    symbol gets its own (``symbol_overrides``).
    """

    def __init__(self, settings: RuleSettings, conditions: ConditionTable | None = None, sessions: SessionClock | None = None,
                 config: OrderFlowConfig | None = None) -> None:
        self.settings = settings
        self.config = config
        self.conditions = conditions or ConditionTable.bundled()
        self.sessions = sessions or SessionClock()
        self.symbols: dict[str, SymbolEngine] = {}

    def engine_for(self, symbol: str) -> SymbolEngine:
        engine = self.symbols.get(symbol)
        if engine is None:
            settings = RuleSettings.from_config(self.config, symbol) if self.config is not None else self.settings
            engine = self.symbols[symbol] = SymbolEngine(symbol, settings, self.conditions, self.sessions)
        return engine

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

    def halted_symbols(self) -> int:
        return sum(engine.integrity.halted for engine in self.symbols.values())
