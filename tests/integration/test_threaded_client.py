"""The threaded client a synchronous bot embeds, on a real Redis; orderflow's logging as a guest in a host process."""

from __future__ import annotations

import json
import logging
import time
from decimal import Decimal

import pytest
import structlog

from orderflow_client import OrderFlowClient, guest_logging
from orderflow_client.wire import ExitRecommendation, encode
from tests.support.waiting import wait_for

pytestmark = pytest.mark.redis


def _recommendation(number: int) -> ExitRecommendation:
    return ExitRecommendation(
        id=f"AAPL:exit:large_sellers:{number}",
        symbol="AAPL",
        trigger="large_sellers",
        ts_event=number,
        ts_recv=number,
        timestamp_utc="2026-11-24T15:00:00.000000000Z",
        alert_ids=("a",),
        reasoning="r",
    )


def test_a_threaded_bot_takes_deliveries_from_a_queue_and_a_failed_one_comes_back(redis_url, key_prefix):
    with OrderFlowClient(redis_url, name="threaded", callbacks="queue", key_prefix=key_prefix) as orderflow:
        position = orderflow.open_position("AAPL", quantity=200, entry_price=Decimal("187.43"), stop_loss=184.0)
        assert (position.entry_price, position.stop_loss) == (187_430_000_000, 184_000_000_000)
        assert [p.symbol for p in orderflow.positions()] == ["AAPL"]
        bus = orderflow._connected()
        orderflow._call(bus.client.xadd(bus.keys.exits, {"exit": encode(_recommendation(1))}))
        first = orderflow.deliveries.get(timeout=10)
        assert first.recommendation.id == "AAPL:exit:large_sellers:1"
        first.failed("the broker is closed")  # the bot could not act: delivered again after a backoff
        again = orderflow.deliveries.get(timeout=10)
        assert again.recommendation.id == first.recommendation.id
        again.done()
        wait_for(lambda: orderflow.client.stats.handled == 1, timeout=10, what="the delivery handled")
        orderflow._call(
            bus.client.xadd(bus.keys.exits, {"exit": encode(_recommendation(1))})
        )  # a redelivery: suppressed
        wait_for(lambda: orderflow.client.stats.duplicates == 1, timeout=10, what="the duplicate seen")
        assert orderflow.deliveries.empty()
        assert orderflow.close_position("AAPL") and orderflow.positions() == []
    assert not orderflow.running


def test_callbacks_run_in_the_clients_handler_thread_not_on_its_loop(redis_url, key_prefix):
    import threading

    seen: list[str] = []

    def on_exit(recommendation: ExitRecommendation) -> None:
        time.sleep(0.3)  # a slow broker call: must not stop the client reading
        seen.append(threading.current_thread().name)

    with OrderFlowClient(redis_url, name="slow", on_exit=on_exit, key_prefix=key_prefix) as orderflow:
        bus = orderflow._connected()
        for number in (1, 2):
            orderflow._call(bus.client.xadd(bus.keys.exits, {"exit": encode(_recommendation(number))}))
        wait_for(lambda: len(seen) == 2, timeout=10, what="two callbacks")
        assert orderflow.ping()
    assert seen == ["orderflow-slow-handler_0"] * 2

    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(
        1, thread_name_prefix="the-bots-own"
    ) as bots_thread:  # a thread the bot chose
        with OrderFlowClient(
            redis_url, name="chosen", on_exit=on_exit, key_prefix=key_prefix, executor=bots_thread
        ) as orderflow:
            bus = orderflow._connected()
            orderflow._call(bus.client.xadd(bus.keys.exits, {"exit": encode(_recommendation(3))}))
            wait_for(lambda: len(seen) == 3, timeout=10, what="the third callback")
        assert (
            bots_thread.submit(lambda: "still usable").result() == "still usable"
        )  # stopping the client left it alone
    assert seen[-1] == "the-bots-own_0"


def test_an_unreachable_redis_is_an_error_at_start_not_a_silent_thread():
    client = OrderFlowClient("redis://127.0.0.1:1/0", name="nowhere", on_exit=print)
    with pytest.raises(Exception, match=r"(?i)redis|connect"):
        client.start(timeout=60)
    assert not client.running


def test_guest_logging_keeps_the_hosts_handlers_and_writes_orderflows_file(tmp_path):
    """A bot that configured logging itself keeps every handler and line; orderflow's events go to its own JSONL file
    and, through the usual propagation, to the host's handlers as well."""
    from orderflow_client import logs

    host_file = tmp_path / "trading_bot.log"
    root = logging.getLogger()
    host = logging.FileHandler(host_file)
    host.setFormatter(logging.Formatter("%(name)s | %(message)s"))
    saved = (list(root.handlers), root.level)
    saved_structlog = structlog.get_config()
    root.handlers[:] = [host]
    root.setLevel(logging.INFO)
    try:
        guest_logging(tmp_path / "order_flow", secrets=["s3cret-value"])
        assert root.handlers == [host]
        logging.getLogger("trading_bot.bot").info("Position updated: AAPL")
        logs.get_logger("orderflow_client.risk").warning(
            "order_flow.exit_signal_triggered", symbol="AAPL", exit_reason="order_flow_alert", detail="key s3cret-value"
        )
        logging.getLogger("trading_bot.bot").info("TRADE EXECUTED | Symbol=AAPL")
        host.flush()
        lines = host_file.read_text().splitlines()
        assert (
            lines[0] == "trading_bot.bot | Position updated: AAPL"
            and lines[-1] == "trading_bot.bot | TRADE EXECUTED | Symbol=AAPL"
        )
        assert "order_flow.exit_signal_triggered" in lines[1] and "s3cret-value" not in lines[1]
        [record] = [
            json.loads(line)
            for path in (tmp_path / "order_flow").glob("*.jsonl")
            for line in path.read_text().splitlines()
        ]
        assert (record["event"], record["exit_reason"], record["detail"]) == (
            "order_flow.exit_signal_triggered",
            "order_flow_alert",
            "key ***",
        )
    finally:
        for name in logs.GUEST_LOGGERS:
            logging.getLogger(name).handlers.clear()
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        structlog.configure(**saved_structlog)
        host.close()


def test_a_threaded_bot_gets_a_market_exit_per_held_position_with_its_bid_and_records_per_position(
    redis_url, key_prefix
):
    """A market selloff naming AAPL and NVDA reaches a bot holding AAPL as one queued delivery about AAPL; the bid
    the stop goes under is the newest quote's (not the later print); the decision is recorded under <id>@AAPL."""
    import msgspec

    from orderflow_client.decisions import carried_out
    from orderflow_client.exit_policy import ExitPolicy
    from orderflow_client.positions import Position
    from orderflow_client.wire import Quote, Trade

    policy = ExitPolicy()
    with OrderFlowClient(
        redis_url, name="threaded", callbacks="queue", key_prefix=key_prefix, held_symbols=lambda: {"AAPL"},
        scopes=("symbol", "market"),
    ) as orderflow:  # fmt: skip
        bus = orderflow._connected()
        assert orderflow.bid_price("AAPL") is None  # nothing on its stream yet
        quote = Quote(
            symbol="AAPL", ts_event=1, ts_recv=1, ts_arrival=1, bid_price=187_430_000_000, bid_size=100,
            ask_price=187_450_000_000, ask_size=100,
        )  # fmt: skip
        trade = Trade(symbol="AAPL", ts_event=2, ts_recv=2, ts_arrival=2, price=187_440_000_000, size=100)
        for event in (quote, trade):
            orderflow._call(bus.client.xadd(bus.keys.market("AAPL"), {"event": encode(event)}))
        assert orderflow.bid_price("AAPL") == 187_430_000_000 and orderflow.last_price("AAPL") == 187_440_000_000
        selloff = msgspec.structs.replace(
            _recommendation(3), id="SPY:exit:market_selloff:3", symbol="SPY", trigger="market_selloff",
            scope="market", symbols=("AAPL", "NVDA"),
        )  # fmt: skip
        orderflow._call(bus.client.xadd(bus.keys.exits, {"exit": encode(selloff)}))
        delivery = orderflow.deliveries.get(timeout=10)
        assert (delivery.recommendation.symbol, delivery.recommendation.symbols) == ("AAPL", ("AAPL",))
        [chosen] = policy.decide(delivery.recommendation, {"AAPL"})
        position = Position(symbol="AAPL", quantity=200, entry_price=180_000_000_000, stop_loss=184_000_000_000)
        new_stop = policy.tightened_stop(orderflow.bid_price("AAPL") or 0, position.stop_loss, position.quantity)
        decision = carried_out(chosen, position, orderflow.last_price("AAPL") or 0, new_stop)
        assert (decision.action, decision.new_stop) == ("tighten_stop", 186_490_000_000)
        assert orderflow.record_decision(chosen.position_id, decision)
        delivery.done()
        wait_for(lambda: orderflow.client.stats.handled == 1, timeout=10, what="the delivery handled")
        assert orderflow.deliveries.empty()  # NVDA is not held: nothing for it
        recorded = orderflow.decisions(["SPY:exit:market_selloff:3@AAPL", "SPY:exit:market_selloff:3@NVDA"])
        assert {key: (record.action, record.new_stop) for key, record in recorded.items()} == {
            "SPY:exit:market_selloff:3@AAPL": ("tighten_stop", 186_490_000_000)
        }


def test_a_threaded_bot_gets_only_a_stocks_own_exit_unless_it_opts_into_watches_and_market_exits(redis_url, key_prefix):
    """A handler written for stock exits (it sells what it is given): by default it gets AAPL's own exit only, not
    AAPL's watch nor SPY's market exit naming AAPL (both acknowledged and counted); a bot opted into both scopes and
    both actions gets the three, the market exit as AAPL's position (it holds AAPL only)."""
    import msgspec

    watch = msgspec.structs.replace(_recommendation(8), action="watch", expected_fall_bps=1.0, cost_bps=3.0)
    selloff = msgspec.structs.replace(
        _recommendation(9), id="SPY:exit:market_selloff:9", symbol="SPY", trigger="market_selloff",
        scope="market", symbols=("AAPL", "NVDA"),
    )  # fmt: skip
    sold: dict[str, list[tuple[str, str]]] = {"default": [], "opted-in": []}
    options: dict[str, dict] = {
        "default": {},
        "opted-in": {"scopes": ("symbol", "market"), "actions": ("exit", "watch")},
    }
    clients = [
        OrderFlowClient(
            redis_url, name=f"threaded-{name}", key_prefix=key_prefix, held_symbols=lambda: {"AAPL"},
            on_exit=lambda item, name=name: sold[name].append((item.id, item.symbol)), **options[name],
        ).start()
        for name in sold
    ]  # fmt: skip
    try:
        bus = clients[0]._connected()
        for item in (_recommendation(7), watch, selloff):
            clients[0]._call(bus.client.xadd(bus.keys.exits, {"exit": encode(item)}))
        wait_for(lambda: len(sold["opted-in"]) == 3, timeout=10, what="the opted-in bot's three calls")
        wait_for(lambda: clients[0].client.stats.not_delivered == 2, timeout=10, what="the default bot's two skipped")
        time.sleep(0.3)
        assert sold["default"] == [("AAPL:exit:large_sellers:7", "AAPL")]
        assert sold["opted-in"] == [
            ("AAPL:exit:large_sellers:7", "AAPL"),
            ("AAPL:exit:large_sellers:8", "AAPL"),
            ("SPY:exit:market_selloff:9", "AAPL"),
        ]
        assert clients[0].client.stats.handled == 1 and clients[1].client.stats.not_delivered == 0
    finally:
        for client in clients:
            client.stop()
