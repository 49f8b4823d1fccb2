"""The web dashboard's server on a real Redis: /healthz as Redis goes away and comes back (200 while it answers, 503
once it has not answered for longer than the limit, 200 again when it is back); the market context of hand-made
alerts and exits in the snapshot and, in a real browser, on the page; each position a market exit names showing what
each bot decided for that position (its mark and decision at ``<id>@<symbol>``), settled as a symbol exit's."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from typing import Any

import aiohttp

from orderflow_client.bus.connection import Bus
from orderflow_client.bus.decision_records import DecisionRecord, DecisionRecords
from orderflow_client.bus.marks import HandledMarks
from orderflow_client.exit_policy import position_id
from orderflow_client.positions import PositionRegistry
from orderflow_client.wire import ExitRecommendation, OrderFlowAlert, Trade
from services.dashboard.hub import Hub
from services.dashboard.readers import SETTLE_GRACE_NS, Readers
from services.dashboard.server import DashboardOptions, start_dashboard
from services.dashboard.state import DashboardState
from services.dashboard.views import card_view
from tests.support.browser import assert_nothing_left_the_machine, open_browser
from tests.support.context_events import market_exit, market_selloff, seller_with_context
from tests.support.events import recommendation
from tests.support.redis_server import RedisProcess, free_port, redis_server_binary

S = 1_000_000_000
MARKET_SCREENSHOT = "DASHBOARD_MARKET_SCREENSHOT"  # also kept there when set (docs/images/dashboard-market-context.png)


async def health(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with session.get(url + "healthz") as response:
        return response.status, await response.json()


async def wait_for_status(session: aiohttp.ClientSession, url: str, status: int, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    seen: list[tuple[int, dict[str, Any]]] = []
    while time.monotonic() < deadline:
        seen.append(await health(session, url))
        if seen[-1][0] == status:
            return seen[-1][1]
        await asyncio.sleep(0.2)
    raise AssertionError(f"/healthz never answered {status} in {seconds} s: {seen[-3:]}")


async def test_healthz_says_503_once_redis_is_gone_longer_than_the_limit_and_200_when_back():
    binary = redis_server_binary()
    assert binary, "no redis-server found"
    server = RedisProcess(port=free_port(), binary=binary).start()
    bus = await Bus.connect(server.url, prefix=f"health-{uuid.uuid4().hex[:8]}", retries=1)
    dashboard = await start_dashboard(bus, DashboardOptions(port=0, symbols=("AAPL",), unhealthy_after_seconds=3.0))
    try:
        async with aiohttp.ClientSession() as session:
            assert await health(session, dashboard.url) == (200, {"status": "ok", "redis": "ok", "pages": 0})
            gone = time.monotonic()
            server.stop()
            unreachable = await wait_for_status(session, dashboard.url, 503, 30.0)
            assert time.monotonic() - gone > 3.0
            assert unreachable["status"] == "unhealthy" and unreachable["redis"] == "unreachable"
            assert unreachable["redis_unreachable_seconds"] >= 3.0  # rounded to 0.1 s
            server.start()
            back = await wait_for_status(session, dashboard.url, 200, 30.0)
            assert back["redis"] == "ok"
    finally:
        await dashboard.stop()
        await bus.close()
        server.stop()


# --- the market beside the alerts: context labels, a market sell-off and its market-scope exit ---------------------

HELD = ("AAPL", "AIG", "BAC")
CONTEXT_LABELS = {"AAPL": "stock_specific", "BAC": "market_wide", "AIG": "mixed"}


async def publish_market_day(bus: Bus, base: int) -> list[str]:
    """Three positions, a seller on each with its context label (and an ``unknown`` one on AAPL), a falling minute of
    trades on each, then SPY's market sell-off and the market exit naming AAPL and BAC; the ids published, in order."""
    registry = PositionRegistry(bus)
    for symbol in HELD:
        await registry.open(symbol, quantity=500, entry_price="50.40", stop_loss="48.00")
    trades = [
        (
            bus.keys.market(symbol),
            Trade(
                symbol=symbol,
                ts_event=base + second * S,
                ts_recv=base + second * S,
                ts_arrival=base + second * S,
                price=50_400_000_000 - second * (2_000_000 + 1_000_000 * index),
                size=300,
                side="sell" if second % 3 else "buy",
            ),
        )
        for index, symbol in enumerate(HELD)
        for second in range(0, 90, 2)
    ]
    await bus.publish(trades)
    outputs: list[OrderFlowAlert | ExitRecommendation] = [
        seller_with_context(symbol, 1, base + 60 * S, label) for symbol, label in CONTEXT_LABELS.items()
    ]
    outputs += [
        seller_with_context("AAPL", 2, base + 70 * S, "unknown", size=8_000),
        market_selloff("SPY", 1, base + 80 * S, fall_bps=35.0),
        market_exit("SPY", ("AAPL", "BAC"), 1, base + 81 * S),
    ]
    for output in outputs:
        stream = bus.keys.exits if isinstance(output, ExitRecommendation) else bus.keys.alerts
        await bus.publish([(stream, output)])
    return [output.id for output in outputs]


MARKET_EXIT_ID = "SPY:exit:market_selloff:1"
DECISIONS = {
    "AAPL": DecisionRecord(action="tighten_stop", reasons=("tighten the stop to 186.49",), new_stop=186_490_000_000),
    "BAC": DecisionRecord(action="exit", reasons=("SPY is being sold: exit",)),
}
SHOWN = {"AAPL": "tighten stop 186.49 (handled)", "BAC": "exit (handled)"}  # what each card says of the bot


async def decide_market_exit(bus: Bus, bot: str, symbols: tuple[str, ...] = ("AAPL", "BAC")) -> None:
    """What a bot's risk client leaves on the bus once it handled the market exit: for each position (of
    ``symbols``) its decision record and done mark at ``<id>@<symbol>``, then the exit's own done mark."""
    records, marks = DecisionRecords(bus, bot), HandledMarks(bus, bot)
    for symbol in symbols:
        await records.record(position_id(MARKET_EXIT_ID, "market", symbol), DECISIONS[symbol], 60)
        await marks.finish(position_id(MARKET_EXIT_ID, "market", symbol), b"done", 60)
    await marks.finish(MARKET_EXIT_ID, b"done", 60)


async def snapshot_with(session: aiohttp.ClientSession, url: str, count: int) -> dict[str, Any]:
    """The snapshot once it holds ``count`` outputs and a card per position (read once a second), or after 20 s."""
    deadline = time.monotonic() + 20
    while True:
        async with session.get(url + "api/snapshot") as response:
            body = await response.json()
        cards = [card["symbol"] for card in body["summary"]["cards"]]
        if (len(body["log"]) >= count and cards == list(HELD)) or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.2)


async def test_the_snapshot_carries_each_context_label_the_market_banner_and_the_market_exit(redis_url, key_prefix):
    """Hand-made outputs on the real bus: each alert's context (label, words, numbers), the banner of SPY's sell-off
    with the positions its exit names and its arithmetic, the named positions red and their last exit the market one
    (an unnamed position keeps its own colour); the banner goes once the sell-off is older than the alert window."""
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    dashboard = await start_dashboard(bus, DashboardOptions(port=0))
    base = time.time_ns() - 20 * 60 * S
    try:
        ids = await publish_market_day(bus, base)
        async with aiohttp.ClientSession() as session:
            body = await snapshot_with(session, dashboard.url, len(ids))
            log = {item["id"]: item for item in body["log"]}
            assert sorted(log) == sorted(ids)
            for symbol, label in CONTEXT_LABELS.items():
                context = log[f"{symbol}:large_seller:1"]["context"]
                assert context["label"] == label and context["words"] == label.replace("_", "-")
                assert context["index"] == "SPY" and context["window_seconds"] == 300
            assert log["BAC:large_seller:1"]["context"]["numbers"] == (
                "SPY -18.2 bps, stock -21.5 bps, relative -1.5 bps (beta 1.10), 300 s"
            )
            assert log["AAPL:large_seller:2"]["context"]["words"] == "unknown"
            assert log["AAPL:large_seller:2"]["context"]["numbers"] == "no SPY event in the last 60 s"
            selloff = log["SPY:market_selloff:1"]
            assert selloff["kind"] == "market_selloff" and selloff["colour"] == "red"
            assert selloff["what"] == "market sell-off: SPY fell 35.0 bps in 300 s, 72% sold"
            exit_line = log["SPY:exit:market_selloff:1"]
            assert (exit_line["scope"], exit_line["positions"], exit_line["action"]) == (
                "market",
                ["AAPL", "BAC"],
                "exit",
            )
            assert (exit_line["expected_fall_bps"], exit_line["cost_bps"]) == (42.0, 1.5)
            assert exit_line["what"].startswith("exit recommendation (market sell-off): SPY is being sold")

            [banner] = body["summary"]["market"]
            assert (banner["index"], banner["severity"], banner["fall_bps"]) == ("SPY", "critical", 35.0)
            assert banner["time"] == (base + 80 * S) // 1_000_000
            assert banner["exit"]["positions"] == ["AAPL", "BAC"]
            assert banner["exit"]["action_words"] == "exit: expected fall 42.0 bps vs cost 1.5 bps"
            cards = {card["symbol"]: card for card in body["summary"]["cards"]}
            assert [cards[symbol]["colour"] for symbol in HELD] == ["red", "yellow", "red"]  # AIG is not named
            assert cards["AAPL"]["last_exit"]["from"] == "SPY" and cards["AAPL"]["last_exit"]["scope"] == "market"
            assert cards["AIG"]["last_exit"] is None

            # two minutes of market time later (the alert window), the banner is gone; the log keeps the lines
            later = seller_with_context("AIG", 2, base + 81 * S + 121 * S, "mixed")
            await bus.publish([(bus.keys.alerts, later)])
            body = await snapshot_with(session, dashboard.url, len(ids) + 1)
            assert body["summary"]["market"] == []
            assert len(body["log"]) == len(ids) + 1
    finally:
        await dashboard.stop()
        await bus.close()


async def test_the_page_shows_the_market_banner_and_the_context_badges_in_a_real_browser(
    redis_url, key_prefix, tmp_path
):
    """The page in headless chromium: the banner (index, severity, fall, time in ET, the positions named), a badge
    with each label's words and its numbers in the title, the exit's action, each named card the bot's decision for
    its position; a screenshot (``tmp_path``, and the path
    in ``DASHBOARD_MARKET_SCREENSHOT``, e.g. ``docs/images/dashboard-market-context.png``); nothing leaves the
    machine."""
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    dashboard = await start_dashboard(bus, DashboardOptions(port=0))
    base = time.time_ns() - 20 * 60 * S
    try:
        ids = await publish_market_day(bus, base)
        await decide_market_exit(bus, "bot")  # the dashboard's default bot name
        async with open_browser(width=1400, height=1100) as browser:
            page = await browser.open(dashboard.url)
            await page.wait_for(f"document.querySelectorAll('#log li').length === {len(ids)}", 30, "every output")
            await page.wait_for("!document.getElementById('market-banner').hidden", 10, "the market banner")
            banner = await page.evaluate(
                "(() => { const line = document.querySelector('#market-banner .market-line');"
                " return {index: line.dataset.index, text: line.textContent,"
                " utc: line.querySelector('time').title}; })()"
            )
            assert banner["index"] == "SPY"
            for words in ("MARKET SELL-OFF SPY", "critical", "fell 35.0 bps in 300 s, 72% sold", " ET"):
                assert words in banner["text"], banner
            assert "exit: AAPL, BAC (expected fall 42.0 bps vs cost 1.5 bps)" in banner["text"], banner
            assert banner["utc"].endswith("Z (UTC)")
            badges = await page.evaluate(
                "[...document.querySelectorAll('#log li .ctx')].map(b => ({id: b.closest('li').dataset.id,"
                " label: b.dataset.label, text: b.textContent, title: b.title}))"
            )
            shown = {badge["id"]: badge for badge in badges}
            for symbol, label in CONTEXT_LABELS.items():
                badge = shown[f"{symbol}:large_seller:1"]
                assert badge["label"] == label and badge["text"] == label.replace("_", "-")
                assert "index SPY" in badge["title"] and "beta" in badge["title"] and "window 300 s" in badge["title"]
            assert shown["AAPL:large_seller:2"]["text"] == "unknown"
            action = await page.evaluate(
                "(() => { const li = document.querySelector('#log li[data-kind=\"exit\"]');"
                " return [li.querySelector('.act').textContent, li.querySelector('.exit-detail').textContent]; })()"
            )
            assert action == ["action: exit", "market scope: AAPL, BAC · expected fall 42.0 bps vs cost 1.5 bps"]
            colours = await page.evaluate(
                "Object.fromEntries([...document.querySelectorAll('#cards .card')]"
                ".map(card => [card.dataset.symbol, card.dataset.colour]))"
            )
            assert colours == {"AAPL": "red", "AIG": "yellow", "BAC": "red"}
            exit_fact = await page.evaluate(
                "document.querySelector('.card[data-symbol=\"AAPL\"] .last-exit').textContent"
            )
            assert "(SPY, market scope) · exit: expected fall 42.0 bps vs cost 1.5 bps" in exit_fact
            bot_lines = "Object.fromEntries([...document.querySelectorAll('#cards .card')].map(card =>"
            bot_lines += " [card.dataset.symbol, (card.querySelector('.bot') || {}).textContent || null]))"
            await page.wait_for(f"({bot_lines}).BAC === 'bot: {SHOWN['BAC']}'", 10, "BAC's decision on its card")
            assert await page.evaluate(bot_lines) == {
                "AAPL": f"bot: {SHOWN['AAPL']}",
                "AIG": None,
                "BAC": f"bot: {SHOWN['BAC']}",
            }
            marks = await page.evaluate("window.orderflowDashboard.chart('BAC').marks.length")
            assert marks == 2  # its seller, and the market exit naming it
            await asyncio.sleep(1.0)  # the charts drawn
            shot = await page.screenshot(tmp_path / "dashboard-market-context.png")
            assert shot.stat().st_size > 20_000
            if os.environ.get(MARKET_SCREENSHOT):
                shutil.copy(shot, os.environ[MARKET_SCREENSHOT])
            # a phone: the banner wraps, nothing wider than the screen
            await page.set_viewport(390, 844, mobile=True)
            await page.wait_for("document.documentElement.scrollWidth <= 390", 10, "the page to fit a phone")
            assert await page.evaluate("document.getElementById('market-banner').scrollWidth") <= 390
            await page.screenshot(tmp_path / "dashboard-market-context-phone.png")
            assert not page.errors, page.errors
            violations = await page.evaluate("window.orderflowDashboard.cspViolations")
            assert set(violations) <= {"style-src-elem"}  # the chart library's own <style>; its rules are in ours
            assert_nothing_left_the_machine(browser, page)
    finally:
        await dashboard.stop()
        await bus.close()


# --- what each bot decided for each position a market exit names -------------------------------------------------


async def cards_when(session: aiohttp.ClientSession, url: str, bots: dict[str, dict[str, str]]) -> dict[str, Any]:
    """The snapshot's cards once each card of ``bots`` shows those bots' words on its last exit (read five times a
    second), or after 20 s."""
    deadline = time.monotonic() + 20
    while True:
        async with session.get(url + "api/snapshot") as response:
            cards = {card["symbol"]: card for card in (await response.json())["summary"]["cards"]}
        shown = {symbol: (cards.get(symbol, {}).get("last_exit") or {}).get("bots") for symbol in bots}
        if shown == bots or time.monotonic() > deadline:
            return cards
        await asyncio.sleep(0.2)


async def test_each_card_a_market_exit_names_shows_the_bots_decision_for_its_own_position(redis_url, key_prefix):
    """SPY's market exit names AAPL and BAC; the bot marks and records each position at ``<id>@<symbol>``
    (tighten_stop on AAPL, exit on BAC), then the exit itself: each card says its own decision, AIG (not named)
    none; until the bot acts, both say not handled yet."""
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    dashboard = await start_dashboard(bus, DashboardOptions(port=0, bot_names=("risk-bot",)))
    base = time.time_ns() - 20 * 60 * S
    try:
        ids = await publish_market_day(bus, base)
        assert MARKET_EXIT_ID in ids
        async with aiohttp.ClientSession() as session:
            waiting = {symbol: {"risk-bot": "not handled yet"} for symbol in ("AAPL", "BAC")}
            cards = await cards_when(session, dashboard.url, waiting)
            assert {symbol: cards[symbol]["last_exit"]["bots"] for symbol in ("AAPL", "BAC")} == waiting
            await decide_market_exit(bus, "risk-bot")
            decided = {symbol: {"risk-bot": words} for symbol, words in SHOWN.items()}
            cards = await cards_when(session, dashboard.url, decided)
            assert {symbol: cards[symbol]["last_exit"]["bots"] for symbol in SHOWN} == decided
            assert cards["AAPL"]["last_exit"]["id"] == cards["BAC"]["last_exit"]["id"] == MARKET_EXIT_ID
            assert cards["AIG"]["last_exit"] is None
            assert dashboard.state.handled[position_id(MARKET_EXIT_ID, "market", "BAC")] == {"risk-bot": SHOWN["BAC"]}
    finally:
        await dashboard.stop()
        await bus.close()


class Clock:
    def __init__(self, at: int) -> None:
        self.at = at

    def __call__(self) -> int:
        return self.at


async def test_a_market_exits_positions_settle_each_on_its_own_and_a_position_passed_over_says_skipped(
    redis_url, key_prefix, monkeypatch
):
    """The readers on the real Redis, two bots, the market exit naming AAPL and BAC. bot-1 holds the exit's lease
    (``working on it`` on both), records and marks AAPL, then finishes the exit without BAC (it does not hold it:
    ``skipped (not held)``); bot-2 records and marks both. A position with every bot's mark final and decision known
    is settled at once (no more GETs for it); the index's own key (SPY's, no decision: none is recorded for the whole
    exit) after ``SETTLE_GRACE_NS``. A closed position drops its words; the other position keeps its own until a
    newer exit of its own replaces the market one."""
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    clock = Clock(time.time_ns())
    state = DashboardState(extra_symbols=("AAPL", "BAC"))
    readers = Readers(bus, state, Hub(), consumer_group="d", bot_names=("bot-1", "bot-2"), clock=clock)
    state.apply_output(market_exit("SPY", ("AAPL", "BAC"), 1, clock.at))
    aapl, bac = (position_id(MARKET_EXIT_ID, "market", symbol) for symbol in ("AAPL", "BAC"))
    asked: list[str] = []
    holder = HandledMarks.holder

    async def counted(marks: HandledMarks, recommendation_id: str) -> bytes | None:
        asked.append(recommendation_id)
        return await holder(marks, recommendation_id)

    monkeypatch.setattr(HandledMarks, "holder", counted)
    try:
        await readers._poll_handled()
        assert state.handled[aapl] == state.handled[bac] == {"bot-1": "not handled yet", "bot-2": "not handled yet"}
        assert sorted(asked) == sorted([MARKET_EXIT_ID, aapl, bac] * 2)  # the exit's own mark read once per bot
        bot_1 = HandledMarks(bus, "bot-1")
        assert await bot_1.take_lease(MARKET_EXIT_ID, b"working:0123456789abcdef", 60)
        await readers._poll_handled()
        assert state.handled[aapl]["bot-1"] == state.handled[bac]["bot-1"] == "working on it"
        await decide_market_exit(bus, "bot-1", ("AAPL",))  # (finishes the exit too: BAC passed over)
        await decide_market_exit(bus, "bot-2")
        await readers._poll_handled()
        assert state.handled[aapl] == {"bot-1": SHOWN["AAPL"], "bot-2": SHOWN["AAPL"]}
        assert state.handled[bac] == {"bot-1": "skipped (not held)", "bot-2": SHOWN["BAC"]}
        assert card_view("BAC", state)["last_exit"]["bots"] == {
            "bot-1": "skipped (not held)",
            "bot-2": "exit (handled)",
        }
        assert card_view("AAPL", state)["last_exit"]["bots"]["bot-1"] == "tighten stop 186.49 (handled)"
        assert readers.settled == {aapl, bac}  # final and decided: no grace
        assert state.handled[MARKET_EXIT_ID] == {"bot-1": "handled", "bot-2": "handled"}  # SPY's own: no decision
        asked.clear()
        clock.at += SETTLE_GRACE_NS - S
        await readers._poll_handled()
        assert asked == [MARKET_EXIT_ID, MARKET_EXIT_ID]  # only the index's key, once per bot
        clock.at += S
        await readers._poll_handled()
        assert readers.settled == {aapl, bac, MARKET_EXIT_ID} and readers.final_since == {}
        asked.clear()
        await readers._poll_handled()
        assert asked == []
        state.forget("AAPL")  # AAPL closed: its words go, BAC's stay
        assert aapl not in state.handled and state.handled[bac]["bot-2"] == SHOWN["BAC"]
        own = recommendation(number=clock.at + S, symbol="BAC")  # BAC's own exit, newer: the market one is forgotten
        state.apply_output(own)
        await readers._poll_handled()
        assert bac not in state.handled and state.handled[own.id] == {
            "bot-1": "not handled yet",
            "bot-2": "not handled yet",
        }
        assert card_view("BAC", state)["last_exit"]["bots"] == state.handled[own.id]
    finally:
        await bus.close()
