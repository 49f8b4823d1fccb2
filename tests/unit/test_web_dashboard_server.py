"""The web dashboard's server side: the Host check without a token (DNS rebinding), /healthz once Redis is gone, a
summary sent only when it changed, the resume history of outputs only (a resuming page still gets the latest
summary and charts), the day's largest seller read back at start, the bots' marks settled without a decision."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from orderflow_client.bus.connection import Bus
from orderflow_client.bus.marks import HandledMarks
from orderflow_client.wire import OrderFlowAlert, Trade
from services.dashboard import readers as readers_module
from services.dashboard.app import host_name, make_app
from services.dashboard.hub import KEPT_EVENTS, RESET, Hub
from services.dashboard.readers import SETTLE_GRACE_NS, Readers
from services.dashboard.state import DashboardState
from tests.support.events import OPEN, T0, D, S
from tests.unit.test_web_dashboard import exit_of

TOKEN = "a-token-of-sixteen-chars"


def alert(symbol: str, at: int, size: int) -> OrderFlowAlert:
    return OrderFlowAlert(
        id=f"{symbol}-{at}-{size}",
        symbol=symbol,
        alert_type="large_seller",
        severity="warning",
        source="tape",
        ts_event=at,
        ts_recv=at,
        timestamp_utc="",
        order_size=size,
        price_level=50 * D,
        volume_ratio=0.0,
        sell_ratio=0.0,
        latency_ms=2.0,
    )


def trade(symbol: str, at: int, price: float) -> Trade:
    return Trade(symbol=symbol, ts_event=at, ts_recv=at, ts_arrival=at, price=round(price * D), size=100, side="sell")


class Clock:
    def __init__(self, at: int) -> None:
        self.at = at

    def __call__(self) -> int:
        return self.at


async def client_of(state: DashboardState, hub: Hub, token: str = "", **options: Any) -> TestClient:
    client = TestClient(TestServer(make_app(state, hub, token, **options)))
    await client.start_server()
    return client


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    connected = await Bus.connect(None, prefix=f"dashboard-server-{uuid.uuid4().hex[:8]}")
    yield connected
    await connected.close()


# --- finding 3: the Host check ------------------------------------------------------------------------------------
def test_host_names_without_their_port():
    assert host_name("127.0.0.1:8765") == "127.0.0.1"
    assert host_name("LOCALHOST") == "localhost"
    assert host_name("[::1]:8765") == "::1"
    assert host_name("[::1]") == "::1"
    assert host_name("attacker.example:8765") == "attacker.example"
    assert host_name("127.0.0.1.attacker.example") == "127.0.0.1.attacker.example"


async def test_without_a_token_only_a_request_naming_this_machine_is_answered():
    client = await client_of(DashboardState(), Hub())
    try:
        port = client.port
        for path in ("/api/snapshot", "/", "/healthz", "/static/dashboard.js"):
            refused = await client.get(path, headers={"Host": "attacker.example"})
            assert refused.status == 421, path
            refused = await client.get(path, headers={"Host": f"attacker.example:{port}"})
            assert refused.status == 421, path
        for host in (f"127.0.0.1:{port}", "127.0.0.1", f"localhost:{port}", "localhost", f"[::1]:{port}"):
            answered = await client.get("/api/snapshot", headers={"Host": host})
            assert answered.status == 200, host
            assert "summary" in await answered.json()
    finally:
        await client.close()


async def test_with_a_token_any_host_needs_the_token():
    client = await client_of(DashboardState(), Hub(), TOKEN)
    try:
        headers = {"Host": "dashboard.example"}
        assert (await client.get("/api/snapshot", headers=headers)).status == 401
        given = {**headers, "Authorization": f"Bearer {TOKEN}"}
        assert (await client.get("/api/snapshot", headers=given)).status == 200
    finally:
        await client.close()


# --- finding 16: /healthz -----------------------------------------------------------------------------------------
async def test_healthz_says_503_once_redis_is_gone_longer_than_the_limit():
    state, clock = DashboardState(), Clock(T0)
    client = await client_of(state, Hub(), unhealthy_after_seconds=15.0, clock=clock)
    try:
        answer = await client.get("/healthz")
        assert (answer.status, await answer.json()) == (200, {"status": "ok", "redis": "ok", "pages": 0})
        state.unreachable_since_ns = T0 - 10 * S
        answer = await client.get("/healthz")
        assert answer.status == 200
        assert await answer.json() == {
            "status": "ok",
            "redis": "unreachable",
            "pages": 0,
            "redis_unreachable_seconds": 10.0,
        }
        clock.at = T0 + 6 * S  # gone 16 s
        answer = await client.get("/healthz")
        assert answer.status == 503
        assert (await answer.json())["status"] == "unhealthy"
        state.unreachable_since_ns = 0  # back
        assert (await client.get("/healthz")).status == 200
    finally:
        await client.close()


# --- finding 11: the summary and the resume history ---------------------------------------------------------------
async def test_a_summary_the_same_as_the_last_is_not_sent_again(bus: Bus):
    clock = Clock(T0)
    hub = Hub(kept=KEPT_EVENTS)
    state = DashboardState(extra_symbols=("AAPL",))
    readers = Readers(bus, state, hub, consumer_group="d", clock=clock)
    page = hub.subscribe(None)
    await readers._poll_slow()
    assert [event_of(item) for item in drain(page)] == ["summary"]
    for second in range(1, 4):  # the wall clock moves ("now" changes), nothing else does
        clock.at = T0 + second * S
        await readers._poll_slow()
    assert drain(page) == []
    assert hub.unchanged == 3
    await bus.publish([(bus.keys.alerts, alert("AAPL", T0, 20_000))])
    readers.output_ids = {bus.keys.alerts: "0-0", bus.keys.exits: "0-0", bus.keys.status: "0-0"}
    await readers._follow_outputs()
    assert [event_of(item) for item in drain(page)] == ["output", "summary"]
    await readers._poll_slow()
    assert drain(page) == []


def test_the_history_keeps_outputs_only_and_a_resuming_page_gets_the_latest_summary_and_charts():
    hub = Hub(kept=KEPT_EVENTS)
    hub.publish("output", {"n": 1})
    first = hub.last_id
    hub.publish("summary", {"n": 2})
    hub.publish("market", {"n": 3})
    hub.publish("output", {"n": 4})
    hub.publish("summary", {"n": 5})
    assert [sequence for sequence, _ in hub.history] == [1, 4]
    catch_up = [("summary", {"latest": True}), ("market", {"AAPL": {"prices": [], "bars": [], "book": None}})]
    resumed = drain(hub.subscribe(first, lambda: catch_up))
    assert resumed == [
        f'id: {hub.boot}-4\nevent: output\ndata: {{"n":4}}\n\n'.encode(),
        b'event: summary\ndata: {"latest":true}\n\n',
        b'event: market\ndata: {"AAPL":{"prices":[],"bars":[],"book":null}}\n\n',
    ]
    assert drain(hub.subscribe(hub.last_id, lambda: catch_up)) == []  # nothing since: nothing to catch up


def test_the_history_is_capped_by_bytes_and_an_id_before_it_resets():
    hub = Hub(kept=KEPT_EVENTS, history_bytes=300)
    for number in range(10):
        hub.publish("output", {"text": "x" * 50, "n": number})
    assert hub.history_bytes <= 300
    assert len(hub.history) < 10
    kept = hub.history[0][0]
    assert drain(hub.subscribe(f"{hub.boot}-{kept - 2}")) == [RESET]  # the event after it is gone
    assert len(drain(hub.subscribe(f"{hub.boot}-{kept - 1}"))) == len(hub.history)


async def test_a_page_resuming_over_http_gets_the_outputs_it_missed_then_the_summary_and_whole_charts():
    state = DashboardState(extra_symbols=("AAPL",))
    for second in range(3):
        state.apply_market(trade("AAPL", T0 + second * S, 50 + second), 0)
    hub = Hub(kept=KEPT_EVENTS)
    hub.publish("summary", {"old": True})
    after = hub.last_id
    hub.publish("market", {"AAPL": {"prices": [[1, 1.0]], "bars": [], "book": None}})
    hub.publish("output", {"id": "alert-1"})
    client = await client_of(state, hub, clock=Clock(T0 + 3 * S))
    try:
        response = await client.get("/events", headers={"Last-Event-ID": after})
        assert response.status == 200
        events: list[tuple[str, Any]] = []
        while len(events) < 3:
            block = await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5.0)
            fields = dict(line.split(": ", 1) for line in block.decode().strip().split("\n") if ": " in line)
            if "event" in fields:
                events.append((fields["event"], json.loads(fields["data"])))
        response.close()
    finally:
        await client.close()
    assert events[0] == ("output", {"id": "alert-1"})
    assert events[1][0] == "summary" and [card["symbol"] for card in events[1][1]["cards"]] == ["AAPL"]
    assert events[1][1]["cards"][0]["price"] == "52.00"
    assert events[2][0] == "market"
    assert [price for _, price in events[2][1]["AAPL"]["prices"]] == [50.0, 51.0, 52.0]


# --- finding 9: the day's largest seller --------------------------------------------------------------------------
async def test_the_largest_seller_today_is_read_back_to_the_start_of_the_day(bus: Bus, monkeypatch):
    monkeypatch.setattr(readers_module, "OUTPUT_HISTORY", 3)  # read back three entries at a time
    yesterday, morning = OPEN - 20 * 3600 * S, OPEN + 60 * S  # 13:30 the day before, 9:31 today
    alerts = [alert("AAPL", yesterday, 90_000), alert("AAPL", morning, 50_000)]
    alerts += [alert("AAPL", T0 + second * S, 10_000 + second) for second in range(5)]  # 10:30, an hour later
    await bus.publish([(bus.keys.alerts, each) for each in alerts])
    state = DashboardState(extra_symbols=("AAPL",))
    await Readers(bus, state, Hub(), consumer_group="d").start()
    assert len(state.log) == 3  # the log holds the last entries read (the window's); the morning's is not in it
    best = state.largest_seller_today()
    assert best is not None and (best.order_size, best.ts_event) == (50_000, morning)


# --- findings 14 and 10: the handled marks ------------------------------------------------------------------------
async def test_a_final_mark_without_a_decision_is_settled_after_the_grace_and_no_longer_asked(bus: Bus, monkeypatch):
    clock = Clock(T0)
    state = DashboardState(extra_symbols=("AAPL",))
    readers = Readers(bus, state, Hub(), consumer_group="d", bot_names=("bot",), clock=clock)
    recommendation = exit_of("AAPL", T0)
    state.apply_output(recommendation)
    asked: list[str] = []
    holder = HandledMarks.holder

    async def counted(marks: HandledMarks, recommendation_id: str) -> bytes | None:
        asked.append(recommendation_id)
        return await holder(marks, recommendation_id)

    monkeypatch.setattr(HandledMarks, "holder", counted)
    await readers._poll_handled()
    assert state.handled[recommendation.id] == {"bot": "not handled yet"}
    await HandledMarks(bus, "bot").finish(recommendation.id, b"done", 60)
    await readers._poll_handled()
    assert state.handled[recommendation.id] == {"bot": "handled"}
    assert recommendation.id not in readers.settled  # no decision recorded yet: asked again for the grace
    clock.at = T0 + SETTLE_GRACE_NS - S
    await readers._poll_handled()
    assert recommendation.id not in readers.settled
    clock.at = T0 + SETTLE_GRACE_NS
    await readers._poll_handled()
    assert recommendation.id in readers.settled
    assert readers.final_since == {}
    asked.clear()
    await readers._poll_handled()
    assert asked == []  # settled: no GET any more
    newer = exit_of("AAPL", T0 + 60 * S)
    state.apply_output(newer)  # the card's last exit is now the newer one: the older id is forgotten
    await readers._poll_handled()
    assert readers.settled == set()
    assert asked == [newer.id]


async def test_the_marks_of_many_exits_are_all_read(bus: Bus):
    state = DashboardState(extra_symbols=tuple(f"S{number:02}" for number in range(20)))
    readers = Readers(bus, state, Hub(), consumer_group="d", bot_names=("bot",))
    recommendations = [exit_of(symbol, T0) for symbol in state.symbols()]
    for recommendation in recommendations:
        state.apply_output(recommendation)
    for recommendation in recommendations[::2]:
        await HandledMarks(bus, "bot").finish(recommendation.id, b"parked", 60)
    await readers._poll_handled()
    assert [state.handled[item.id]["bot"] for item in recommendations] == ["gave up (parked)", "not handled yet"] * 10


def drain(queue: asyncio.Queue[bytes]) -> list[bytes]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def event_of(item: bytes) -> str:
    return next(line for line in item.decode().split("\n") if line.startswith("event: ")).removeprefix("event: ")
