"""``orderflow risk-manager``: a stand-in bot that follows the exit recommendations of the open positions.

It reads the position registry (again every second, so a position opened or closed while it runs is followed),
receives recommendations through :class:`orderflow_client.risk.RiskManagerClient` (opted into every scope and
action: the policy decides; each handled once per bot name, across restarts; a market-scope one once for each held
position it names), decides with the default :class:`orderflow_client.exit_policy.ExitPolicy` (a stock's own exit:
exit; the market's: tighten the stop under the bid; a watch: ignore), logs the decision
(``order_flow.exit_signal_triggered``) and records it on the bus for the dashboards
(``orderflow:riskmanager:<name>:decision:<id>``, ``<id>@<symbol>`` for a market-scope one); ``say`` gets one line
per decision, e.g. ``AAPL: exit (exit AAPL)``. A stand-in: it places no order and moves no stop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from orderflow_client.bus.calls import OUTAGE_ERRORS
from orderflow_client.bus.connection import Bus
from orderflow_client.decisions import carried_out, last_bid_price, last_trade_price, log_decision, record_decision
from orderflow_client.exit_policy import ExitPolicy
from orderflow_client.logs import get_logger
from orderflow_client.positions import PositionRegistry
from orderflow_client.risk import ACTIONS, SCOPES, ClientStats, RiskManagerClient
from orderflow_client.wire import ExitRecommendation

HELD_REFRESH_SECONDS = 1.0
"""How often the set of held symbols is read again from the registry."""

log = get_logger("risk_manager")


async def run_stand_in_bot(
    bus: Bus,
    stop: asyncio.Event,
    *,
    name: str,
    signing_keys: dict[str, bytes] | None,
    max_age_seconds: float,
    say: Callable[[str], None],
) -> ClientStats:
    """Follow recommendations until ``stop`` is set; logs ``order_flow.risk_manager_started`` and
    ``order_flow.risk_manager_stopped``. ``signing_keys`` (key id → key) None accepts unsigned ones."""
    registry = PositionRegistry(bus)
    policy = ExitPolicy()
    held: set[str] = set(await registry.symbols())

    async def on_exit(recommendation: ExitRecommendation) -> None:
        positions = {position.symbol: position for position in await registry.list()}
        position = positions.get(recommendation.symbol)
        price = await last_trade_price(bus, recommendation.symbol)
        if position is None or price is None:
            log.warning(
                "order_flow.recommendation_ignored",
                id=recommendation.id,
                symbol=recommendation.symbol,
                reason="no open position" if position is None else "no last price",
            )
            return
        for chosen in policy.decide(recommendation, {position.symbol}):
            new_stop = 0
            if chosen.choice == "tighten_stops":
                bid = await last_bid_price(bus, position.symbol) or price
                new_stop = policy.tightened_stop(bid, position.stop_loss, position.quantity)
            decision = carried_out(chosen, position, price, new_stop)
            log_decision(recommendation, position, price, decision)
            await record_decision(bus, name, chosen.position_id, decision, last_price=price)
            say(f"{position.symbol}: {decision.action} ({decision.reasons[0]})")

    async def refresh_held() -> None:
        while not stop.is_set():
            try:
                symbols = await registry.symbols()
            except OUTAGE_ERRORS:  # Redis away: keep the positions last read (the client reports the outage)
                symbols = list(held)
            held.clear()
            held.update(symbols)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=HELD_REFRESH_SECONDS)

    client = RiskManagerClient(
        bus,
        name=name,
        held_symbols=lambda: held,
        signing_keys=signing_keys,
        max_age_seconds=max_age_seconds,
        scopes=SCOPES,  # every scope and action: the policy decides each (a watch is ignored, and recorded)
        actions=ACTIONS,
    )
    log.info("order_flow.risk_manager_started", name=name, bus=bus.description, held=sorted(held))
    refresher = asyncio.ensure_future(refresh_held())
    try:
        stats = await client.run(stop, on_exit=on_exit)
    finally:
        await refresher
    log.info(
        "order_flow.risk_manager_stopped",
        handled=stats.handled,
        duplicates=stats.duplicates,
        unmonitored=sorted(stats.unmonitored),
    )
    return stats
