"""``orderflow dashboard`` in a real browser, fed by the real services on a real Redis:
``orderflow replay`` of four scenarios (one symbol each, in one capture, at 40x) → ``orderflow detect`` → a stand-in
bot, and the dashboard as its own process. The page is opened in headless chromium before any market data flows;
the test then reads the DOM and checks, live, that cards, colours, counts and the alert log match what the detector
published in Redis. A screenshot is kept (``tmp_path``; also the path in ``DASHBOARD_SCREENSHOT``, e.g. the README's
``docs/images/dashboard.png``), the page is looked at phone-sized, and nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import os
import shutil
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis

from orderflow_client.bus.connection import Bus
from orderflow_client.bus.decision_records import read_decisions
from orderflow_client.dashboard_panel import decision_words
from orderflow_client.prices import format_price
from orderflow_client.wire import BookUpdate, ExitRecommendation, OrderFlowAlert, Trade, decode, unbatched
from services.dashboard.server import DashboardOptions, start_dashboard
from services.ingest.capture import format_line
from services.tools.scenarios import frames
from tests.support.browser import Page, assert_nothing_left_the_machine, open_browser
from tests.support.cli import OrderflowProcess, orderflow_environment, redis_environment, run_orderflow, start_orderflow
from tests.support.events import large_seller
from tests.support.paths import shared_data
from tests.support.redis_server import free_port
from tests.support.waiting import wait_for, wait_for_async

pytestmark = pytest.mark.redis
SCENARIOS = {"SELLERS": "large-sellers", "BURST": "red-burst", "BOTH": "two-sided", "QUIET": "quiet"}
TOKEN = "dash-token-5d1e9c0a77b3"
COLOURS = {"yellow": "rgb(253, 216, 53)", "orange": "rgb(255, 152, 0)", "red": "rgb(239, 83, 80)"}
CARDS = """[...document.querySelectorAll('#cards .card')].map(card => ({
  symbol: card.dataset.symbol, colour: card.dataset.colour, state: card.dataset.state,
  head: card.querySelector('.card-head').textContent, facts: card.querySelector('.facts').textContent,
  border: getComputedStyle(card).borderLeftColor}))"""
LOG = """[...document.querySelectorAll('#log li')].map(li => ({id: li.dataset.id, symbol: li.dataset.symbol,
  severity: li.dataset.severity, kind: li.dataset.kind, hidden: li.classList.contains('hidden'),
  colour: getComputedStyle(li).color, time: li.querySelector('time').textContent,
  utc: li.querySelector('time').title}))"""
CONNECTION = "document.getElementById('connection').dataset.state"


def write_capture(path: Path) -> None:
    """The four scenarios in one capture file, frames merged in receive order (they share one session)."""
    streams = [frames(name, 7, symbol) for symbol, name in SCENARIOS.items()]
    with path.open("wb") as out:
        for ts_recv, frame in heapq.merge(*streams, key=lambda item: item[0]):
            out.write(format_line(ts_recv, frame))


def published(client: redis.Redis, prefix: str) -> tuple[list[OrderFlowAlert], list[ExitRecommendation]]:
    alerts = [decode(fields[b"alert"]) for _id, fields in client.xrange(f"{prefix}:alerts")]
    exits = [decode(fields[b"exit"]) for _id, fields in client.xrange(f"{prefix}:exits")]
    return alerts, exits  # type: ignore[return-value]


def last_trade(client: redis.Redis, prefix: str, symbol: str) -> Trade | None:
    """The symbol's latest trade: the greatest ts_event, the last in stream order among equal ones."""
    for _id, fields in client.xrevrange(f"{prefix}:md:{{{symbol}}}", count=200):
        latest = None
        for payload in fields.values():
            for event in unbatched(decode(payload)):
                if isinstance(event, Trade) and (latest is None or event.ts_event >= latest.ts_event):
                    latest = event
        if latest is not None:
            return latest
    return None


def clock_of(client: redis.Redis, prefix: str) -> int:
    """The dashboard's market clock: the latest ts_event on the shown symbols' streams and the outputs (statuses,
    stamped on the wall clock, do not move it)."""
    latest = 0
    for stream in [f"{prefix}:md:{{{symbol}}}" for symbol in SCENARIOS] + [f"{prefix}:alerts", f"{prefix}:exits"]:
        for _id, fields in client.xrevrange(stream, count=1):
            for payload in fields.values():
                latest = max(latest, *(event.ts_event for event in unbatched(decode(payload))))
    return latest


def get(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def test_the_dashboard_shows_what_the_detector_published_live(redis_url, key_prefix, tmp_path):
    capture = tmp_path / "four.capture"
    write_capture(capture)
    page_port = free_port()
    logs = tmp_path / "logs"
    env = redis_environment(redis_url, key_prefix, tmp_path, ORDER_FLOW_DASHBOARD_TOKEN=TOKEN)
    processes: dict[str, OrderflowProcess] = {}

    def start(name: str, *arguments: str) -> None:
        processes[name] = start_orderflow(*arguments, env={**env, "ORDER_FLOW_METRICS_PORT": str(free_port())})

    client = redis.Redis.from_url(redis_url)
    base = f"http://127.0.0.1:{page_port}/"
    try:
        for symbol in SCENARIOS:
            opened = run_orderflow(
                "positions", "open", symbol, "--quantity", "500", "--entry", "50.10", "--stop", "48.00", env=env
            )
            assert opened.returncode == 0, opened.stdout + opened.stderr
        start("dashboard", "dashboard", "--port", str(page_port), "--bot", "dash-bot")
        wait_for(lambda: listening(page_port), 30, "the dashboard")
        # the token: required here (it is set), from a header or ?token=, never in the log
        assert get(base + "api/snapshot") == 401
        assert get(base + "api/snapshot?token=wrong-token-0000") == 401
        assert get(base + "api/snapshot", {"Authorization": f"Bearer {TOKEN}"}) == 200
        assert get(base + "healthz") == 200

        async with open_browser(width=1400, height=1000) as browser:
            page = await browser.open(base + "?token=" + TOKEN)
            await page.wait_for("document.querySelectorAll('#cards .card').length === 4", what="four cards")
            assert await page.evaluate("location.search") == ""  # the token left the address bar
            assert await page.evaluate("document.getElementById('last-frame').textContent") == "no data yet"
            assert await page.evaluate("document.querySelectorAll('#log li').length") == 0

            start("bot", "risk-manager", "--name", "dash-bot")
            start("detect", "detect")
            start("replay", "replay", "--speed", "40", str(capture))

            # live: the first alert reaches the page while the session still plays
            await page.wait_for("document.querySelectorAll('#log li').length >= 1", 60, "a first alert on the page")
            first = (await page.evaluate(LOG))[-1]
            alerts, exits = published(client, key_prefix)
            assert first["id"] == min(alerts, key=lambda alert: alert.ts_event).id
            assert first["time"].endswith(" ET") and first["utc"].endswith("Z (UTC)")
            assert len(alerts) < 8  # the rest is still to come

            def all_in() -> bool:
                exits = published(client, key_prefix)[1]
                lags = [
                    group["lag"]
                    for symbol in SCENARIOS
                    for group in client.xinfo_groups(f"{key_prefix}:md:{{{symbol}}}")
                    if group["name"] == b"detector"
                ]
                return len(exits) >= 2 and len(lags) == 4 and all(lag == 0 for lag in lags)

            await wait_for_async(lambda: processes["replay"].poll() is not None, 120, "the replay's end")
            processes["replay"].expect_exit(0)
            await wait_for_async(all_in, 60, "both exits published and the detector caught up")
            alerts, exits = published(client, key_prefix)
            await page.wait_for(
                f"document.querySelectorAll('#log li').length === {len(alerts) + len(exits)}", 20, "every output"
            )
            shown = {item["id"]: item for item in await page.evaluate(LOG)}
            assert set(shown) == {item.id for item in [*alerts, *exits]}
            for exit_recommendation in exits:
                assert shown[exit_recommendation.id]["colour"] == COLOURS["red"]
                assert shown[exit_recommendation.id]["severity"] == "critical"
            for alert in alerts:
                assert shown[alert.id]["severity"] == alert.severity
                if alert.alert_type == "red_burst":
                    assert shown[alert.id]["colour"] == COLOURS["red"]
            sellers = sorted((a for a in alerts if a.symbol == "SELLERS"), key=lambda alert: alert.ts_event)
            assert shown[sellers[0].id]["colour"] == COLOURS["yellow"]  # one large seller in the window
            assert shown[sellers[1].id]["colour"] == COLOURS["orange"]  # several

            # cards: red where an exit was recommended or a red burst seen in the alert window (market clock),
            # yellow/orange/green by the window's sellers otherwise
            clock = clock_of(client, key_prefix)
            exited = {exit_recommendation.symbol for exit_recommendation in exits}
            assert exited == {"SELLERS", "BURST"}
            recent_exits = {item.symbol for item in exits if clock - item.ts_event <= 120 * 10**9}
            expected_colours, sellers_shown = {}, {}
            for symbol in sorted(SCENARIOS):
                in_window = [
                    alert for alert in alerts if alert.symbol == symbol and clock - alert.ts_event <= 120 * 10**9
                ]
                sellers_shown[symbol] = sum(alert.alert_type == "large_seller" for alert in in_window)
                expected_colours[symbol] = (
                    "red"
                    if symbol in recent_exits or any(alert.alert_type == "red_burst" for alert in in_window)
                    else "orange"
                    if sellers_shown[symbol] >= 2
                    else "yellow"
                    if sellers_shown[symbol] == 1
                    else "green"
                )
            wanted = json.dumps(expected_colours, separators=(",", ":"))
            await page.wait_for(
                "JSON.stringify(Object.fromEntries([...document.querySelectorAll('#cards .card')]"
                f".map(card => [card.dataset.symbol, card.dataset.colour]))) === '{wanted}'",
                10,
                f"the cards' colours {expected_colours}",
            )
            cards = {card["symbol"]: card for card in await page.evaluate(CARDS)}
            for symbol in SCENARIOS:
                expected, sellers_in_window = expected_colours[symbol], sellers_shown[symbol]
                assert cards[symbol]["colour"] == expected, (symbol, cards[symbol])
                assert f"{sellers_in_window} large seller" in cards[symbol]["facts"]
                if expected != "green":
                    assert cards[symbol]["border"] == COLOURS[expected]
                assert cards[symbol]["state"] == "live"
            # P&L from the latest trade against the 50.10 entry, 500 shares
            for symbol in SCENARIOS:
                trade = last_trade(client, key_prefix, symbol)
                assert trade is not None
                pnl = (trade.price - 50_100_000_000) * 500 / 1e9
                await page.wait_for(
                    f"document.querySelector('.card[data-symbol=\"{symbol}\"] .pnl').textContent"
                    f".startsWith('P&L {'+' if pnl >= 0 else ''}{pnl:,.2f}')",
                    10,
                    f"{symbol}'s P&L {pnl:.2f}",
                )
            # the bot's handling of each exit recommendation, and the decision it recorded on the bus
            await page.wait_for(
                "[...document.querySelectorAll('.card .bot')].filter(dd => dd.textContent.endsWith('(handled)'))"
                ".length === 2",
                30,
                "the bot's handled marks",
            )
            async with await Bus.connect(redis_url, prefix=key_prefix) as reader:
                decided = await read_decisions(reader, "dash-bot", [item.id for item in exits])
            assert set(decided) == {item.id for item in exits}  # the risk manager recorded both
            for item in exits:
                bot_line = await page.evaluate(
                    f"document.querySelector('.card[data-symbol=\"{item.symbol}\"] .bot').textContent"
                )
                assert bot_line == f"dash-bot: {decision_words(decided[item.id])} (handled)"
            # header: alerts of the last 5 minutes, the largest seller, feed health
            recent = sum(clock - alert.ts_event <= 300 * 10**9 for alert in alerts)
            assert await page.evaluate("document.getElementById('alerts-5m').textContent") == str(recent)
            largest = max((a for a in alerts if a.alert_type == "large_seller"), key=lambda alert: alert.order_size)
            assert (await page.evaluate("document.getElementById('largest-seller').textContent")).startswith(
                f"{largest.symbol} {largest.order_size:,} @ "
            )
            assert await page.evaluate("document.getElementById('feed').textContent") == "no status yet"  # a replay
            assert (await page.evaluate("document.getElementById('last-frame').textContent")).endswith(" ago")
            assert await page.evaluate("document.getElementById('lag').textContent") == "0 entries"
            assert (await page.evaluate("document.getElementById('latency').textContent")).endswith(" ms")
            # the chart: a price line and markers drawn by the library from the wheel
            assert await page.evaluate("document.querySelectorAll('.card .chart canvas').length") >= 4 * 3
            assert (await page.evaluate("document.getElementById('library-version').textContent")).startswith("v5.")
            # the filters
            await page.evaluate(
                "(() => { const s = document.getElementById('filter-symbol'); s.value = 'BURST';"
                " s.dispatchEvent(new Event('change')); })()"
            )
            visible = [item for item in await page.evaluate(LOG) if not item["hidden"]]
            assert {item["symbol"] for item in visible} == {"BURST"}
            assert len(visible) == sum(item.symbol == "BURST" for item in [*alerts, *exits])
            await page.evaluate(
                "(() => { const s = document.getElementById('filter-symbol'); s.value = '';"
                " s.dispatchEvent(new Event('change'));"
                " const v = document.getElementById('filter-severity'); v.value = 'critical';"
                " v.dispatchEvent(new Event('change')); })()"
            )
            visible = [item for item in await page.evaluate(LOG) if not item["hidden"]]
            assert len(visible) == sum(item.severity == "critical" for item in [*alerts, *exits]) > 0
            await page.evaluate(
                "(() => { const v = document.getElementById('filter-severity'); v.value = '';"
                " v.dispatchEvent(new Event('change')); })()"
            )
            await page.set_viewport(1400, 1750)
            await page.wait_for("document.querySelectorAll('#log li').length > 0", 5, "the log after resizing")
            await page.screenshot(tmp_path / "dashboard.png")
            if os.environ.get("DASHBOARD_SCREENSHOT"):
                shutil.copy(tmp_path / "dashboard.png", os.environ["DASHBOARD_SCREENSHOT"])

            # a phone: one column, nothing wider than the screen
            await page.set_viewport(390, 844, mobile=True)
            await page.wait_for("document.documentElement.scrollWidth <= 390", 10, "the page to fit a phone")
            widths = await page.evaluate(
                "[...document.querySelectorAll('#cards .card')].map(card => card.getBoundingClientRect().width)"
            )
            assert all(width <= 390 for width in widths)
            await page.screenshot(tmp_path / "dashboard-phone.png")

            assert await page.evaluate("window.orderflowDashboard.resets") == 0
            violations = await page.evaluate("window.orderflowDashboard.cspViolations")
            assert set(violations) <= {"style-src-elem"}  # the chart library's own <style>; its rules are in ours
            assert not page.errors, page.errors
            assert_nothing_left_the_machine(browser, page)
        for name in ("bot", "detect", "dashboard"):
            processes[name].send_signal(signal.SIGTERM)
            processes[name].expect_exit(0, timeout=30)
    finally:
        for process in processes.values():
            process.stop_if_running()
        client.close()
    everything = "".join(path.read_text() for path in logs.glob("*.jsonl"))
    assert TOKEN not in everything
    started = [json.loads(line) for line in everything.splitlines() if "order_flow.dashboard_started" in line]
    assert started and started[0]["token_required"] is True


def test_the_dashboard_refuses_an_address_beyond_the_machine_without_a_token(redis_url, key_prefix, tmp_path):
    env = redis_environment(redis_url, key_prefix, tmp_path)
    refused = run_orderflow("dashboard", "--host", "0.0.0.0", "--port", str(free_port()), env=env)
    assert refused.returncode == 2
    assert "ORDER_FLOW_DASHBOARD_TOKEN" in refused.stdout + refused.stderr


def test_the_demo_runs_the_dashboard_beside_it_on_the_embedded_bus(tmp_path):
    port = free_port()
    env = orderflow_environment(ORDER_FLOW_LOG_DIR=str(tmp_path / "logs"), ORDER_FLOW_METRICS_PORT="0", COLUMNS="200")
    demo = start_orderflow(
        "demo", "--dashboard", "--dashboard-port", str(port), "--scenario", "large-sellers", "--speed", "400", env=env
    )
    try:

        def exit_shown() -> bool:
            if not listening(port):
                return False
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/snapshot", timeout=5) as response:
                cards = json.load(response)["summary"]["cards"]
            return [card["symbol"] for card in cards] == ["SELLERS"] and cards[0]["last_exit"] is not None

        wait_for(exit_shown, 60, "the demo's exit on its dashboard")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/snapshot", timeout=5) as response:
            snapshot = json.load(response)
        card = snapshot["summary"]["cards"][0]
        # red while the exit is in the alert window of the market clock (at 400x it leaves it in 0.3 s)
        assert (card["colour"] == "red") == (snapshot["summary"]["clock"] - card["last_exit"]["time"] <= 120_000), card
        assert [item["colour"] for item in snapshot["log"] if item["kind"] == "exit"] == ["red"]
        wait_for(lambda: "Ctrl-C to end" in demo.output()[0], 30, "the demo's summary")
        assert demo.poll() is None  # the page stays up after the summary, until Ctrl-C
        demo.send_signal(signal.SIGINT)
        demo.expect_exit(0, timeout=30)
    finally:
        demo.stop_if_running()
    assert f"dashboard: http://127.0.0.1:{port}/ (New York time)" in demo.output()[0]


async def test_a_real_day_with_depth_shows_the_book_and_what_was_published(redis_url, key_prefix, tmp_path):
    """Amazon's LOBSTER day (2012-06-21, five levels of the book) replayed as fast as Redis takes it, detected, on
    the page opened before: the book's top ask levels are the last BookUpdate's, the log is what was published."""
    day = shared_data("lobster", "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip")
    page_port = free_port()
    env = redis_environment(redis_url, key_prefix, tmp_path)
    processes: dict[str, OrderflowProcess] = {}
    client = redis.Redis.from_url(redis_url)
    try:
        opened = run_orderflow("positions", "open", "AMZN", "--quantity", "100", "--entry", "220.00", env=env)
        assert opened.returncode == 0, opened.stdout + opened.stderr
        processes["dashboard"] = start_orderflow("dashboard", "--port", str(page_port), env=env)
        wait_for(lambda: listening(page_port), 30, "the dashboard")
        async with open_browser() as browser:
            page = await browser.open(f"http://127.0.0.1:{page_port}/")
            await page.wait_for("document.querySelectorAll('#cards .card').length === 1", what="the AMZN card")
            processes["detect"] = start_orderflow("detect", env={**env, "ORDER_FLOW_METRICS_PORT": str(free_port())})
            processes["replay"] = start_orderflow("replay", str(day), env=env)
            await wait_for_async(lambda: processes["replay"].poll() is not None, 120, "the replay's end")
            processes["replay"].expect_exit(0)

            def caught_up() -> bool:
                groups = client.xinfo_groups(f"{key_prefix}:md:{{AMZN}}")
                return any(group["name"] == b"detector" and group["lag"] == 0 for group in groups)

            await wait_for_async(caught_up, 120, "the detector to catch up")
            book = None
            for _id, fields in client.xrevrange(f"{key_prefix}:md:{{AMZN}}", count=50):
                books = [
                    event
                    for payload in fields.values()
                    for event in unbatched(decode(payload))
                    if isinstance(event, BookUpdate)
                ]
                if books:
                    book = max(books, key=lambda update: update.ts_event)
                    break
            assert book is not None and len(book.asks) == 5
            expected_asks = [[format_price(price), f"{size:,}"] for price, size in book.asks]
            rows = (
                "[...document.querySelectorAll('.card[data-symbol=\"AMZN\"] .book tr')].slice(1)"
                ".map(row => [row.children[1].textContent, row.children[2].textContent])"
            )
            expected = json.dumps(json.dumps(expected_asks, separators=(",", ":")))
            await page.wait_for(f"JSON.stringify({rows}) === {expected}", 20, "the book's top five asks")
            alerts, exits = published(client, key_prefix)
            await page.wait_for(
                f"document.querySelectorAll('#log li').length === {len(alerts) + len(exits)}", 20, "every output"
            )
            shown = {item["id"] for item in await page.evaluate(LOG)}
            assert shown == {item.id for item in [*alerts, *exits]}
            trade = last_trade(client, key_prefix, "AMZN")
            assert trade is not None
            await page.wait_for(
                "document.querySelector('.card[data-symbol=\"AMZN\"] .price').textContent"
                f" === '${format_price(trade.price)}'",
                10,
                "the last trade's price",
            )
            assert (await page.evaluate("document.getElementById('clock').textContent")).endswith(" ET")
            await page.screenshot(tmp_path / "dashboard-amzn.png")
            assert not page.errors, page.errors
            assert_nothing_left_the_machine(browser, page)
        for name in ("detect", "dashboard"):
            processes[name].send_signal(signal.SIGTERM)
            processes[name].expect_exit(0, timeout=30)
    finally:
        for process in processes.values():
            process.stop_if_running()
        client.close()


class AlertsPublished:
    """Alerts published on the bus by the test itself (one symbol, now-ish times), their ids in order."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.ids: list[str] = []

    async def publish(self, count: int) -> None:
        for _ in range(count):
            number = len(self.ids)
            alert = large_seller("RECO", number, time.time_ns(), 10_000 + number)
            await self.bus.publish([(self.bus.keys.alerts, alert)])
            self.ids.append(alert.id)

    async def shown_once_each(self, page: Page, what: str) -> None:
        """Every alert published is on the page, each once, and nothing else: waited for, then checked again after
        the page has had time to show any twice."""
        await page.wait_for(
            f"{CONNECTION} === 'live' && document.querySelectorAll('#log li').length >= {len(self.ids)}", 30, what
        )
        await asyncio.sleep(2.5)
        shown = [item["id"] for item in await page.evaluate(LOG)]
        assert sorted(shown) == sorted(self.ids), (what, shown)
        assert await page.evaluate(CONNECTION) == "live"


async def test_the_page_reconnects_by_itself_to_a_restarted_dashboard_and_shows_every_alert_once(
    redis_url, key_prefix, tmp_path
):
    """The page open, its dashboard process stopped and a new one started on the same port: alerts published before,
    while it is down and after all show once, with no reload of the page."""
    page_port = free_port()
    env = redis_environment(redis_url, key_prefix, tmp_path)
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    alerts = AlertsPublished(bus)
    processes: dict[str, OrderflowProcess] = {}
    try:
        processes["first"] = start_orderflow("dashboard", "--port", str(page_port), env=env)
        wait_for(lambda: listening(page_port), 30, "the dashboard")
        async with open_browser() as browser:
            page = await browser.open(f"http://127.0.0.1:{page_port}/")
            await page.wait_for(f"{CONNECTION} === 'live'", 20, "the page live")
            await alerts.publish(3)
            await alerts.shown_once_each(page, "the alerts before the restart")

            processes["first"].send_signal(signal.SIGTERM)
            processes["first"].expect_exit(0, timeout=30)
            await page.wait_for(f"{CONNECTION} === 'lost'", 10, "the page to see its dashboard gone")
            await alerts.publish(3)  # while no dashboard runs
            await asyncio.sleep(3.0)  # the page keeps trying the closed port meanwhile
            assert await page.evaluate(CONNECTION) == "lost"

            processes["second"] = start_orderflow("dashboard", "--port", str(page_port), env=env)
            await wait_for_async(lambda: listening(page_port), 30, "the new dashboard")
            await alerts.publish(3)  # after
            await alerts.shown_once_each(page, "the alerts before, during and after the restart")
            assert await page.evaluate("window.orderflowDashboard.resets") >= 1  # another run: a new snapshot
            await alerts.publish(2)  # and it follows the new run live
            await alerts.shown_once_each(page, "the alerts after the reconnection")
            assert await page.evaluate("performance.getEntriesByType('navigation').length") == 1  # never reloaded

            # restarted with an access token this page does not hold: its event stream is refused (401), which ends
            # an EventSource for good; the page says so and keeps trying, rather than "reconnecting…" forever
            processes["second"].send_signal(signal.SIGTERM)
            processes["second"].expect_exit(0, timeout=30)
            guarded = {**env, "ORDER_FLOW_DASHBOARD_TOKEN": TOKEN}
            processes["third"] = start_orderflow("dashboard", "--port", str(page_port), env=guarded)
            await wait_for_async(lambda: listening(page_port), 30, "the dashboard with a token")
            await page.wait_for(
                "document.getElementById('connection').textContent.includes('401')", 15, "the refusal on the page"
            )
            assert await page.evaluate(CONNECTION) == "lost"
            assert not page.errors, page.errors
            assert_nothing_left_the_machine(browser, page)
        processes["third"].send_signal(signal.SIGTERM)
        processes["third"].expect_exit(0, timeout=30)
    finally:
        for process in processes.values():
            process.stop_if_running()
        await bus.close()


async def test_the_page_resumes_after_its_event_stream_is_dropped_and_shows_every_alert_once(redis_url, key_prefix):
    """The dashboard (in this process) ends every page's event stream, as it does when stopping, and goes on: the
    page reconnects by itself with the id of the last event it had (Last-Event-ID) and gets what it missed from the
    dashboard's history, each alert once and without starting again from a snapshot."""
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    alerts = AlertsPublished(bus)
    dashboard = await start_dashboard(bus, DashboardOptions(port=free_port()))
    try:
        async with open_browser() as browser:
            page = await browser.open(dashboard.url)
            await page.wait_for(f"{CONNECTION} === 'live'", 20, "the page live")
            await alerts.publish(3)
            await alerts.shown_once_each(page, "the alerts before the drop")
            streams = len(dashboard.hub.queues)
            assert streams == 1
            for queue in list(dashboard.hub.queues):
                queue.put_nowait(b"")  # the server ends the stream (what a stopping dashboard does)
            await wait_for_async(lambda: not dashboard.hub.queues, 10, "the stream ended")
            await alerts.publish(3)  # before the page is back (it retries after 2 s)
            await wait_for_async(lambda: dashboard.hub.queues, 10, "the page back")
            await alerts.publish(3)
            await alerts.shown_once_each(page, "the alerts before, during and after the drop")
            assert await page.evaluate("window.orderflowDashboard.resets") == 0  # resumed, not started again
            assert await page.evaluate("window.orderflowDashboard.outputs") == 9  # each alert's event once
            asked = [url for url in page.requests if "/events" in url or "/api/snapshot" in url]
            assert len([url for url in asked if "/api/snapshot" in url]) == 1, asked
            assert not page.errors, page.errors
            assert_nothing_left_the_machine(browser, page)
    finally:
        await dashboard.stop()
        await bus.close()


async def test_the_page_formats_midnight_as_00_and_shows_utc_on_the_book_and_chart(redis_url, key_prefix):
    """The page's own formatter: 00:30 in New York reads 00:30:00 ET (not 24:30); the book's time and the chart's
    hover legend carry UTC."""
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    dashboard = await start_dashboard(bus, DashboardOptions(port=free_port(), symbols=("HOVER",)))
    try:
        async with open_browser() as browser:
            page = await browser.open(dashboard.url)
            await page.wait_for(f"{CONNECTION} === 'live'", 20, "the page live")
            winter = "Date.UTC(2026, 0, 15, 5, 30)"  # 00:30 EST
            summer = "Date.UTC(2026, 6, 15, 4, 30, 5)"  # 00:30 EDT
            assert await page.evaluate(f"window.orderflowDashboard.format.nyTime({winter})") == "00:30:00 ET"
            assert await page.evaluate(f"window.orderflowDashboard.format.nyTime({summer})") == "00:30:05 ET"
            assert await page.evaluate(f"window.orderflowDashboard.format.nyClock({winter} / 1000)") == "00:30:00"
            assert await page.evaluate("window.orderflowDashboard.format.nyTime(Date.UTC(2026, 0, 15, 17, 5))") == (
                "12:05:00 ET"
            )
            base = time.time_ns() - 3600 * 10**9
            events = market_trades(bus, "HOVER", base, range(0, 600, 10))
            book_ns = base + 600 * 10**9
            book = BookUpdate(
                symbol="HOVER",
                ts_event=book_ns,
                ts_recv=book_ns,
                ts_arrival=book_ns,
                bids=((50_500_000_000, 300),),
                asks=((50_600_000_000, 200),),
                venue="TEST",
            )
            await bus.publish([*events, (bus.keys.market("HOVER"), book)])
            card = '.card[data-symbol="HOVER"]'
            await page.wait_for(f"document.querySelector('{card} .book time') !== null", 20, "the book's time")
            book_time = await page.evaluate(
                f"(() => {{ const t = document.querySelector('{card} .book time');"
                " return [t.textContent, t.title]; })()"
            )
            utc_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(book_ns // 10**9))
            assert book_time[0].endswith(" ET")
            assert book_time[1].startswith(utc_text) and book_time[1].endswith("Z (UTC)"), book_time
            # the pointer over the chart: the hover legend shows the point's ET and UTC time and price
            await page.wait_for("window.orderflowDashboard.chart('HOVER').drawn.length === 60", 10, "the chart drawn")
            box = await page.evaluate(
                f"(() => {{ const r = document.querySelector('{card} .chart').getBoundingClientRect();"
                " return [r.left + r.width / 2, r.top + r.height / 4]; })()"
            )
            await page.send("Page.bringToFront")  # the tab in front: the chart draws frames and follows the pointer
            shown = f"!document.querySelector('{card} .chart-hover').hidden"
            for step in range(40):  # the pointer moving over the chart (the library acts on a frame after a move)
                await page.send("Input.dispatchMouseEvent", type="mouseMoved", x=box[0] + step % 10, y=box[1])
                if await page.evaluate(shown):
                    break
                await asyncio.sleep(0.25)
            await page.wait_for(shown, 5, "the hover legend")
            legend = await page.evaluate(f"document.querySelector('{card} .chart-hover').textContent")
            assert " ET · " in legend and "Z UTC · $" in legend, legend
            # what the page measures keeps only the newest: a page open all day does not grow
            count = await page.evaluate(
                "(() => { for (let i = 0; i < 250; i++) document.dispatchEvent(new SecurityPolicyViolationEvent("
                "'securitypolicyviolation', {violatedDirective: 'img-src', effectiveDirective: 'img-src',"
                " originalPolicy: '', disposition: 'enforce', statusCode: 200, documentURI: location.href}));"
                " return [window.orderflowDashboard.cspViolations.length, window.orderflowDashboard.cspViolationCount];"
                " })()"
            )
            assert count[0] == 100 and count[1] >= 250, count
            assert not page.errors, page.errors
            assert_nothing_left_the_machine(browser, page)
    finally:
        await dashboard.stop()
        await bus.close()


def market_trades(bus: Bus, symbol: str, base: int, seconds: range) -> list[tuple[str, Trade]]:
    """A trade at each of ``seconds`` after ``base`` (ns), its price rising a cent a second."""
    return [
        (
            bus.keys.market(symbol),
            Trade(
                symbol=symbol,
                ts_event=base + second * 10**9,
                ts_recv=base + second * 10**9,
                ts_arrival=base + second * 10**9,
                price=50_000_000_000 + second * 10_000_000,
                size=100,
                side="sell" if second % 2 else "buy",
            ),
        )
        for second in seconds
    ]


async def test_a_chart_keeps_the_last_30_minutes_and_a_hidden_one_holds_its_changes_merged(redis_url, key_prefix):
    """More than 30 minutes of market time arrive, in many changes: the chart's data (and what the library draws) keep
    the last 30 minutes, cut about once a minute. Off screen, the chart's changes merge into that data (one point a
    second, one bar a minute) instead of queueing, and it is drawn whole when it scrolls back into view."""
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    dashboard = await start_dashboard(bus, DashboardOptions(port=free_port(), symbols=("TRIM",)))
    window, slack = 30 * 60, 60
    chart = "window.orderflowDashboard.chart('TRIM')"
    try:
        async with open_browser() as browser:
            page = await browser.open(dashboard.url)
            await page.wait_for(f"{CONNECTION} === 'live' && {chart} !== null", 20, "the page live")
            base = time.time_ns() - 4 * 3600 * 10**9
            for start in range(0, 45 * 60, 5 * 60):  # 45 minutes of market time, a trade every 5 s
                await bus.publish(market_trades(bus, "TRIM", base, range(start, start + 5 * 60, 5)))
                await asyncio.sleep(0.3)
            newest = base // 10**9 + 45 * 60 - 5
            await page.wait_for(f"{chart}.prices.at(-1)[0] === {newest}", 20, "the last trade on the chart")
            await page.wait_for(f"{chart}.visible && !{chart}.stale", 10, "the chart in view and drawn")
            held = await page.evaluate(chart)
            first = held["prices"][0][0]
            assert newest - window - slack <= first, (first, newest)  # the first 15 minutes are gone
            assert first > base // 10**9  # something was cut
            assert len(held["prices"]) == len({point[0] for point in held["prices"]})
            assert held["drawn"] == [point[0] for point in held["prices"]]  # the library draws just that
            assert held["drawnBars"] == held["bars"] and held["bars"][0] >= first - first % 60 - 60
            assert len(held["bars"]) <= 32

            # off screen: many more changes, each second several times (trades every second, published one by one
            # in small groups); the chart's data stays merged and bounded, the library's untouched until it is seen
            await page.evaluate("document.getElementById('cards').style.marginTop = '30000px'")
            await page.wait_for(f"!{chart}.visible", 10, "the chart off screen")
            drawn_before = (await page.evaluate(chart))["drawn"]
            start = 45 * 60
            for batch in range(40):
                seconds = range(start + batch * 30, start + batch * 30 + 30)
                await bus.publish(market_trades(bus, "TRIM", base, seconds))
                await bus.publish(market_trades(bus, "TRIM", base, seconds[-3:]))  # the same seconds again
                await asyncio.sleep(0.05)
            newest = base // 10**9 + start + 40 * 30 - 1
            await page.wait_for(f"{chart}.prices.at(-1)[0] === {newest}", 20, "the last change merged")
            hidden = await page.evaluate(chart)
            assert hidden["stale"] and not hidden["visible"]
            assert hidden["drawn"] == drawn_before  # nothing drawn off screen
            times = [point[0] for point in hidden["prices"]]
            assert times == sorted(set(times))  # one point a second
            assert newest - window - slack <= times[0] and len(times) <= window + slack + 1
            assert len(hidden["bars"]) <= 32

            await page.evaluate("document.getElementById('cards').style.marginTop = ''")
            await page.wait_for(f"{chart}.visible && !{chart}.stale", 10, "the chart back in view and drawn")
            shown = await page.evaluate(chart)
            assert shown["drawn"] == [point[0] for point in shown["prices"]] and shown["drawn"][-1] == newest
            assert not page.errors, page.errors
            assert_nothing_left_the_machine(browser, page)
    finally:
        await dashboard.stop()
        await bus.close()
