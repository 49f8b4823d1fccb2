"""Runs inside the bot's own virtualenv (its requirements plus orderflow's slim client): the bot's real
``TradingBot`` or ``TradingOrchestrator`` with orderflow attached, while tests/system/test_bot_adoption.py drives
orderflow's real processes (replay, detect) and a Redis restart. Only broker calls are stubbed (the orchestrator's
Alpaca ``TradingClient.submit_order``; TradingBot runs in its paper mode, which places no order).

    python tests/support/bot_adoption_scenario.py trading_bot|orchestrator      (REDIS_URL, ORDER_FLOW_KEY_PREFIX set)

Both run with orderflow's default :class:`~orderflow_client.exit_policy.ExitPolicy`: OUT's own sellers (a symbol-scope
exit) sell it; a market selloff naming TIGHT, AMZN and NVDA (not held) tightens the stops of TIGHT and AMZN and
touches nothing else.

Protocol on stdout (where the bot's own console log goes too): a line ``READY`` once the bot's positions are in
orderflow's registry; the test then restarts Redis, replays the market data and publishes the market selloff; the
script prints a line ``RESULT {json}`` of what happened and exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

from orderflow_client import guest_logging
from orderflow_client.robinhood import attach_orchestrator, attach_trading_bot
from orderflow_client.robinhood_detector import OrderFlowDetector

REDIS_URL = os.environ["REDIS_URL"]
PREFIX = os.environ["ORDER_FLOW_KEY_PREFIX"]
TIMEOUT = 90.0
HELD = {"OUT", "TIGHT", "AMZN"}  # two synthetic sessions (sellers; quiet), and Amazon on a real day (2012-06-21)
NAMED = ("TIGHT", "AMZN", "NVDA")  # the positions the market selloff names (NVDA is not held)


def zone_at_eight_in_the_morning() -> str:
    """A time zone where it is now between 8 and 9 am: TradingBot's own safety checks allow trades 7–10 am in
    its ``trading_timezone``, so the test sets that zone rather than stubbing the check."""
    hour = datetime.now(UTC).hour
    offset = (8 - hour) % 24
    offset = offset - 24 if offset > 14 else offset
    return "UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"  # Etc/ signs are inverted


def wait(condition, seconds: float = TIMEOUT) -> bool:
    """Whether ``condition()`` held within ``seconds``. Not tests.support.waiting.wait_for: this script runs in the
    bot's own virtualenv, where the ``tests`` package is not importable (nor pytest installed)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def market_decisions(orderflow) -> dict:
    """The market selloff's id and what the bot recorded for each position it names: position → (action, stop)."""
    selloffs = [item for item in orderflow.recent("exits", 3600) if item.scope == "market"]
    if not selloffs:
        return {}
    identifier = selloffs[-1].id
    found = orderflow.decisions([f"{identifier}@{symbol}" for symbol in NAMED])
    return {key.rsplit("@", 1)[1]: [record.action, record.new_stop] for key, record in found.items()}


def facade_report(orderflow) -> dict:
    detector = OrderFlowDetector(orderflow)
    alerts = detector.monitor_active_positions(["OUT", "TIGHT"])
    sample = alerts["OUT"][0] if alerts["OUT"] else None
    return {
        "should_trigger_exit": detector.should_trigger_exit("OUT"),
        "should_trigger_exit_other": detector.should_trigger_exit("NOPE"),
        "alerts": {symbol: len(found) for symbol, found in alerts.items()},
        "alert_class": type(sample).__module__ + "." + type(sample).__name__ if sample else None,
        "price_level_type": type(sample.price_level).__name__ if sample else None,
        "volume_ratio": sample.volume_ratio if sample else "missing",
        "aware": bool(sample and sample.timestamp_utc.tzinfo is not None),
        "health": detector.health_check()["status"],
    }


def bot_logging() -> None:
    """The bot's own logging, as its start-up sets it up (trading_bot.startup): logs/trading_bot.log and friends."""
    from trading_bot.logger import TradingLogger

    TradingLogger.setup(logs_dir=Path("logs"))


def trading_bot() -> dict:
    from trading_bot.bot import TradingBot

    bot_logging()
    bot = TradingBot(paper_trading=True, trading_timezone=zone_at_eight_in_the_morning())
    guest_logging(Path("logs/order_flow"))
    bot.update_position("OUT", 100, Decimal("49.00"), Decimal("48.00"))  # in profit at ~49.6: protect the gain
    bot.update_position("TIGHT", 100, Decimal("50.00"), Decimal("45.00"))  # quiet; named by the market selloff
    bot.update_position("AMZN", 10, Decimal("220.00"), Decimal("215.00"))  # an ordinary day; named by the selloff
    result: dict = {}

    async def main() -> None:
        orderflow = attach_trading_bot(
            bot, REDIS_URL, name="robinhood", loop=asyncio.get_running_loop(), key_prefix=PREFIX, sync_seconds=0.2
        )
        try:
            await asyncio.to_thread(wait, lambda: {p.symbol for p in orderflow.positions()} == HELD)
            print("READY", flush=True)
            # the bot is not started yet: the exit cannot be placed, so it must be retried, not lost
            await asyncio.to_thread(wait, lambda: orderflow.client.stats.handler_failures >= 1)
            bot.start()
            done = await asyncio.to_thread(
                wait,
                lambda: (
                    "OUT" not in bot.positions
                    and bot.positions["TIGHT"]["stop_loss"] != Decimal("45.00")
                    and bot.positions["AMZN"]["stop_loss"] != Decimal("215.00")
                    and {p.symbol for p in orderflow.positions()} == {"TIGHT", "AMZN"}
                ),
            )
            stats = orderflow.client.stats
            result.update(
                done=done,
                positions=sorted(bot.positions),
                tightened=str(bot.positions["TIGHT"]["stop_loss"]),
                tightened_amzn=str(bot.positions["AMZN"]["stop_loss"]),
                market_decisions=await asyncio.to_thread(market_decisions, orderflow),
                registry=sorted(p.symbol for p in orderflow.positions()),
                handled=stats.handled,
                handler_failures=stats.handler_failures,
                parked=stats.parked,
                facade=await asyncio.to_thread(facade_report, orderflow),
            )
            bot.positions.pop("TIGHT")  # the bot closes the other itself (its own stop): the registry follows
            result["registry_after_own_close"] = await asyncio.to_thread(
                lambda: (
                    wait(lambda: [p.symbol for p in orderflow.positions()] == ["AMZN"], 10)
                    and [p.symbol for p in orderflow.positions()]
                )
            )
        finally:
            await asyncio.to_thread(orderflow.stop)

    asyncio.run(main())
    return result


def orchestrator() -> dict:
    from alpaca.trading.client import TradingClient
    from trading_bot.config import Config
    from trading_bot.orchestrator.trading_orchestrator import TradingOrchestrator

    submitted: list[tuple[str, float, str]] = []

    def submit_order(order_request):  # the broker call (Alpaca), stubbed: the first exit is rejected
        submitted.append((order_request.symbol, float(order_request.qty), str(order_request.side)))
        if len(submitted) == 1:
            raise RuntimeError("insufficient qty available for order (stub broker rejection)")
        return SimpleNamespace(id=f"order-{len(submitted)}", status="accepted")

    bot_logging()
    broker = TradingClient("PKTEST0000000000", "not-a-secret", paper=True)
    broker.submit_order = submit_order
    orchestrator = TradingOrchestrator(
        Config(alpaca_api_key="PKTEST0000000000", alpaca_secret_key="not-a-secret"), auth=broker, mode="live"
    )
    guest_logging(Path("logs/order_flow"))
    now = datetime.now().isoformat()
    orchestrator.daily_trades.append(
        {
            "symbol": "OUT",
            "entry": 49.0,
            "shares": 100,
            "stop_loss": 48.0,
            "target": 55.0,
            "timestamp": now,
            "order_id": "entry-1",
            "status": "filled",
        }
    )
    orchestrator.daily_trades.append(
        {
            "symbol": "TIGHT",
            "entry": 50.0,
            "shares": 100,
            "stop_loss": 45.0,
            "target": 55.0,
            "timestamp": now,
            "order_id": "entry-2",
            "status": "filled",
        }
    )
    orchestrator.daily_trades.append(
        {
            "symbol": "AMZN",
            "entry": 220.0,
            "shares": 10,
            "stop_loss": 215.0,
            "target": 240.0,
            "timestamp": now,
            "order_id": "entry-3",
            "status": "filled",
        }
    )
    with attach_orchestrator(
        orchestrator, REDIS_URL, name="orchestrator", key_prefix=PREFIX, sync_seconds=0.2
    ) as orderflow:
        wait(lambda: {p.symbol for p in orderflow.positions()} == HELD)
        print("READY", flush=True)
        done = wait(
            lambda: (
                not any(t["symbol"] == "OUT" for t in orchestrator.daily_trades)
                and next(t for t in orchestrator.daily_trades if t["symbol"] == "TIGHT")["stop_loss"] != 45.0
                and next(t for t in orchestrator.daily_trades if t["symbol"] == "AMZN")["stop_loss"] != 215.0
                and {p.symbol for p in orderflow.positions()} == {"TIGHT", "AMZN"}
            )
        )
        stats = orderflow.client.stats
        return {
            "done": done,
            "submitted": submitted,
            "trades": [t["symbol"] for t in orchestrator.daily_trades],
            "tightened": next(t for t in orchestrator.daily_trades if t["symbol"] == "TIGHT")["stop_loss"],
            "tightened_amzn": next(t for t in orchestrator.daily_trades if t["symbol"] == "AMZN")["stop_loss"],
            "market_decisions": market_decisions(orderflow),
            "handled": stats.handled,
            "handler_failures": stats.handler_failures,
            "parked": stats.parked,
            "registry": sorted(p.symbol for p in orderflow.positions()),
        }


if __name__ == "__main__":
    outcome = {"trading_bot": trading_bot, "orchestrator": orchestrator}[sys.argv[1]]()
    print("RESULT " + json.dumps(outcome, default=str), flush=True)
