"""orderflow inside robinhood-algo-trading-bot (its ``TradingBot`` and ``TradingOrchestrator``), without forking it.

An asyncio ``TradingBot``::

    from orderflow_client.robinhood import attach_trading_bot
    orderflow = attach_trading_bot(
        bot, os.environ["ORDERFLOW_REDIS_URL"], name="robinhood", loop=asyncio.get_running_loop()
    )
    ...                                   # bot.run_trading_loop() as before
    orderflow.stop()

The threaded ``TradingOrchestrator``::

    from orderflow_client.robinhood import attach_orchestrator
    with attach_orchestrator(orchestrator, os.environ["ORDERFLOW_REDIS_URL"], name="orchestrator"):
        orchestrator.run_loop()

What attaching does:

- **positions**: the bot's positions (``bot.positions``; the orchestrator's ``daily_trades``) are mirrored into
  orderflow's registry every ``sync_seconds`` (opens and closes, whoever made them — the bot's own stop too);
- **exit recommendations** are judged by :func:`orderflow_client.decisions.evaluate` with the last print and acted on
  through the bot's own order path: an exit sells with ``TradingBot.execute_trade(…, "sell", …)`` (reason
  ``order_flow_alert: …`` in the bot's trade record) or ``TradingOrchestrator._execute_exit_order(…, "Order Flow", …)``;
  a tighter stop is set on a valid tick (``update_position`` / the trade record's ``stop_loss``); each decision carried
  out is logged and recorded on the bus for the dashboards. An exit the bot could not place raises, so the
  recommendation is retried and, after ``max_attempts``, parked with a status;
- :class:`OrderFlowDetector` answers the bot's own never-wired order-flow API (``should_trigger_exit``,
  ``monitor_active_positions``, ``health_check``) from orderflow's streams, with the bot's ``OrderFlowAlert`` type.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from orderflow_client import logs
from orderflow_client.decisions import Decision, evaluate, log_decision
from orderflow_client.positions import Position
from orderflow_client.prices import format_price, price_from_any
from orderflow_client.threaded import OrderFlowClient
from orderflow_client.wire import ExitRecommendation, OrderFlowAlert

log = logs.get_logger("orderflow_client.robinhood")

Holding = tuple[int, Any, Any]
"""A position as the bot holds it: (shares, entry price, stop loss or None), prices in the bot's own types."""


class ExitNotPlaced(RuntimeError):
    """The bot did not place the exit (not running, or its broker refused): the recommendation is retried."""


class NoLastPrice(RuntimeError):
    """No print of the symbol on orderflow's stream yet: the decision waits (retried)."""


def bot_alert(alert: OrderFlowAlert, alert_class: type | None = None) -> Any:
    """orderflow's alert as the bot's own ``trading_bot.order_flow.OrderFlowAlert``: ``Decimal`` price, aware UTC
    ``datetime``, ``None`` where the field does not apply (price and size of a red burst, ratio of a large seller)."""
    if alert_class is None:
        from trading_bot.order_flow.data_models import (  # type: ignore[import-not-found]  # the bot's own package
            OrderFlowAlert as bot_alert_class,
        )
    else:
        bot_alert_class = alert_class
    large = alert.alert_type == "large_seller"
    return bot_alert_class(
        symbol=alert.symbol,
        alert_type=alert.alert_type,
        severity=alert.severity,
        order_size=alert.order_size if large else None,
        price_level=Decimal(format_price(alert.price_level)) if large else None,
        volume_ratio=None if large else alert.volume_ratio,
        timestamp_utc=datetime.fromtimestamp(alert.ts_event / 1e9, tz=UTC),
    )


class PositionSync:
    """Mirrors the bot's positions into orderflow's registry: a ``snapshot()`` of ``{symbol: (shares, entry, stop)}``
    is compared with the last one every ``interval`` seconds (in its own thread) and the differences registered."""

    def __init__(
        self, client: OrderFlowClient, snapshot: Callable[[], dict[str, Holding]], interval: float = 1.0
    ) -> None:
        self.client = client
        self.snapshot = snapshot
        self.interval = interval
        self._known: dict[str, Holding] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync(self) -> tuple[list[str], list[str]]:
        """Register what changed since the last call; returns (opened or changed, closed) symbols."""
        current = self.snapshot()
        opened = [symbol for symbol, holding in current.items() if self._known.get(symbol) != holding]
        closed = [symbol for symbol in self._known if symbol not in current]
        for symbol in opened:
            shares, entry, stop = current[symbol]
            try:
                self.client.open_position(
                    symbol,
                    quantity=int(shares),
                    entry_price=_price(entry),
                    stop_loss=_stop_or_none(shares, entry, stop),
                )
            except (TypeError, ValueError) as error:
                log.error(
                    "order_flow.position_not_registered", code="position_invalid", symbol=symbol, error=str(error)
                )
                continue
            self._known[symbol] = current[symbol]
        for symbol in closed:
            self.client.close_position(symbol)
            del self._known[symbol]
        if opened or closed:
            log.info("order_flow.positions_synced", opened=opened, closed=closed, source="bot_adapter")
        return opened, closed

    def start(self) -> PositionSync:
        self.sync()
        self._thread = threading.Thread(target=self._run, name="orderflow-position-sync", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sync()
            except Exception as error:
                log.warning(
                    "order_flow.position_sync_failed",
                    error=f"{type(error).__name__}: {str(error)[:200]}",
                    source="bot_adapter",
                )


def _price(value: Any) -> Any:
    """The bot's prices are Decimal (TradingBot) or float (the orchestrator); an int there means dollars."""
    return Decimal(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _stop_or_none(shares: Any, entry: Any, stop: Any) -> Any:
    """The stop if the registry can take it (below a long's entry, above a short's), else None: a trailed stop
    past the entry is the bot's business and must not stop the symbol being monitored."""
    if stop in (None, 0):
        return None
    entry_price, stop_price = price_from_any(_price(entry)), price_from_any(_price(stop))
    if (int(shares) > 0 and stop_price >= entry_price) or (int(shares) < 0 and stop_price <= entry_price):
        return None
    return _price(stop)


class _Adapter:
    """What both bots share: judge a recommendation against the bot's holding with the last print."""

    def __init__(self, client: OrderFlowClient) -> None:
        self.client = client

    def holdings(self) -> dict[str, Holding]:
        raise NotImplementedError

    def carry_out(self, recommendation: ExitRecommendation, holding: Holding, decision: Decision, last: int) -> None:
        raise NotImplementedError

    def on_exit(self, recommendation: ExitRecommendation) -> None:
        """Decide, carry it out, then log and record it (not before: a failed attempt is retried, not decided twice)."""
        decided = self.decide(recommendation)
        if decided is None:
            return
        holding, decision, last, position = decided
        self.carry_out(recommendation, holding, decision, last)
        log_decision(recommendation, position, last, decision)
        self.client.record_decision(recommendation.id, decision, last_price=last)

    def decide(self, recommendation: ExitRecommendation) -> tuple[Holding, Decision, int, Position] | None:
        """The bot's holding, the decision, the last print and the position as orderflow sees it; None when the bot
        holds nothing."""
        holding = self.holdings().get(recommendation.symbol)
        if holding is None:
            log.info(
                "order_flow.recommendation_ignored",
                id=recommendation.id,
                symbol=recommendation.symbol,
                reason="the bot holds no position",
                source="bot_adapter",
            )
            return None
        last = self.client.last_price(recommendation.symbol)
        if last is None:
            raise NoLastPrice(f"no print of {recommendation.symbol} on orderflow's stream yet")
        shares, entry, stop = holding
        stop_price = price_from_any(_price(stop)) if stop not in (None, 0) else 0
        position = Position(
            symbol=recommendation.symbol,
            quantity=int(shares),
            entry_price=price_from_any(_price(entry)),
            stop_loss=stop_price,
        )
        return holding, evaluate(recommendation, position, last), last, position


class TradingBotAdapter(_Adapter):
    """``TradingBot``: positions from ``bot.positions``; exits through ``execute_trade``; stops through
    ``update_position``.
    With ``loop`` (the bot's running event loop) every action runs on that loop, between the bot's own steps."""

    def __init__(self, bot: Any, client: OrderFlowClient, loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(client)
        self.bot = bot
        self.loop = loop

    def holdings(self) -> dict[str, Holding]:
        return {
            symbol: (p["shares"], p["entry_price"], p.get("stop_loss"))
            for symbol, p in dict(self.bot.positions).items()
        }

    def carry_out(self, recommendation: ExitRecommendation, holding: Holding, decision: Decision, last: int) -> None:
        if self.loop is not None:

            async def act() -> None:
                self._place(recommendation, holding, decision, last)

            asyncio.run_coroutine_threadsafe(act(), self.loop).result(60)
        else:
            self._place(recommendation, holding, decision, last)

    def _place(self, recommendation: ExitRecommendation, holding: Holding, decision: Decision, last: int) -> None:
        shares, entry, _stop = holding
        symbol = recommendation.symbol
        if decision.action == "exit":
            if not self.bot.is_running:
                raise ExitNotPlaced(f"TradingBot is not running: cannot sell {symbol}")
            price = Decimal(format_price(last))
            # execute_trade says nothing when its safety checks block a trade: ask them first, so a blocked exit is
            # retried (and parked with a status after max_attempts), never taken for done
            verdict = self.bot.safety_checks.validate_trade(
                symbol=symbol,
                action="SELL",
                quantity=int(shares),
                price=float(price),
                current_buying_power=self.bot.get_buying_power(),
            )
            if not verdict.is_safe:
                raise ExitNotPlaced(f"TradingBot's safety checks blocked selling {symbol}: {verdict.reason}")
            self.bot.execute_trade(
                symbol, "sell", int(shares), price, f"order_flow_alert: {decision.reasons[0]} [{recommendation.id}]"
            )
            self.bot.positions.pop(symbol, None)  # as the bot's own stop-loss path does once it has sold
        elif decision.action == "tighten_stop":
            self.bot.update_position(symbol, shares, entry, Decimal(format_price(decision.new_stop)))


class OrchestratorAdapter(_Adapter):
    """``TradingOrchestrator``: positions from ``daily_trades``; exits through ``_execute_exit_order`` (which only
    drops the trade from ``daily_trades`` when the broker took the order: anything else is retried)."""

    def __init__(self, orchestrator: Any, client: OrderFlowClient) -> None:
        super().__init__(client)
        self.orchestrator = orchestrator
        self._lock = threading.Lock()

    def holdings(self) -> dict[str, Holding]:
        return {
            trade["symbol"]: (trade["shares"], trade["entry"], trade.get("stop_loss"))
            for trade in list(self.orchestrator.daily_trades)
        }

    def carry_out(self, recommendation: ExitRecommendation, holding: Holding, decision: Decision, last: int) -> None:
        shares, entry, _stop = holding
        symbol = recommendation.symbol
        with self._lock:
            if decision.action == "exit":
                price = float(format_price(last))
                profit = (price - float(entry)) * float(shares)
                self.orchestrator._execute_exit_order(
                    symbol, float(shares), price, "Order Flow", profit, decision.unrealised_pnl_percent
                )
                if any(trade["symbol"] == symbol for trade in self.orchestrator.daily_trades):
                    raise ExitNotPlaced(f"the orchestrator's exit order for {symbol} was not placed (see its log)")
            elif decision.action == "tighten_stop":
                for trade in self.orchestrator.daily_trades:
                    if trade["symbol"] == symbol:
                        trade["stop_loss"] = float(format_price(decision.new_stop))


class OrderFlowDetector:
    """The bot's own order-flow API (``trading_bot.order_flow.OrderFlowDetector``), answered from orderflow's
    streams."""

    def __init__(
        self, client: OrderFlowClient, alert_window_seconds: float = 120.0, alert_class: type | None = None
    ) -> None:
        self.client = client
        self.alert_window_seconds = alert_window_seconds
        self.alert_class = alert_class
        self.alert_history: list[Any] = []

    def should_trigger_exit(self, symbol: str | None = None) -> bool:
        """True when orderflow recommended an exit (of ``symbol``, or of any symbol) within the alert window."""
        return bool(self.client.recent("exits", self.alert_window_seconds, symbol))

    def monitor_active_positions(self, symbols: list[str]) -> dict[str, list[Any]]:
        """The alerts of the alert window for each of ``symbols`` (the bot's ``OrderFlowAlert``); kept in
        ``alert_history``."""
        alerts = self.client.recent("alerts", self.alert_window_seconds)
        found = {
            symbol: [bot_alert(alert, self.alert_class) for alert in alerts if alert.symbol == symbol]
            for symbol in symbols
        }
        for symbol_alerts in found.values():
            for alert in symbol_alerts:
                if alert not in self.alert_history:
                    self.alert_history.append(alert)
        return found

    def health_check(self) -> dict[str, Any]:
        """``status`` ok/degraded, the last alert, and whether orderflow (Redis, and monitoring of held symbols)
        answers."""
        dependencies = {"orderflow_redis": "unknown", "orderflow_monitoring": "unknown"}
        status: dict[str, Any] = {
            "status": "ok",
            "timestamp_utc": datetime.now(UTC).isoformat(),
            "last_alert_count": len(self.alert_history),
            "last_alert_timestamp": self.alert_history[-1].timestamp_utc.isoformat() if self.alert_history else None,
            "dependencies": dependencies,
        }
        try:
            dependencies["orderflow_redis"] = "ok" if self.client.ping() else "unreachable"
        except Exception as error:
            dependencies["orderflow_redis"] = f"unreachable: {type(error).__name__}"
        unmonitored = sorted(self.client.client.stats.unmonitored) if self.client.client is not None else []
        dependencies["orderflow_monitoring"] = f"unmonitored: {', '.join(unmonitored)}" if unmonitored else "ok"
        if dependencies["orderflow_redis"] != "ok" or unmonitored or not self.client.running:
            status["status"] = "degraded"
        return status


class Attached(OrderFlowClient):
    """An :class:`OrderFlowClient` wired to a bot: its position sync stops with it."""

    sync: PositionSync | None = None

    def stop(self, timeout: float = 10.0) -> None:
        if self.sync is not None:
            self.sync.stop()
        super().stop(timeout)


def _attach(
    adapter_factory: Callable[[OrderFlowClient], _Adapter],
    redis_url: str,
    name: str,
    sync_seconds: float,
    **client_options: Any,
) -> Attached:
    holder: dict[str, _Adapter] = {}
    client = Attached(
        redis_url,
        name=name,
        on_exit=lambda recommendation: holder["adapter"].on_exit(recommendation),
        held_symbols=lambda: set(holder["adapter"].holdings()),
        **client_options,
    )
    holder["adapter"] = adapter = adapter_factory(client)
    client.start()
    client.sync = PositionSync(client, adapter.holdings, sync_seconds).start()
    return client


def attach_trading_bot(
    bot: Any,
    redis_url: str,
    *,
    name: str,
    loop: asyncio.AbstractEventLoop | None = None,
    sync_seconds: float = 1.0,
    **client_options: Any,
) -> Attached:
    """Start orderflow for a ``TradingBot``: positions mirrored, recommendations acted on through its own order path."""
    return _attach(lambda client: TradingBotAdapter(bot, client, loop), redis_url, name, sync_seconds, **client_options)


def attach_orchestrator(
    orchestrator: Any, redis_url: str, *, name: str, sync_seconds: float = 1.0, **client_options: Any
) -> Attached:
    """Start orderflow for a ``TradingOrchestrator`` (threads): the same, through ``_execute_exit_order``."""
    return _attach(
        lambda client: OrchestratorAdapter(orchestrator, client), redis_url, name, sync_seconds, **client_options
    )
