"""A bot's decision records on the (embedded) bus: the key and its JSON value, the expiry, reading several at once
(missing and foreign values skipped), the evaluator's decision recorded as the client records it, and a Redis that
does not take it (the decision stands, logged). On a real Redis, under the bot's ACL user and by
``orderflow risk-manager``: tests/integration/test_decision_records.py and test_acl.py."""

from __future__ import annotations

import json
import logging
import uuid

import msgspec
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from orderflow_client import logs
from orderflow_client.bus.connection import Bus
from orderflow_client.bus.decision_records import (
    MAX_REASON_CHARACTERS,
    MAX_REASONS,
    DecisionRecord,
    DecisionRecords,
    read_decisions,
)
from orderflow_client.bus.keys import Keys
from orderflow_client.bus.marks import HandledMarks
from orderflow_client.decisions import evaluate, record_decision
from orderflow_client.positions import Position
from orderflow_client.risk import HANDLED_SECONDS
from orderflow_client.timestamps import now_ns
from tests.support.events import D, recommendation


async def embedded() -> Bus:
    return await Bus.connect(None, prefix=f"decisions-{uuid.uuid4().hex[:8]}")


def test_the_key_sits_beside_the_handled_mark():
    keys = Keys()
    assert (
        keys.decision("my-bot", "AAPL:exit:red_burst:1")
        == "orderflow:riskmanager:my-bot:decision:AAPL:exit:red_burst:1"
    )
    assert keys.handled("my-bot", "AAPL:exit:red_burst:1").replace(":handled:", ":decision:") == keys.decision(
        "my-bot", "AAPL:exit:red_burst:1"
    )
    assert Keys(cluster=True).decision("b", "x") == "orderflow:riskmanager:b:decision:x"  # no slot tag: any node


async def test_a_record_is_json_under_its_key_expiring_and_read_back():
    bus = await embedded()
    records = DecisionRecords(bus, "my-bot")
    record = DecisionRecord(
        action="tighten_stop",
        reasons=("tighten the stop to 98.50", "order flow: 3 large sellers"),
        new_stop=98_500_000_000,
        last_price=99 * D,
        decided_ns=1_795_545_591_000_000_000,
    )
    await records.record("AAPL:exit:large_sellers:1", record, 600)
    key = f"{bus.keys.prefix}:riskmanager:my-bot:decision:AAPL:exit:large_sellers:1"
    assert json.loads(await bus.client.get(key)) == {
        "action": "tighten_stop",
        "reasons": ["tighten the stop to 98.50", "order flow: 3 large sellers"],
        "new_stop": 98_500_000_000,
        "last_price": 99_000_000_000,
        "decided_ns": 1_795_545_591_000_000_000,
    }
    assert 595 <= await bus.client.ttl(key) <= 600
    assert await records.read(["AAPL:exit:large_sellers:1"]) == {"AAPL:exit:large_sellers:1": record}
    # recorded again: replaced, the expiry starts over
    await records.record("AAPL:exit:large_sellers:1", msgspec.structs.replace(record, action="exit", new_stop=0), 60)
    assert (await records.read(["AAPL:exit:large_sellers:1"]))["AAPL:exit:large_sellers:1"].action == "exit"
    assert 55 <= await bus.client.ttl(key) <= 60
    # another bot name's records are its own
    assert await read_decisions(bus, "other-bot", ["AAPL:exit:large_sellers:1"]) == {}
    await bus.close()


async def test_several_are_read_at_once_and_what_is_missing_or_foreign_is_left_out():
    bus = await embedded()
    records = DecisionRecords(bus, "my-bot")
    for number, action in ((1, "exit"), (2, "hold")):
        await records.record(f"AAPL:exit:large_sellers:{number}", DecisionRecord(action=action), 60)
    await bus.client.set(records.key("AAPL:exit:large_sellers:3"), b"not json")
    await bus.client.set(records.key("AAPL:exit:large_sellers:4"), b'{"reasons":["no action"]}')
    await bus.client.set(  # a newer writer's extra field is ignored
        records.key("AAPL:exit:large_sellers:5"), b'{"action":"exit","venue":"x","decided_ns":7}'
    )
    await HandledMarks(bus, "my-bot").finish("AAPL:exit:large_sellers:6", b"done", 60)  # a mark is not a decision
    ids = [f"AAPL:exit:large_sellers:{number}" for number in range(1, 8)]
    found = await read_decisions(bus, "my-bot", [*ids, ids[0]])
    assert {identifier: record.action for identifier, record in found.items()} == {
        ids[0]: "exit",
        ids[1]: "hold",
        ids[4]: "exit",
    }
    assert found[ids[4]].decided_ns == 7 and found[ids[0]].reasons == () and found[ids[0]].new_stop == 0
    assert await read_decisions(bus, "my-bot", []) == {}
    await bus.close()


async def test_long_reasons_are_shortened_when_stored():
    bus = await embedded()
    record = DecisionRecord(action="hold", reasons=tuple("x" * 500 for _ in range(20)))
    await DecisionRecords(bus, "b").record("r", record, 60)
    stored = (await read_decisions(bus, "b", ["r"]))["r"]
    assert len(stored.reasons) == MAX_REASONS
    assert all(len(reason) == MAX_REASON_CHARACTERS and reason.endswith("…") for reason in stored.reasons)
    await bus.close()


async def test_the_evaluators_decision_is_recorded_for_30_days_with_the_price_and_when():
    bus = await embedded()
    exit_recommendation = recommendation(number=3)
    position = Position(symbol="AAPL", quantity=100, entry_price=100 * D, stop_loss=95 * D)
    decision = evaluate(exit_recommendation, position, 99 * D)
    assert decision.action == "tighten_stop"
    before = now_ns()
    assert await record_decision(bus, "my-bot", exit_recommendation.id, decision, last_price=99 * D)
    record = (await read_decisions(bus, "my-bot", [exit_recommendation.id]))[exit_recommendation.id]
    assert (record.action, record.reasons, record.new_stop, record.last_price) == (
        "tighten_stop",
        decision.reasons,
        98_500_000_000,
        99 * D,
    )
    assert before <= record.decided_ns <= now_ns()
    ttl = await bus.client.ttl(bus.keys.decision("my-bot", exit_recommendation.id))
    assert HANDLED_SECONDS - 5 <= ttl <= HANDLED_SECONDS  # as long as the handled mark
    # a bot's own record: when it was recorded, unless it says
    assert await record_decision(bus, "my-bot", "own-1", DecisionRecord(action="reduce", reasons=("half out",)))
    own = (await read_decisions(bus, "my-bot", ["own-1"]))["own-1"]
    assert own.action == "reduce" and own.decided_ns >= before
    assert await record_decision(bus, "my-bot", "own-2", DecisionRecord(action="hold", decided_ns=5))
    assert (await read_decisions(bus, "my-bot", ["own-2"]))["own-2"].decided_ns == 5
    await bus.close()


async def test_a_redis_that_does_not_take_the_record_leaves_the_decision_standing_and_says_so(tmp_path):
    """A real refused connection (nothing listens on port 1), no retries: False, and the log line."""
    client = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0), socket_connect_timeout=1)
    bus = Bus(client, Keys(), description="127.0.0.1:1", stream_max_length=0)
    logs.configure_logging(service="bot", log_dir=tmp_path, console=False)
    try:
        assert not await record_decision(bus, "my-bot", "AAPL:exit:red_burst:1", DecisionRecord(action="exit"))
    finally:
        logging.getLogger().handlers.clear()
        await bus.close()
    lines = [json.loads(line) for path in tmp_path.glob("*.jsonl") for line in path.read_text().splitlines()]
    [line] = [line for line in lines if line["event"] == "order_flow.decision_not_recorded"]
    assert (line["id"], line["bot"], line["decision"]) == ("AAPL:exit:red_burst:1", "my-bot", "exit")
    assert line["error"].startswith("BusUnavailableError")
