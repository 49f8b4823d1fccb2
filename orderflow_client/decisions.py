"""The reference evaluator a bot may use on an exit recommendation, and the log line of its decision.

    from orderflow_client.decisions import evaluate, last_trade_price, log_decision

    last = await last_trade_price(bus, recommendation.symbol)          # nano-dollars, or None
    decision = evaluate(recommendation, position, last_price=last)      # exit, tighten_stop or hold
    log_decision(recommendation, position, last, decision)             # order_flow.exit_signal_triggered
    await record_decision(bus, "my-bot", recommendation.id, decision, last_price=last)  # for the dashboards

With an :class:`~orderflow_client.exit_policy.ExitPolicy` instead, per position it chose for::

    bid = await last_bid_price(bus, chosen.symbol)                      # nano-dollars: the newest bid, or last print
    stop = policy.tightened_stop(bid, position.stop_loss, position.quantity) if chosen.choice == "tighten_stops" else 0
    decision = carried_out(chosen, position, last, stop)                # exit, tighten_stop, hold or ignore
    await record_decision(bus, "my-bot", chosen.position_id, decision, last_price=last)

The bot decides; orderflow only recommends (the delivery is :class:`orderflow_client.risk.RiskManagerClient`'s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from orderflow_client import logs
from orderflow_client.bus.connection import Bus
from orderflow_client.bus.decision_records import DecisionRecord, DecisionRecords
from orderflow_client.errors import WireDecodeError
from orderflow_client.exit_policy import PolicyDecision
from orderflow_client.positions import Position
from orderflow_client.prices import format_price, price_to_float, round_to_tick
from orderflow_client.risk import HANDLED_SECONDS
from orderflow_client.timestamps import now_ns
from orderflow_client.wire import BookUpdate, ExitRecommendation, Quote, Trade, decode, unbatched

log = logs.get_logger(__name__)

Action = Literal["exit", "tighten_stop", "hold", "ignore"]


@dataclass(frozen=True)
class Decision:
    """What the evaluator recommends. Prices in nano-dollars; P&L in dollars."""

    action: Action
    reasons: tuple[str, ...]
    unrealised_pnl: float
    unrealised_pnl_percent: float
    distance_to_stop_percent: float | None
    new_stop: int = 0


def _standing(position: Position, last_price: int) -> tuple[float, float, float | None]:
    """Unrealised P&L (dollars, percent) and the distance to the stop (percent of the price; None: no stop)."""
    quantity = position.quantity
    pnl = price_to_float(last_price - position.entry_price) * quantity
    pnl_percent = (last_price - position.entry_price) / position.entry_price * 100 * (1 if quantity > 0 else -1)
    distance = (
        None
        if not position.stop_loss
        else (last_price - position.stop_loss) / last_price * 100 * (1 if quantity > 0 else -1)
    )
    return pnl, pnl_percent, distance


def carried_out(chosen: PolicyDecision, position: Position, last_price: int, new_stop: int = 0) -> Decision:
    """What an :class:`~orderflow_client.exit_policy.ExitPolicy` choice came to on ``position``, as a
    :class:`Decision` for :func:`log_decision` and :func:`record_decision`: ``exit``; ``tighten_stop`` to
    ``new_stop`` (nano-dollars) when it is tighter than the stop; ``hold`` when the stop already was; ``ignore``.
    Reasons: the headline, the policy's reason, the P&L and the stop."""
    pnl, pnl_percent, distance = _standing(position, last_price)
    standing = (
        f"unrealised P&L {pnl:+,.2f} USD ({pnl_percent:+.2f} %)",
        "no stop loss"
        if distance is None
        else f"{distance:.2f} % above the stop at {format_price(position.stop_loss)}",
    )
    if chosen.choice == "exit":
        return Decision("exit", (f"exit {chosen.symbol}", chosen.reason, *standing), pnl, pnl_percent, distance)
    if chosen.choice == "ignore":
        return Decision("ignore", (f"ignore ({chosen.action})", chosen.reason, *standing), pnl, pnl_percent, distance)
    if new_stop and new_stop != position.stop_loss:
        headline = f"tighten the stop to {format_price(new_stop)}"
        return Decision("tighten_stop", (headline, chosen.reason, *standing), pnl, pnl_percent, distance, new_stop)
    headline = f"hold: the stop at {format_price(position.stop_loss)} is already as tight"
    return Decision("hold", (headline, chosen.reason, *standing), pnl, pnl_percent, distance)


def evaluate(recommendation: ExitRecommendation, position: Position, last_price: int) -> Decision:
    """Reference policy: exit on panic selling or when the stop is near;
    tighten the stop on institutional selling otherwise.

    * a red burst (critical), or any recommendation while in profit → **exit**
      (protect the gain before the drop);
    * losing and within 1 % of the stop → **exit** (the stop is about to fill,
      likely worse);
    * large sellers with room to the stop → **tighten_stop** to 0.5 % under
      the last price, rounded down to a valid tick (a penny at $1 and above,
      $0.0001 below: brokers refuse sub-penny stops), never lower than the
      current stop;
    * otherwise → **hold**.
    """
    quantity = position.quantity
    pnl, pnl_percent, distance = _standing(position, last_price)
    evidence = f"order flow: {recommendation.reasoning}"
    pnl_text = f"unrealised P&L {pnl:+,.2f} USD ({pnl_percent:+.2f} %)"
    stop_text = (
        "no stop loss" if distance is None else f"{distance:.2f} % above the stop at {format_price(position.stop_loss)}"
    )
    reasons = [evidence, pnl_text, stop_text]
    if recommendation.trigger == "red_burst" or pnl > 0:
        why = "panic selling (red burst)" if recommendation.trigger == "red_burst" else "protect the gain"
        return Decision("exit", (f"exit: {why}", *reasons), pnl, pnl_percent, distance)
    if distance is not None and distance <= 1.0:
        return Decision(
            "exit", ("exit: the stop is within 1 % and sellers are pressing", *reasons), pnl, pnl_percent, distance
        )
    if quantity > 0:
        tightened = max(
            position.stop_loss, round_to_tick(last_price - last_price // 200, down=True)
        )  # a price a broker takes
        if tightened > position.stop_loss:
            return Decision(
                "tighten_stop",
                (f"tighten the stop to {format_price(tightened)}", *reasons),
                pnl,
                pnl_percent,
                distance,
                tightened,
            )
    return Decision("hold", ("hold: no rule to act on", *reasons), pnl, pnl_percent, distance)


async def last_trade_price(bus: Bus, symbol: str, *, look_back: int = 500) -> int | None:
    """The last print of ``symbol`` on its market stream (nano-dollars), None when none of the last ``look_back``
    entries is a print."""
    for entry in await bus.read_range_reverse(bus.keys.market(symbol), count=look_back):
        try:
            message = decode(entry.payload)
        except WireDecodeError:
            continue
        for event in reversed(unbatched(message)):  # an entry may hold several events, oldest first
            if isinstance(event, Trade):
                return event.price
    return None


async def last_bid_price(bus: Bus, symbol: str, *, look_back: int = 500) -> int | None:
    """The bid of ``symbol``'s newest quote or book update among the last ``look_back`` entries of its market
    stream (nano-dollars), else its last print; None when there is neither. What a tightened stop is set under."""
    for entry in await bus.read_range_reverse(bus.keys.market(symbol), count=look_back):
        try:
            message = decode(entry.payload)
        except WireDecodeError:
            continue
        for event in reversed(unbatched(message)):
            if isinstance(event, Quote) and event.bid_price > 0:
                return event.bid_price
            if isinstance(event, BookUpdate) and event.bids:
                return event.bids[0][0]
    return await last_trade_price(bus, symbol, look_back=look_back)


def log_decision(recommendation: ExitRecommendation, position: Position, last_price: int, decision: Decision) -> None:
    """``order_flow.exit_signal_triggered`` with the decision; ``exit_reason`` is
    ``order_flow_alert`` where it exits, so the log queries of docs/operations.md work."""
    fields: dict[str, Any] = {
        "id": recommendation.id,
        "symbol": recommendation.symbol,
        "trigger": recommendation.trigger,
        "scope": recommendation.scope,
        "recommended": recommendation.action,
        "decision": decision.action,
        "reasons": list(decision.reasons),
        "quantity": position.quantity,
        "entry_price": format_price(position.entry_price),
        "last_price": format_price(last_price),
        "stop_loss": format_price(position.stop_loss) if position.stop_loss else None,
        "unrealised_pnl": round(decision.unrealised_pnl, 2),
        "unrealised_pnl_percent": round(decision.unrealised_pnl_percent, 3),
        "alert_ids": list(recommendation.alert_ids),
        "source": "risk_manager",
    }
    if decision.action == "exit":
        fields["exit_reason"] = "order_flow_alert"
    if decision.new_stop:
        fields["new_stop"] = format_price(decision.new_stop)
    log.warning(logs.EXIT_SIGNAL_TRIGGERED, **fields)


async def record_decision(
    bus: Bus,
    bot_name: str,
    recommendation_id: str,
    decision: Decision | DecisionRecord,
    *,
    last_price: int = 0,
    seconds: int = HANDLED_SECONDS,
) -> bool:
    """Record what ``bot_name`` decided on a recommendation at ``orderflow:riskmanager:<bot>:decision:<id>``, kept as
    long as its handled mark (30 days), for the dashboards to show (:func:`~orderflow_client.bus.decision_records.
    read_decisions`). Best effort: the decision stands whether or not Redis takes it; False, logged as
    ``order_flow.decision_not_recorded``, when it did not."""
    if isinstance(decision, DecisionRecord):  # a bot's own: when it is recorded unless it says
        record = decision if decision.decided_ns else msgspec.structs.replace(decision, decided_ns=now_ns())
    else:
        record = DecisionRecord(
            action=decision.action,
            reasons=decision.reasons,
            new_stop=decision.new_stop,
            last_price=last_price,
            decided_ns=now_ns(),
        )
    try:
        await DecisionRecords(bus, bot_name).record(recommendation_id, record, seconds)
    except Exception as error:  # an outage, or a Redis user without the right: the marks still say handled
        log.warning(
            "order_flow.decision_not_recorded",
            id=recommendation_id,
            bot=bot_name,
            decision=record.action,
            error=f"{type(error).__name__}: {str(error)[:200]}",
            source="risk_manager",
        )
        return False
    return True
