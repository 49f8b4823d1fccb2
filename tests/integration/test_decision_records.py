"""A bot's decisions recorded on a real Redis: ``orderflow risk-manager`` (a process of its own) records what it
decided on a real recommendation (the large-sellers scenario replayed, detected and published by the detector), the
same decision it logs; a threaded bot records its own through :class:`OrderFlowClient`. The records' shape and
expiry: tests/unit/test_decision_records.py; under the bot's ACL user: test_acl.py."""

from __future__ import annotations

import asyncio
import signal
from decimal import Decimal

import pytest

from orderflow_client.bus.connection import Bus
from orderflow_client.bus.decision_records import DecisionRecord, read_decisions
from orderflow_client.bus.marks import HandledMarks
from orderflow_client.decisions import carried_out, last_trade_price
from orderflow_client.exit_policy import ExitPolicy
from orderflow_client.positions import PositionRegistry
from orderflow_client.risk import HANDLED_SECONDS
from orderflow_client.threaded import OrderFlowClient
from orderflow_client.timestamps import now_ns
from orderflow_client.wire import ExitRecommendation, decode
from services.detector.service import DetectorService
from services.ingest.replay import replay
from services.ingest.sources import read_events
from services.tools.scenarios import write_scenario
from shared.config import OrderFlowConfig
from tests.support.cli import redis_environment, start_orderflow
from tests.support.jsonl import log_lines
from tests.support.waiting import wait_for_async

pytestmark = pytest.mark.redis


async def test_the_stand_in_bot_records_what_it_decided_on_a_real_recommendation(redis_url, key_prefix, tmp_path):
    capture = tmp_path / "sellers.capture"
    write_scenario("large-sellers", capture, symbol="SELLERS")
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    env = redis_environment(redis_url, key_prefix, tmp_path)
    bot = None
    try:
        await PositionRegistry(bus).open("SELLERS", quantity=100, entry_price="50.00", stop_loss="49.50")
        await replay(bus, read_events("capture", [capture]))  # the market stream: the last print is the bot's price
        started = now_ns()
        bot = start_orderflow("risk-manager", "--name", "recorder", env=env)
        await wait_for_async(
            lambda: any(line["event"] == "order_flow.risk_manager_started" for line in log_lines(tmp_path / "logs")),
            30,
            "the bot started",
        )
        await asyncio.sleep(0.5)  # its group made and its subscription in place
        config = OrderFlowConfig(threshold_mode="absolute", key_prefix=key_prefix)
        detector = DetectorService(config, bus, consumer="decisions")
        await detector.refresh()
        await detector.drain()
        assert detector.stats.exits == 1
        [exit_recommendation] = [
            message
            for entry in await bus.read_range(bus.keys.exits)
            if isinstance(message := decode(entry.payload), ExitRecommendation)
        ]
        identifier = exit_recommendation.id

        async def recorded() -> dict[str, DecisionRecord]:
            return await read_decisions(bus, "recorder", [identifier])

        await wait_for_async(recorded, 30, "the bot's decision recorded")
        record = (await recorded())[identifier]
        marks = HandledMarks(bus, "recorder")
        await wait_for_async(lambda: _is_done(marks, identifier), 10, "the handled mark")
        bot.send_signal(signal.SIGTERM)
        bot.expect_exit(0, timeout=30)
        # what it recorded is what it logged, and what the default policy decides on this position and price
        [logged] = [
            line
            for line in log_lines(tmp_path / "logs")
            if line.get("source") == "risk_manager" and line["event"] == "order_flow.exit_signal_triggered"
        ]
        last = await last_trade_price(bus, "SELLERS")
        position = (await PositionRegistry(bus).list())[0]
        [chosen] = ExitPolicy().decide(exit_recommendation, {"SELLERS"})  # the default policy: a stock's own exit
        expected = carried_out(chosen, position, last)
        assert expected.action == "exit"
        assert (logged["id"], logged["decision"], logged["reasons"]) == (
            identifier,
            expected.action,
            list(expected.reasons),
        )
        assert (record.action, record.new_stop, record.last_price) == (expected.action, expected.new_stop, last)
        # the reasons as logged, each one shortened to 200 characters (the detector's evidence may be longer)
        assert record.reasons[0] == expected.reasons[0] and len(record.reasons) == len(expected.reasons)
        assert record.reasons == DecisionRecord(action="", reasons=expected.reasons).shortened().reasons
        assert started <= record.decided_ns <= now_ns()  # when the bot decided (the replayed events are of 2026-11-24)
        ttl = await bus.client.ttl(bus.keys.decision("recorder", identifier))
        assert HANDLED_SECONDS - 60 <= ttl <= HANDLED_SECONDS
        assert bus.keys.decision("recorder", identifier) == f"{key_prefix}:riskmanager:recorder:decision:{identifier}"
        assert await read_decisions(bus, "another-bot", [identifier]) == {}
    finally:
        if bot is not None:
            bot.stop_if_running()
        await bus.close()


async def _is_done(marks: HandledMarks, identifier: str) -> bool:
    return await marks.holder(identifier) == b"done"


def test_a_threaded_bot_records_its_own_decision(redis_url, key_prefix):
    with OrderFlowClient(redis_url, name="threaded", callbacks="queue", key_prefix=key_prefix) as orderflow:
        orderflow.open_position("AAPL", quantity=10, entry_price=Decimal("100"))
        assert orderflow.record_decision("AAPL:exit:red_burst:9", DecisionRecord(action="exit", reasons=("sold",)))
        found = asyncio.run(_read(redis_url, key_prefix, "threaded", ["AAPL:exit:red_burst:9", "missing"]))
    assert list(found) == ["AAPL:exit:red_burst:9"]
    assert (found["AAPL:exit:red_burst:9"].action, found["AAPL:exit:red_burst:9"].reasons) == ("exit", ("sold",))
    assert found["AAPL:exit:red_burst:9"].decided_ns > 0


async def _read(redis_url: str, prefix: str, bot: str, ids: list[str]) -> dict[str, DecisionRecord]:
    async with await Bus.connect(redis_url, prefix=prefix) as bus:
        return await read_decisions(bus, bot, ids)
