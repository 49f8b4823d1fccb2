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
- **exit recommendations** of every scope and action (the client opts into all; ``scopes=``/``actions=``
  narrow it) are decided per held position by the bot owner's
  :class:`~orderflow_client.exit_policy.ExitPolicy` (``policy=``; by default a symbol-scope exit sells, a
  market-scope one tightens the stops of the positions it names, a watch is ignored) and carried out through the
  bot's own paths: an exit sells with ``TradingBot.execute_trade(…, "sell", …)`` (reason ``order_flow_alert: …`` in
  the bot's trade record) or ``TradingOrchestrator._execute_exit_order(…, "Order Flow", …)``; a tighter stop (never
  a lower one, on a valid tick, ``tighten_to_pct`` under the bid) goes where the bot's own stop check reads it
  (``update_position`` / the trade record's ``stop_loss``); each decision is logged and recorded on the bus under
  its position id for the dashboards. An exit the bot could not place raises, so it is retried and, after
  ``max_attempts``, parked with a status.

The bot's own order-flow API: :class:`orderflow_client.robinhood_detector.OrderFlowDetector`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from orderflow_client import logs
from orderflow_client.decisions import Decision, carried_out, log_decision
from orderflow_client.exit_policy import ExitPolicy, PolicyDecision, for_position
from orderflow_client.positions import Position
from orderflow_client.prices import format_price, price_from_any
from orderflow_client.risk import ACTIONS, SCOPES
from orderflow_client.threaded import OrderFlowClient
from orderflow_client.wire import ExitRecommendation

log = logs.get_logger("orderflow_client.robinhood")

Holding = tuple[int, Any, Any]
"""A position as the bot holds it: (shares, entry price, stop loss or None), prices in the bot's own types."""


class ExitNotPlaced(RuntimeError):
    """The bot did not place the exit (not running, or its broker refused): the recommendation is retried."""


class NoLastPrice(RuntimeError):
    """No print of the symbol on orderflow's stream yet: the decision waits (retried)."""


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
    """What both bots share: the policy's decision per held position, carried out through the bot's own path."""

    def __init__(self, client: OrderFlowClient, policy: ExitPolicy | None = None) -> None:
        self.client = client
        self.policy = policy or ExitPolicy()

    def holdings(self) -> dict[str, Holding]:
        raise NotImplementedError

    def sell(self, recommendation: ExitRecommendation, holding: Holding, decision: Decision, last: int) -> None:
        raise NotImplementedError

    def set_stop(self, symbol: str, holding: Holding, stop: int) -> None:
        raise NotImplementedError

    def on_exit(self, recommendation: ExitRecommendation) -> None:
        """The policy's decision for each held position the recommendation names (one: the client hands a market
        one over per position), carried out, then logged and recorded under its position id (not before: a failed
        attempt is retried, not decided twice)."""
        holdings = self.holdings()
        chosen = self.policy.decide(recommendation, holdings)
        if not chosen:
            log.info(
                "order_flow.recommendation_ignored",
                id=recommendation.id,
                symbol=recommendation.symbol,
                reason="the bot holds no position it names",
                source="bot_adapter",
            )
        for choice in chosen:
            self.carry_out(recommendation, choice, holdings[choice.symbol])

    def carry_out(self, recommendation: ExitRecommendation, choice: PolicyDecision, holding: Holding) -> None:
        symbol = choice.symbol
        if recommendation.scope == "market":  # as the client hands it over: about this position (logs, trade record)
            recommendation = for_position(recommendation, symbol)
        last = self.client.last_price(symbol)
        if last is None:
            raise NoLastPrice(f"no print of {symbol} on orderflow's stream yet")
        shares, entry, stop = holding
        position = Position(
            symbol=symbol,
            quantity=int(shares),
            entry_price=price_from_any(_price(entry)),
            stop_loss=price_from_any(_price(stop)) if stop not in (None, 0) else 0,
        )
        new_stop = 0
        if choice.choice == "tighten_stops":
            new_stop = self.policy.tightened_stop(
                self.client.bid_price(symbol) or last, position.stop_loss, int(shares)
            )
        decision = carried_out(choice, position, last, new_stop)
        if decision.action == "exit":
            self.sell(recommendation, holding, decision, last)
        elif decision.action == "tighten_stop":
            self.set_stop(symbol, holding, decision.new_stop)
        log_decision(recommendation, position, last, decision)
        self.client.record_decision(choice.position_id, decision, last_price=last)


class TradingBotAdapter(_Adapter):
    """``TradingBot``: positions from ``bot.positions``; exits through ``execute_trade``; stops through
    ``update_position`` (what its ``check_stop_loss`` sells on). With ``loop`` (the bot's running event loop) every
    action runs on that loop, between the bot's own steps."""

    def __init__(
        self,
        bot: Any,
        client: OrderFlowClient,
        loop: asyncio.AbstractEventLoop | None = None,
        policy: ExitPolicy | None = None,
    ) -> None:
        super().__init__(client, policy)
        self.bot = bot
        self.loop = loop

    def holdings(self) -> dict[str, Holding]:
        return {
            symbol: (p["shares"], p["entry_price"], p.get("stop_loss"))
            for symbol, p in dict(self.bot.positions).items()
        }

    def _on_loop(self, action: Callable[[], None]) -> None:
        if self.loop is None:
            action()
            return

        async def act() -> None:
            action()

        asyncio.run_coroutine_threadsafe(act(), self.loop).result(60)

    def sell(self, recommendation: ExitRecommendation, holding: Holding, decision: Decision, last: int) -> None:
        self._on_loop(lambda: self._place_sale(recommendation, holding, decision, last))

    def set_stop(self, symbol: str, holding: Holding, stop: int) -> None:
        shares, entry, _stop = holding
        self._on_loop(lambda: self.bot.update_position(symbol, shares, entry, Decimal(format_price(stop))))

    def _place_sale(self, recommendation: ExitRecommendation, holding: Holding, decision: Decision, last: int) -> None:
        shares = holding[0]
        symbol = recommendation.symbol
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


class OrchestratorAdapter(_Adapter):
    """``TradingOrchestrator``: positions from ``daily_trades``; exits through ``_execute_exit_order`` (which only
    drops the trade from ``daily_trades`` when the broker took the order: anything else is retried); stops in the
    trade record's ``stop_loss`` (what its monitoring loop sells on)."""

    def __init__(self, orchestrator: Any, client: OrderFlowClient, policy: ExitPolicy | None = None) -> None:
        super().__init__(client, policy)
        self.orchestrator = orchestrator
        self._lock = threading.Lock()

    def holdings(self) -> dict[str, Holding]:
        return {
            trade["symbol"]: (trade["shares"], trade["entry"], trade.get("stop_loss"))
            for trade in list(self.orchestrator.daily_trades)
        }

    def sell(self, recommendation: ExitRecommendation, holding: Holding, decision: Decision, last: int) -> None:
        shares, entry, _stop = holding
        symbol = recommendation.symbol
        with self._lock:
            price = float(format_price(last))
            profit = (price - float(entry)) * float(shares)
            self.orchestrator._execute_exit_order(
                symbol, float(shares), price, "Order Flow", profit, decision.unrealised_pnl_percent
            )
            if any(trade["symbol"] == symbol for trade in self.orchestrator.daily_trades):
                raise ExitNotPlaced(f"the orchestrator's exit order for {symbol} was not placed (see its log)")

    def set_stop(self, symbol: str, holding: Holding, stop: int) -> None:
        with self._lock:
            for trade in self.orchestrator.daily_trades:
                if trade["symbol"] == symbol:
                    trade["stop_loss"] = float(format_price(stop))


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
    client_options.setdefault("scopes", SCOPES)  # every scope and action: the adapter's policy decides each
    client_options.setdefault("actions", ACTIONS)
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
    policy: ExitPolicy | None = None,
    **client_options: Any,
) -> Attached:
    """Start orderflow for a ``TradingBot``: positions mirrored, recommendations acted on through its own order path
    as ``policy`` says (:class:`~orderflow_client.exit_policy.ExitPolicy`'s defaults when None)."""
    return _attach(
        lambda client: TradingBotAdapter(bot, client, loop, policy), redis_url, name, sync_seconds, **client_options
    )


def attach_orchestrator(
    orchestrator: Any,
    redis_url: str,
    *,
    name: str,
    sync_seconds: float = 1.0,
    policy: ExitPolicy | None = None,
    **client_options: Any,
) -> Attached:
    """Start orderflow for a ``TradingOrchestrator`` (threads): the same, through ``_execute_exit_order``."""
    return _attach(
        lambda client: OrchestratorAdapter(orchestrator, client, policy),
        redis_url,
        name,
        sync_seconds,
        **client_options,
    )
