"""The risk-manager client on a real Redis: its delivery guarantees (decisions: tests/unit/test_risk_decisions.py)."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from orderflow_client.bus.connection import Bus
from orderflow_client.bus.decision_records import DecisionRecord, read_decisions
from orderflow_client.decisions import record_decision
from orderflow_client.exit_policy import ExitPolicy
from orderflow_client.risk import ACTIONS, SCOPES, RiskManagerClient
from orderflow_client.timestamps import now_ns
from orderflow_client.wire import ExitRecommendation, FeedStatus, MarketContext, decode, encode
from services.detector.service import DetectorService
from shared.config import OrderFlowConfig
from tests.support.events import recommendation
from tests.support.waiting import wait_for_async


async def _publish(bus: Bus, config: OrderFlowConfig, item) -> None:
    """``item`` published as the detector's sink publishes it (these tests' configs turn the detector leases off:
    with them, a detector publishes only for the symbols it holds a lease on, and this one monitors none)."""
    await DetectorService(config, bus, symbols=[]).sink.publish([item])


@pytest.mark.redis
async def test_each_recommendation_is_handled_once_and_none_lost_across_a_restart(redis_url, key_prefix):
    config = OrderFlowConfig(detector_lease_seconds=0, key_prefix=key_prefix)
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    handled: list[str] = []
    statuses: list[str] = []

    async def run_client(until_count: int) -> RiskManagerClient:
        client = RiskManagerClient(bus, name="bot-1", held_symbols=lambda: {"AAPL"})
        stop = asyncio.Event()
        task = asyncio.ensure_future(
            client.run(stop, on_exit=lambda r: handled.append(r.id), on_status=lambda s: statuses.append(s.state))
        )
        return client, stop, task

    client, stop, task = await run_client(1)
    await asyncio.sleep(0.3)
    await _publish(bus, config, recommendation(number=1))  # channel AND stream: handled once
    await _publish(
        bus,
        config,
        FeedStatus(
            source="detector", state="monitoring_halted", ts_event=1, ts_recv=1, symbols=("AAPL",), code="stale_data"
        ),
    )
    for _ in range(100):
        if handled and statuses:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    stop.set()
    await task
    assert handled == ["AAPL:exit:large_sellers:1"] and client.stats.duplicates == 1
    assert statuses == ["monitoring_halted"] and client.stats.unmonitored == {"AAPL"}

    # the bot is down: two recommendations arrive meanwhile
    await _publish(bus, config, recommendation(number=2))
    await _publish(bus, config, recommendation("red_burst", number=3))
    client, stop, task = await run_client(3)
    for _ in range(100):
        if len(handled) == 3:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    stop.set()
    await task
    assert handled == ["AAPL:exit:large_sellers:1", "AAPL:exit:large_sellers:2", "AAPL:exit:red_burst:3"]
    assert await bus.pending_count(bus.keys.exits, "riskmanager-bot-1") == 0
    await bus.close()


@pytest.mark.redis
async def test_the_client_rides_out_a_20_second_redis_outage_and_says_so():
    """Redis (append-only) is killed under a running client for 20 s: the client keeps running, reports the held
    symbol unmonitored at once, then resumed, and handles the recommendation published after the outage once."""
    from tests.support.redis_server import RedisProcess, free_port, redis_server_binary

    server = await asyncio.to_thread(
        RedisProcess(port=free_port(), binary=redis_server_binary(), append_only=True).start
    )
    config = OrderFlowConfig(detector_lease_seconds=0, key_prefix="outage")
    bus = await Bus.connect(server.url, prefix="outage")
    handled: list[str] = []
    statuses: list[tuple[str, str, tuple[str, ...]]] = []
    client = RiskManagerClient(bus, name="bot-1", held_symbols=lambda: {"AAPL"})
    stop = asyncio.Event()
    task = asyncio.ensure_future(
        client.run(
            stop,
            on_exit=lambda r: handled.append(r.id),
            on_status=lambda s: statuses.append((s.state, s.code, s.symbols)),
        )
    )
    try:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(20)
        assert not task.done(), "the client ended during the outage"
        assert statuses[0] == ("disconnected", "bus_unavailable", ("AAPL",)) and client.stats.unmonitored == {"AAPL"}
        await asyncio.to_thread(server.start)
        publisher = await Bus.connect(server.url, prefix="outage")
        await _publish(publisher, config, recommendation(number=7))
        for _ in range(200):
            if handled:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert handled == ["AAPL:exit:large_sellers:7"]
        assert ("monitoring_resumed", "bus_recovered", ("AAPL",)) in statuses and client.stats.unmonitored == set()
        await publisher.close()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await bus.close()
        await asyncio.to_thread(server.stop)


@pytest.mark.redis
async def test_forged_recommendations_are_refused_and_genuine_ones_handled(redis_url, key_prefix):
    """The detector signs with ORDER_FLOW_SIGNING_KEY; a client holding the key handles what it signed and refuses
    an unsigned forgery, a forged signature and an old genuine one replayed, even one that takes a genuine id first."""
    from orderflow_client.signing import sign

    key = "a-long-enough-signing-secret-1234"
    config = OrderFlowConfig(detector_lease_seconds=0, key_prefix=key_prefix, signing_key=key, signing_key_id="k7")
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        handled: list[str] = []
        client = RiskManagerClient(bus, name="bot-1", signing_keys={"k7": key.encode()}, max_age_seconds=600)
        stop = asyncio.Event()
        task = asyncio.ensure_future(client.run(stop, on_exit=lambda r: handled.append(r.id)))
        await asyncio.sleep(0.3)
        unsigned = OrderFlowConfig(detector_lease_seconds=0, key_prefix=key_prefix)  # no key: publishes unsigned
        forger = DetectorService(unsigned, bus, symbols=[])
        await forger.sink.publish([recommendation(number=1)])  # unsigned, with the id a genuine one will have
        old = sign(recommendation(number=2), key.encode(), "k7", 1_000)
        await forger.sink.publish([old])
        forged = msgspec.structs.replace(
            sign(recommendation(number=3), key.encode(), "k7", 1_000), signed_ns=now_ns(), signature="0" * 64
        )
        await forger.sink.publish([forged])
        detector = DetectorService(config, bus, symbols=[])
        await bus.client.delete(
            f"{key_prefix}:published:AAPL:exit:large_sellers:1"
        )  # let the genuine one through the detector's own dedup
        await detector.sink.publish([recommendation(number=1)])
        for _ in range(100):
            if handled:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        stop.set()
        await task
        assert handled == ["AAPL:exit:large_sellers:1"]
        assert client.stats.refused == 6  # three refused, each by channel and by stream
        on_stream = [decode(next(iter(fields.values()))) for _id, fields in await bus.client.xrange(bus.keys.exits)]
        assert [r.key_id for r in on_stream] == ["", "k7", "k7", "k7"] and len(on_stream[-1].signature) == 64


@pytest.mark.redis
async def test_poison_on_the_exits_stream_is_dead_lettered_and_the_next_recommendation_handled(redis_url, key_prefix):
    config = OrderFlowConfig(detector_lease_seconds=0, key_prefix=key_prefix)
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        handled: list[str] = []
        client = RiskManagerClient(bus, name="bot-1")
        stop = asyncio.Event()
        task = asyncio.ensure_future(client.run(stop, on_exit=lambda r: handled.append(r.id)))
        await asyncio.sleep(0.3)
        await bus.client.xadd(bus.keys.exits, {"exit": b"\xc1 not msgpack"})
        await bus.client.xadd(
            bus.keys.exits, {"exit": encode(FeedStatus(source="x", state="gap", ts_event=1, ts_recv=1))}
        )
        await _publish(bus, config, recommendation(number=9))
        for _ in range(100):
            if handled and client.stats.dead_letters == 2:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await task
        assert handled == ["AAPL:exit:large_sellers:9"] and client.stats.dead_letters == 2
        dead = await bus.client.xrange(bus.keys.dead_letters(bus.keys.exits))
        assert [fields[b"code"] for _id, fields in dead] == [b"wire_undecodable", b"wrong_type"]
        assert await bus.pending_count(bus.keys.exits, "riskmanager-bot-1") == 0


@pytest.mark.redis
async def test_a_raising_handler_is_retried_and_the_recommendation_survives_a_restart(redis_url, key_prefix):
    """A broker rejection once lost the exit for good (claimed, then the handler raised). Now: the handler that
    raises is called again with backoff; a bot restarted meanwhile handles it from the stream; once it returns,
    it is done and never handled again."""
    config = OrderFlowConfig(detector_lease_seconds=0, key_prefix=key_prefix)
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        calls: list[str] = []

        def rejecting(item: ExitRecommendation) -> None:
            calls.append(item.id)
            raise RuntimeError("broker rejected the order")

        first = RiskManagerClient(bus, name="bot-1")
        stop = asyncio.Event()
        task = asyncio.ensure_future(first.run(stop, on_exit=rejecting))
        await asyncio.sleep(0.3)
        await _publish(bus, config, recommendation(number=1))
        # the first call and one retry 0.5 s later
        await wait_for_async(lambda: len(calls) >= 2, timeout=10, what="a retry")
        stop.set()
        await task
        assert first.stats.handler_failures == len(calls) >= 2 and first.stats.handled == 0
        assert await bus.pending_count(bus.keys.exits, "riskmanager-bot-1") == 1  # not acknowledged: not lost

        handled: list[str] = []
        attempts = {"count": 0}

        def flaky(item: ExitRecommendation) -> None:
            attempts["count"] += 1
            if attempts["count"] == 1:
                raise ConnectionError("broker timed out")
            handled.append(item.id)

        second = RiskManagerClient(bus, name="bot-1")  # the bot restarted
        stop = asyncio.Event()
        task = asyncio.ensure_future(second.run(stop, on_exit=flaky))
        await wait_for_async(lambda: handled, timeout=10, what="the recommendation handled")
        await bus.client.xadd(
            bus.keys.exits, {"exit": encode(recommendation(number=1))}
        )  # delivered again: already done
        await asyncio.sleep(0.5)
        stop.set()
        await task
        assert handled == ["AAPL:exit:large_sellers:1"] and attempts["count"] == 2
        assert second.stats.handled == 1 and second.stats.duplicates >= 1
        assert await bus.pending_count(bus.keys.exits, "riskmanager-bot-1") == 0


@pytest.mark.redis
async def test_a_recommendation_whose_handler_always_fails_is_parked_with_a_status(redis_url, key_prefix):
    config = OrderFlowConfig(detector_lease_seconds=0, key_prefix=key_prefix)
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        statuses: list[FeedStatus] = []
        calls: list[str] = []

        def rejecting(item: ExitRecommendation) -> None:
            calls.append(item.id)
            raise RuntimeError("account restricted")

        client = RiskManagerClient(bus, name="bot-1", max_attempts=3)
        stop = asyncio.Event()
        task = asyncio.ensure_future(client.run(stop, on_exit=rejecting, on_status=statuses.append))
        await asyncio.sleep(0.3)
        await _publish(bus, config, recommendation(number=4))
        await wait_for_async(lambda: client.stats.parked == 1, timeout=10, what="the recommendation parked")
        await bus.client.xadd(
            bus.keys.exits, {"exit": encode(recommendation(number=4))}
        )  # again: a parked one is not retried
        await asyncio.sleep(0.5)
        stop.set()
        await task
        assert calls == ["AAPL:exit:large_sellers:4"] * 3 and client.stats.parked == 1
        dead = await bus.client.xrange(bus.keys.dead_letters(bus.keys.exits))
        assert [(fields[b"code"], decode(fields[b"payload"]).id) for _id, fields in dead] == [
            (b"handler_failed", "AAPL:exit:large_sellers:4")
        ]
        assert [(s.state, s.code, s.symbols) for s in statuses] == [("dead_letter", "handler_failed", ("AAPL",))]
        assert await bus.pending_count(bus.keys.exits, "riskmanager-bot-1") == 0


@pytest.mark.redis
async def test_a_new_bot_name_catches_up_on_recommendations_inside_the_window(redis_url, key_prefix):
    """A bot started just after a recommendation was published used to miss it (its group began at '$'). Now a
    new bot name reads the last catch_up_seconds of the stream; older ones are stale and skipped."""
    config = OrderFlowConfig(detector_lease_seconds=0, key_prefix=key_prefix)
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        old_ms = int(__import__("time").time() * 1000) - 300_000  # five minutes ago: outside a 120 s window
        await bus.client.xadd(bus.keys.exits, {"exit": encode(recommendation(number=1))}, id=f"{old_ms}-0")
        await _publish(bus, config, recommendation(number=2))  # just before the bot starts
        handled: list[str] = []
        client = RiskManagerClient(bus, name="fresh-bot", catch_up_seconds=120)
        stop = asyncio.Event()
        task = asyncio.ensure_future(client.run(stop, on_exit=lambda item: handled.append(item.id)))
        await wait_for_async(lambda: handled, timeout=10, what="the recommendation handled")
        await asyncio.sleep(0.3)
        stop.set()
        await task
        assert handled == ["AAPL:exit:large_sellers:2"]


def _market_selloff(action: str = "exit", number: int = 11) -> ExitRecommendation:
    """A market-scope recommendation as the detector sends it: SPY is sold, naming three open positions."""
    return msgspec.structs.replace(
        recommendation("market_selloff", number=number, symbol="SPY"),
        scope="market",
        symbols=("AAPL", "MSFT", "NVDA"),
        action=action,
        expected_fall_bps=35.0 if action == "exit" else 3.0,
        cost_bps=2.0 if action == "exit" else 6.0,
        reasoning="SPY fell 42 bps in 300 s",
        context=MarketContext(label="market_wide", index="SPY", window_seconds=300, index_return_bps=-42.0),
    )


@pytest.mark.redis
async def test_a_market_exit_reaches_each_held_position_it_names_once_with_its_mark_and_decision(redis_url, key_prefix):
    """A market selloff naming AAPL, MSFT and NVDA reaches a bot holding AAPL, MSFT and TSLA: on_exit once for AAPL
    and once for MSFT (a failure on MSFT retries MSFT only), marks at <id>@AAPL and <id>@MSFT, the bot's decisions
    recorded there, the recommendation itself marked done; a second delivery changes nothing. A watch: ignored,
    recorded, nothing sold."""
    config = OrderFlowConfig(detector_lease_seconds=0, key_prefix=key_prefix)
    policy = ExitPolicy()
    held = {"AAPL", "MSFT", "TSLA"}
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        calls: list[tuple[str, str, str]] = []
        acted: list[tuple[str, str]] = []
        failing = {"MSFT": 1}

        async def on_exit(item: ExitRecommendation) -> None:
            calls.append((item.id, item.symbol, item.scope))
            if failing.get(item.symbol):
                failing[item.symbol] -= 1
                raise RuntimeError("broker busy")
            for decision in policy.decide(item, held):
                acted.append((decision.symbol, decision.choice))
                record = DecisionRecord(action=decision.choice, reasons=(decision.reason,))
                await record_decision(bus, "bot-1", decision.position_id, record)

        client = RiskManagerClient(bus, name="bot-1", held_symbols=lambda: held, scopes=SCOPES, actions=ACTIONS)
        stop = asyncio.Event()
        task = asyncio.ensure_future(client.run(stop, on_exit=on_exit))
        await asyncio.sleep(0.3)
        selloff = _market_selloff()
        await _publish(bus, config, selloff)  # channel and stream
        await wait_for_async(lambda: client.stats.handled == 2, timeout=10, what="both held positions handled")
        await _publish(bus, config, _market_selloff("watch", number=12))
        await wait_for_async(lambda: client.stats.handled == 4, timeout=10, what="the watch handled")
        await bus.client.xadd(bus.keys.exits, {"exit": encode(selloff)})  # delivered again: already done
        await asyncio.sleep(0.5)
        stop.set()
        await task
        first, watch = selloff.id, "SPY:exit:market_selloff:12"
        assert calls == [
            (first, "AAPL", "market"),
            (first, "MSFT", "market"),  # raised: retried 0.5 s later, MSFT only
            (first, "MSFT", "market"),
            (watch, "AAPL", "market"),
            (watch, "MSFT", "market"),
        ]
        assert acted == [
            ("AAPL", "tighten_stops"),
            ("MSFT", "tighten_stops"),
            ("AAPL", "ignore"),  # a watch: nothing sold, nothing tightened
            ("MSFT", "ignore"),
        ]
        assert client.stats.handled == 4 and client.stats.handler_failures == 1 and client.stats.duplicates >= 2
        marks = {
            identifier: await bus.client.get(bus.keys.handled("bot-1", identifier))
            for identifier in (first, f"{first}@AAPL", f"{first}@MSFT", f"{first}@NVDA", f"{first}@TSLA")
        }
        assert marks == {
            first: b"done",
            f"{first}@AAPL": b"done",
            f"{first}@MSFT": b"done",
            f"{first}@NVDA": None,  # named, not held
            f"{first}@TSLA": None,  # held, not named
        }
        decided = await read_decisions(bus, "bot-1", [f"{first}@AAPL", f"{first}@MSFT", f"{watch}@AAPL", first])
        assert {identifier: record.action for identifier, record in decided.items()} == {
            f"{first}@AAPL": "tighten_stops",
            f"{first}@MSFT": "tighten_stops",
            f"{watch}@AAPL": "ignore",
        }
        assert decided[f"{first}@AAPL"].reasons[0].startswith("tighten_stops: the market is sold (SPY; expected fall")
        assert await bus.pending_count(bus.keys.exits, "riskmanager-bot-1") == 0


@pytest.mark.redis
async def test_a_market_exit_whose_position_always_fails_parks_that_position_only(redis_url, key_prefix):
    config = OrderFlowConfig(detector_lease_seconds=0, key_prefix=key_prefix)
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        calls: list[str] = []
        statuses: list[FeedStatus] = []

        def on_exit(item: ExitRecommendation) -> None:
            calls.append(item.symbol)
            if item.symbol == "NVDA":
                raise RuntimeError("account restricted")

        client = RiskManagerClient(bus, name="bot-1", max_attempts=3, scopes=SCOPES)  # no held symbols: every one
        stop = asyncio.Event()
        task = asyncio.ensure_future(client.run(stop, on_exit=on_exit, on_status=statuses.append))
        await asyncio.sleep(0.3)
        await _publish(bus, config, _market_selloff())
        await wait_for_async(lambda: client.stats.parked == 1, timeout=10, what="NVDA parked")
        stop.set()
        await task
        assert calls == ["AAPL", "MSFT", "NVDA", "NVDA", "NVDA"] and client.stats.handled == 2
        identifier = "SPY:exit:market_selloff:11"
        marks = [
            await bus.client.get(bus.keys.handled("bot-1", key))
            for key in (identifier, f"{identifier}@AAPL", f"{identifier}@NVDA")
        ]
        assert marks == [b"parked", b"done", b"parked"]
        assert [(s.state, s.code, s.symbols) for s in statuses] == [("dead_letter", "handler_failed", ("NVDA",))]


@pytest.mark.redis
async def test_a_default_client_gets_only_a_stocks_own_exit_and_an_opted_in_one_gets_every_scope_and_action(
    redis_url, key_prefix
):
    """A bot written before scopes and actions (no opt-ins) gets AAPL's own exit only: AAPL's watch and SPY's market
    exit are acknowledged, counted and never reach on_exit (its handler would sell). One opted into both scopes and
    both actions gets all three, the market exit once per position it names (no held_symbols: every one)."""
    config = OrderFlowConfig(detector_lease_seconds=0, key_prefix=key_prefix)
    watch = msgspec.structs.replace(
        recommendation(number=22), id="AAPL:exit:large_sellers:22", action="watch", expected_fall_bps=1.0, cost_bps=3.0
    )
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        calls: dict[str, list[tuple[str, str, str, str]]] = {"old-bot": [], "policy-bot": []}
        clients = {
            "old-bot": RiskManagerClient(bus, name="old-bot"),
            "policy-bot": RiskManagerClient(bus, name="policy-bot", scopes=("symbol", "market"), actions=ACTIONS),
        }
        stop = asyncio.Event()
        tasks = [
            asyncio.ensure_future(
                client.run(
                    stop,
                    on_exit=lambda item, name=name: calls[name].append((item.id, item.symbol, item.scope, item.action)),
                )
            )
            for name, client in clients.items()
        ]
        await asyncio.sleep(0.3)
        for item in (recommendation(number=21), watch, _market_selloff()):
            await _publish(bus, config, item)  # channel and stream: each seen twice by each client
        await wait_for_async(lambda: len(calls["policy-bot"]) == 5, timeout=10, what="the opted-in bot's five calls")
        await wait_for_async(
            lambda: clients["old-bot"].stats.not_delivered == 2, timeout=10, what="the old bot's two skipped"
        )
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*tasks)
        selloff = "SPY:exit:market_selloff:11"
        assert calls["old-bot"] == [("AAPL:exit:large_sellers:21", "AAPL", "symbol", "exit")]
        assert clients["old-bot"].stats.not_delivered == 2 and clients["old-bot"].stats.handled == 1
        assert calls["policy-bot"] == [
            ("AAPL:exit:large_sellers:21", "AAPL", "symbol", "exit"),
            ("AAPL:exit:large_sellers:22", "AAPL", "symbol", "watch"),
            (selloff, "AAPL", "market", "exit"),
            (selloff, "MSFT", "market", "exit"),
            (selloff, "NVDA", "market", "exit"),
        ]
        assert clients["policy-bot"].stats.not_delivered == 0 and clients["policy-bot"].stats.handled == 5
        for name in clients:  # what was not delivered is acknowledged all the same
            assert await bus.pending_count(bus.keys.exits, f"riskmanager-{name}") == 0
        # never marked: a bot that opts in later would still see it as not handled
        assert await bus.client.get(bus.keys.handled("old-bot", selloff)) is None
        assert await bus.client.get(bus.keys.handled("policy-bot", selloff)) == b"done"


@pytest.mark.redis
async def test_a_position_in_hand_longer_than_the_lease_is_not_taken_over_by_another_process(redis_url, key_prefix):
    """Two processes of one bot (1 s leases) both receive a market exit naming AAPL, MSFT and NVDA; whichever takes
    it spends 3 s on AAPL (a broker call longer than the lease). Its leases are renewed while the call runs: the
    other never calls a position in hand or done, so each position is handled exactly once."""
    config = OrderFlowConfig(detector_lease_seconds=0, key_prefix=key_prefix)
    calls: list[tuple[str, str]] = []
    slowed: list[str] = []

    async def run(bus: Bus, process: str, stop: asyncio.Event) -> RiskManagerClient:
        async def on_exit(item: ExitRecommendation) -> None:
            calls.append((process, item.symbol))
            if not slowed:
                slowed.append(process)
                await asyncio.sleep(3.0)

        client = RiskManagerClient(bus, name="bot-1", scopes=SCOPES, lease_seconds=1)
        await client.run(stop, on_exit=on_exit)
        return client

    async with (
        await Bus.connect(redis_url, prefix=key_prefix) as first_bus,
        await Bus.connect(redis_url, prefix=key_prefix) as second_bus,
    ):
        stop = asyncio.Event()
        tasks = [
            asyncio.ensure_future(run(first_bus, "first", stop)),
            asyncio.ensure_future(run(second_bus, "second", stop)),
        ]
        await asyncio.sleep(0.3)
        await _publish(first_bus, config, _market_selloff())
        await wait_for_async(lambda: len(calls) >= 3, timeout=15, what="three positions handled")
        await asyncio.sleep(2.5)  # the other process retries after each lease period: it must find them done
        stop.set()
        clients = await asyncio.gather(*tasks)
        assert sorted(symbol for _, symbol in calls) == ["AAPL", "MSFT", "NVDA"], calls
        assert calls[0] == (slowed[0], "AAPL")
        assert sum(client.stats.handled for client in clients) == 3
        identifier = "SPY:exit:market_selloff:11"
        marks = [
            await first_bus.client.get(first_bus.keys.handled("bot-1", key))
            for key in (identifier, f"{identifier}@AAPL", f"{identifier}@MSFT", f"{identifier}@NVDA")
        ]
        assert marks == [b"done"] * 4
