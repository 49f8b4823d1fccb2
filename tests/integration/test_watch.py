"""``orderflow watch``: colours as documented, the market context (labels, a sell-off line, a market exit), and a
real terminal (tmux) view."""

from __future__ import annotations

import shlex
import subprocess
import time

import pytest

from orderflow_client.wire import ExitRecommendation, FeedStatus, OrderFlowAlert
from services.tools.demo import SYMBOLS
from services.tools.watch import WatchState
from tests.support.cli import ORDERFLOW, orderflow_environment, run_orderflow
from tests.support.context_events import market_exit, market_selloff, seller_with_context
from tests.support.paths import REPO, program

S = 1_000_000_000


def alert(kind: str, symbol: str = "AAPL", number: int = 1) -> OrderFlowAlert:
    return OrderFlowAlert(
        id=f"{symbol}:{kind}:{number}",
        symbol=symbol,
        alert_type=kind,
        severity="warning",
        source="tape",
        ts_event=number,
        ts_recv=number,
        timestamp_utc="2026-11-24T15:00:00.000000000Z",
        order_size=12_000,
        price_level=50_000_000_000,
    )


def test_colours_follow_the_spec():
    state = WatchState(window_ns=120 * S)
    assert state.colour("AAPL", 0) == "green"
    state.apply(alert("large_seller", number=1), seen_ns=0)
    assert state.colour("AAPL", 1 * S) == "yellow"  # one large seller
    state.apply(alert("large_seller", number=2), seen_ns=10 * S)
    assert state.colour("AAPL", 11 * S) == "dark_orange"  # several
    assert state.colour("AAPL", 125 * S) == "yellow"  # the first left the window
    state.apply(alert("red_burst", number=3), seen_ns=126 * S)
    assert state.colour("AAPL", 127 * S) == "red"
    state.apply(
        FeedStatus(
            source="detector", state="monitoring_halted", ts_event=1, ts_recv=1, symbols=("AAPL",), code="stale_data"
        ),
        0,
    )
    assert state.view("AAPL").state == "HALTED"
    exit_ = ExitRecommendation(
        id="x",
        symbol="MSFT",
        trigger="large_sellers",
        ts_event=1,
        ts_recv=1,
        timestamp_utc="t",
        alert_ids=(),
        reasoning="r",
    )
    state.apply(exit_, 0)
    assert state.colour("MSFT", 0) == "red"
    assert state.colour("MSFT", 120 * S) == "red"
    assert state.colour("MSFT", 121 * S) == "green"  # an exit is red for one alert window, as the alerts
    assert state.view("MSFT").last_exit is exit_  # and still shown as the last exit


@pytest.mark.redis
def test_watch_in_a_real_terminal(redis_url, key_prefix, tmp_path):
    program("tmux")
    env = orderflow_environment(
        REDIS_URL=redis_url,
        ORDER_FLOW_KEY_PREFIX=key_prefix,
        ORDER_FLOW_LOG_DIR=str(tmp_path / "logs"),
        ORDER_FLOW_METRICS_PORT="0",
        TERM="xterm-256color",
    )
    demo_keys = {
        **env,
        "ORDER_FLOW_KEY_PREFIX": f"{key_prefix}-demo",
    }  # the demo writes under its own prefix, never the live one
    for symbol in SYMBOLS.values():
        opened = run_orderflow("positions", "open", symbol, "--quantity", "100", "--entry", "50", env=demo_keys)
        assert opened.returncode == 0, opened.stdout + opened.stderr
    session = f"watch-{key_prefix}"
    command = f"cd {REPO} && {shlex.join(ORDERFLOW)} watch --refresh 0.2"
    subprocess.run(
        [
            "tmux",
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "160",
            "-y",
            "50",
            "-e",
            f"REDIS_URL={redis_url}",
            "-e",
            f"ORDER_FLOW_KEY_PREFIX={key_prefix}-demo",
            "-e",
            f"PYTHONPATH={REPO}",
            command,
        ],
        check=True,
        env=env,
    )
    try:
        demo = run_orderflow("demo", "--speed", "400", env=env, cwd=tmp_path, timeout=300)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        deadline = time.monotonic() + 20
        screen = ""
        while time.monotonic() < deadline:
            screen = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
            ).stdout
            if "EXIT  SELLERS" in screen and "HALTED" not in screen and "STALE" in screen:
                break
            time.sleep(0.3)
        assert "orderflow watch" in screen
        assert "SELLERS" in screen and "BURST" in screen and "QUIET" in screen
        assert "EXIT  SELLERS large_sellers" in screen or "EXIT  BURST red_burst" in screen
        assert "large_seller" in screen
        colours = subprocess.run(
            ["tmux", "capture-pane", "-p", "-e", "-t", session], capture_output=True, text=True
        ).stdout
        assert "\x1b[" in colours  # drawn in colour
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


async def test_the_view_survives_an_outage_and_foreign_entries_and_says_so():
    """A foreign entry is counted, not fatal; with Redis gone a poll raises what the watch loop rides out, and
    the view then leads with a banner (New York time)."""
    from rich.console import Console

    from orderflow_client.bus.calls import OUTAGE_ERRORS
    from orderflow_client.bus.connection import Bus
    from services.tools.watch import follow, render, starting_ids
    from tests.support.redis_server import RedisProcess, free_port, redis_server_binary

    server = RedisProcess(port=free_port(), binary=redis_server_binary()).start()
    bus = await Bus.connect(server.url, prefix="watch", retries=0)
    try:
        state, positions = WatchState(), []
        last_ids = await starting_ids(bus)
        await bus.client.xadd(bus.keys.alerts, {"alert": b"\xc1 not msgpack"})
        await follow(bus, state, positions, last_ids)
        assert state.skipped == 1
        server.stop()
        with pytest.raises(OUTAGE_ERRORS):
            await follow(bus, state, positions, last_ids)
        state.unreachable_since = 1_796_000_000 * S
        console = Console(width=140, record=True)
        console.print(render(state, positions, 1_796_000_010 * S))
        assert "REDIS UNREACHABLE since 19:53:20 ET" in console.export_text()  # 2026-11-30 00:53:20 UTC
    finally:
        await bus.close()
        server.stop()


@pytest.mark.redis
def test_watch_shows_which_detector_and_ingest_own_each_position(redis_url, key_prefix, tmp_path):
    """Two detectors and an ingest share three positions through leases on a real Redis; ``orderflow watch --once``
    names each position's owners, and ``NOBODY`` for the one whose detector left."""
    import asyncio

    from orderflow_client.bus.connection import Bus
    from orderflow_client.positions import PositionRegistry
    from shared.ownership import SymbolOwnership

    symbols = ["AAPL", "MSFT", "NVDA"]

    async def share() -> dict[str, list[str]]:
        async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
            for symbol in symbols:
                await PositionRegistry(bus).open(symbol, quantity=100, entry_price="100.00")
            first, second = SymbolOwnership(bus, "det-one", 60), SymbolOwnership(bus, "det-two", 60)
            ingest = SymbolOwnership(bus, "ing-one", 60, kind="ingest")
            for _ in range(3):
                owned = {"det-one": await first.settle(symbols), "det-two": await second.settle(symbols)}
            await ingest.settle(symbols)
            await first.leave()  # its symbols now have no detector; det-two takes them only at its next settle
            return owned

    owned = asyncio.run(share())
    assert owned["det-one"] and owned["det-two"]
    env = orderflow_environment(
        REDIS_URL=redis_url, ORDER_FLOW_KEY_PREFIX=key_prefix, ORDER_FLOW_LOG_DIR=str(tmp_path), COLUMNS="200"
    )
    done = run_orderflow("watch", "--once", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "owner (detector / ingest)" in done.stdout
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if line.count("│") > 3}
    for symbol in owned["det-two"]:
        assert "det-two / ing-one" in rows[symbol]
    for symbol in owned["det-one"]:
        assert "NOBODY / ing-one" in rows[symbol]


def test_context_labels_a_market_line_and_a_market_exit_in_the_view():
    """Hand-made outputs: each position's latest alert's label, the MARKET SELL-OFF line (fall, ET, the positions
    its exit names and its arithmetic) while within the alert window, the named positions red with the market exit
    as their last; the line is gone once the window has passed."""
    from rich.console import Console

    from services.tools.watch import render

    at = 1_796_000_000 * S  # 2026-11-30 00:53:20 UTC, 19:53:20 ET
    state = WatchState(window_ns=120 * S)
    for number, (symbol, label) in enumerate(
        [("AAPL", "stock_specific"), ("BAC", "market_wide"), ("AIG", "mixed"), ("MSFT", "unknown")], 1
    ):
        state.apply(seller_with_context(symbol, number, at, label), seen_ns=at)
    state.apply(market_selloff("SPY", 1, at + S), seen_ns=at + S)
    state.apply(market_exit("SPY", ("AAPL", "BAC"), 1, at + 2 * S), seen_ns=at + 2 * S)
    held = ["AAPL", "AIG", "BAC", "MSFT"]
    assert [state.colour(symbol, at + 3 * S) for symbol in held] == ["red", "yellow", "red", "yellow"]
    console = Console(width=200, record=True)
    console.print(render(state, held, at + 3 * S))
    text = console.export_text()
    assert (
        "MARKET SELL-OFF SPY fell 35.0 bps in 300 s, 72% sold · 19:53:21 ET · exit: AAPL, BAC "
        "(exit: expected fall 42.0 bps vs cost 1.5 bps)"
    ) in text
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") > 4}
    assert "stock-specific" in rows["AAPL"] and "market-wide" in rows["BAC"]
    assert "mixed" in rows["AIG"] and "unknown" in rows["MSFT"]
    assert "market_selloff (SPY, market) 19:53:22 ET · exit: expected fall 42.0 bps vs cost 1.5 bps" in rows["AAPL"]
    assert "EXIT  SPY market_selloff [market: AAPL, BAC] exit: expected fall 42.0 bps vs cost 1.5 bps" in text
    assert "ALERT SPY market_selloff critical: SPY fell 35.0 bps in 300 s, 72% sold" in text
    assert rows["AIG"].count("-") >= 1 and "market_selloff" not in rows["AIG"]  # AIG is not named
    later = Console(width=200, record=True)
    later.print(render(state, held, at + 125 * S))
    assert "MARKET SELL-OFF" not in later.export_text()  # older than the alert window
    assert state.colour("AAPL", at + 125 * S) == "green"


@pytest.mark.redis
def test_watch_once_on_real_redis_shows_the_market_context(redis_url, key_prefix, tmp_path):
    """``orderflow watch --once`` on a real Redis holding hand-made outputs: the market line and the labels."""
    import asyncio

    from orderflow_client.bus.connection import Bus
    from orderflow_client.positions import PositionRegistry

    now = time.time_ns()

    async def publish() -> None:
        async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
            for symbol in ("AAPL", "BAC"):
                await PositionRegistry(bus).open(symbol, quantity=100, entry_price="50.00")
            await bus.publish(
                [
                    (bus.keys.alerts, seller_with_context("AAPL", 1, now - 3 * S, "stock_specific")),
                    (bus.keys.alerts, seller_with_context("BAC", 1, now - 3 * S, "market_wide")),
                    (bus.keys.alerts, market_selloff("SPY", 1, now - 2 * S)),
                    (bus.keys.exits, market_exit("SPY", ("BAC",), 1, now - S, action="watch", expected_fall_bps=0.9)),
                ]
            )

    asyncio.run(publish())
    env = orderflow_environment(
        REDIS_URL=redis_url, ORDER_FLOW_KEY_PREFIX=key_prefix, ORDER_FLOW_LOG_DIR=str(tmp_path), COLUMNS="220"
    )
    done = run_orderflow("watch", "--once", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MARKET SELL-OFF SPY fell 35.0 bps in 300 s, 72% sold" in done.stdout
    assert "watch: BAC (watch: expected fall 0.9 bps vs cost 1.5 bps)" in done.stdout
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if line.count("│") > 4}
    assert "stock-specific" in rows["AAPL"] and "market-wide" in rows["BAC"]
    assert "market_selloff (SPY, market)" in rows["BAC"] and "market_selloff" not in rows["AAPL"]
