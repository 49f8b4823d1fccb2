"""Runs inside the bot's own virtualenv (its requirements plus orderflow's slim client): the bot's real Rich
dashboard (``trading_bot.dashboard.DisplayRenderer`` over a ``DashboardSnapshot`` built from its own dataclasses)
with orderflow's panel, read through a real ``OrderFlowClient`` from a real Redis where this script published an
alert, an exit recommendation and a status on orderflow's streams.

    python tests/support/bot_dashboard_scenario.py OUT_DIR      (REDIS_URL, ORDER_FLOW_KEY_PREFIX set)

Writes ``OUT_DIR/dashboard.txt`` (plain), ``dashboard.ansi`` (with styles), ``dashboard.svg`` and prints a line
``RESULT {json}`` of what it published (ids, the New York times the panel must show).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from trading_bot.dashboard.display_renderer import DisplayRenderer
from trading_bot.dashboard.models import AccountStatus, DashboardSnapshot, PerformanceMetrics, PositionDisplay

from orderflow_client.bus.connection import Bus
from orderflow_client.dashboard_panel import OrderFlowPanelProvider, with_order_flow
from orderflow_client.threaded import OrderFlowClient
from orderflow_client.timestamps import now_ns, ns_to_new_york, ns_to_utc_iso
from orderflow_client.wire import ContextLabel, ExitRecommendation, FeedStatus, MarketContext, OrderFlowAlert, Trade

REDIS_URL = os.environ["REDIS_URL"]
PREFIX = os.environ["ORDER_FLOW_KEY_PREFIX"]
OUT = Path(sys.argv[1])
SECOND = 1_000_000_000


def context(label: ContextLabel, index_return_bps: float, stock_return_bps: float) -> MarketContext:
    """SPY's move beside an alert over 300 s (bps; beta 1)."""
    return MarketContext(
        label=label,
        index="SPY",
        window_seconds=300,
        index_return_bps=index_return_bps,
        stock_return_bps=stock_return_bps,
        expected_return_bps=index_return_bps,
        relative_return_bps=stock_return_bps - index_return_bps,
        index_sell_share=0.7,
    )


def seller(symbol: str, number: int, size: int, at: int, label: ContextLabel = "stock_specific") -> OrderFlowAlert:
    return OrderFlowAlert(
        id=f"alert-{symbol}-{number}",
        symbol=symbol,
        alert_type="large_seller",
        severity="warning",
        source="tape",
        ts_event=at,
        ts_recv=at,
        timestamp_utc=ns_to_utc_iso(at),
        order_size=size,
        price_level=187_430_000_000,
        context=context(label, -1.0 if label == "stock_specific" else -36.0, -40.0),
    )


async def publish(now: int) -> dict:
    """Market prints, two large sellers (stock-specific) and an exit for AAPL, one large seller (market-wide) and a
    halt for MSFT, and SPY's market sell-off."""
    bus = await Bus.connect(REDIS_URL, prefix=PREFIX)
    try:
        trades = [
            (
                bus.keys.market(symbol),
                Trade(symbol=symbol, ts_event=now, ts_recv=now, ts_arrival=now, price=187_430_000_000, size=100),
            )
            for symbol in ("AAPL", "MSFT")
        ]
        first, second = seller("AAPL", 1, 12_000, now - 20 * SECOND), seller("AAPL", 2, 30_000, now - 5 * SECOND)
        msft = seller("MSFT", 1, 8_000, now - 10 * SECOND, "market_wide")
        selloff = OrderFlowAlert(
            id="alert-SPY-selloff-1",
            symbol="SPY",
            alert_type="market_selloff",
            severity="critical",
            source="index",
            ts_event=now - 8 * SECOND,
            ts_recv=now - 8 * SECOND,
            timestamp_utc=ns_to_utc_iso(now - 8 * SECOND),
            sell_ratio=0.7,
            context=context("market_wide", -36.0, -36.0),
        )
        exit_ = ExitRecommendation(
            id="exit-AAPL-1",
            symbol="AAPL",
            trigger="large_sellers",
            ts_event=now - 2 * SECOND,
            ts_recv=now - 2 * SECOND,
            timestamp_utc=ns_to_utc_iso(now - 2 * SECOND),
            alert_ids=(first.id, second.id),
            reasoning="2 large sellers within 120 s",
        )
        halt = FeedStatus(
            source="detector",
            state="monitoring_halted",
            ts_event=now,
            ts_recv=now,
            symbols=("MSFT",),
            code="stale_data",
            detail="events 4 s old",
        )
        await bus.publish(
            [
                *trades,
                (bus.keys.alerts, first),
                (bus.keys.alerts, second),
                (bus.keys.alerts, msft),
                (bus.keys.alerts, selloff),
                (bus.keys.exits, exit_),
                (bus.keys.status, halt),
            ]
        )
        return {
            "exit_id": exit_.id,
            "exit_time": ns_to_new_york(exit_.ts_event),
            "selloff_time": ns_to_new_york(selloff.ts_event),
        }
    finally:
        await bus.close()


def snapshot() -> DashboardSnapshot:
    moment = datetime.now(UTC)
    positions = [
        PositionDisplay("AAPL", 100, Decimal("185.00"), Decimal("187.43"), Decimal("243.00"), Decimal("1.31"), moment),
        PositionDisplay("MSFT", 50, Decimal("190.00"), Decimal("187.43"), Decimal("-128.50"), Decimal("-1.35"), moment),
    ]
    return DashboardSnapshot(
        account_status=AccountStatus(
            buying_power=Decimal("50000"),
            account_balance=Decimal("100000"),
            cash_balance=Decimal("20000"),
            day_trade_count=1,
            last_updated=moment,
        ),
        positions=positions,
        performance_metrics=PerformanceMetrics(
            win_rate=60.0,
            avg_risk_reward=1.8,
            total_realized_pl=Decimal("300"),
            total_unrealized_pl=Decimal("114.50"),
            total_pl=Decimal("414.50"),
            current_streak=2,
            streak_type="WIN",
            trades_today=3,
            session_count=4,
            max_drawdown=Decimal("-120"),
        ),
        targets=None,
        market_status="OPEN",
        generated_at=moment,
        data_age_seconds=1.0,
        is_data_stale=False,
    )


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    client = OrderFlowClient(REDIS_URL, name="dashboard-bot", callbacks="queue", key_prefix=PREFIX)
    with client:
        client.open_position("AAPL", quantity=100, entry_price=Decimal("185.00"), stop_loss=Decimal("180.00"))
        client.open_position("MSFT", quantity=50, entry_price=Decimal("190.00"))
        published = asyncio.run(publish(now_ns()))
        delivery = client.deliveries.get(timeout=30)  # the bot's client receives the exit and handles it
        delivery.done()
        provider = OrderFlowPanelProvider(client)
        deadline = time.monotonic() + 10
        while provider.data(["AAPL"]).rows[0].bot_decision != "handled" and time.monotonic() < deadline:
            time.sleep(0.05)  # the done mark is set on the client's loop once done() is called
        renderer = with_order_flow(DisplayRenderer(), provider)
        console = Console(record=True, width=140, height=44, color_system="truecolor", file=io.StringIO())
        started = time.perf_counter()
        console.print(renderer.render_full_dashboard(snapshot()))
        render_seconds = time.perf_counter() - started
    (OUT / "dashboard.txt").write_text(console.export_text(clear=False))
    (OUT / "dashboard.ansi").write_text(console.export_text(clear=False, styles=True))
    (OUT / "dashboard.svg").write_text(console.export_svg(title="the bot's dashboard with order flow"))
    result = {**published, "delivered": delivery.recommendation.id, "render_seconds": round(render_seconds, 3)}
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
