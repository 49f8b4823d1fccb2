"""The dashboard's state as the JSON the page reads: the whole picture (``/api/snapshot``), the header and cards
after each change (``summary`` events), an alert or exit as it arrives, a symbol's chart changes (``market``).

Times are epoch milliseconds (UTC); the page shows them in New York time labelled ET, UTC on hover. Prices are
dollars (floats: for display and charts only).
"""

from __future__ import annotations

from typing import Any

from orderflow_client.dashboard_panel import mark_key
from orderflow_client.pressure import CONTEXT_WORDS, context_numbers, exit_cost_words, market_fall_words
from orderflow_client.prices import PRICE_SCALE, format_price
from orderflow_client.timestamps import NANOSECONDS_PER_MILLISECOND
from orderflow_client.wire import ExitRecommendation, MarketContext, OrderFlowAlert
from services.dashboard.market import MinuteBar, SymbolMarket
from services.dashboard.state import DashboardState

COLOUR_NAMES = {"green": "green", "yellow": "yellow", "dark_orange": "orange", "red": "red"}
"""The watch's colour → the page's colour class."""


def milliseconds(ts_ns: int) -> int | None:
    return ts_ns // NANOSECONDS_PER_MILLISECOND if ts_ns else None


def dollars(price: int) -> float:
    return price / PRICE_SCALE


def output_view(
    item: OrderFlowAlert | ExitRecommendation, state: DashboardState, entry_ms: int | None = None
) -> dict[str, Any]:
    """One line of the alert log (an alert or an exit recommendation) and a chart marker; ``entry_ms``: when
    Redis took it (its stream entry id), for the page's own delay measure."""
    view = _output_fields(item, state)
    if entry_ms is not None:
        view["entry_ms"] = entry_ms
    return view


def context_view(context: MarketContext | None) -> dict[str, Any] | None:
    """An alert's market context for the page: the label (``market_wide``), its words (``market-wide``) and the
    numbers behind it (bps over ``window_seconds``), e.g. for the badge's title; None: market context is off."""
    if context is None:
        return None
    return {
        "label": context.label,
        "words": CONTEXT_WORDS.get(context.label, context.label),
        "numbers": context_numbers(context),
        "index": context.index,
        "window_seconds": context.window_seconds,
        "index_return_bps": round(context.index_return_bps, 1),
        "stock_return_bps": round(context.stock_return_bps, 1),
        "relative_return_bps": round(context.relative_return_bps, 1),
        "beta": round(context.beta, 2),
        "reason": context.reason,
    }


def exit_fields(item: ExitRecommendation) -> dict[str, Any]:
    """What an exit recommendation says beyond its trigger: its scope (``symbol``, or ``market`` with the positions
    it names), its action (``exit`` / ``watch``) and the expected fall against the cost of acting (bps)."""
    return {
        "scope": item.scope,
        "positions": list(item.symbols),
        "action": item.action,
        "expected_fall_bps": round(item.expected_fall_bps, 1),
        "cost_bps": round(item.cost_bps, 1),
        "action_words": exit_cost_words(item),
    }


def _output_fields(item: OrderFlowAlert | ExitRecommendation, state: DashboardState) -> dict[str, Any]:
    if isinstance(item, ExitRecommendation):
        trigger = item.trigger.replace("_", " ").replace("selloff", "sell-off")
        return {
            "id": item.id,
            "kind": "exit",
            "symbol": item.symbol,
            "severity": item.severity,
            "colour": "red",
            "time": milliseconds(item.ts_event),
            "what": f"exit recommendation ({trigger}): {item.reasoning[:200]}",  # its scope: "positions"
            "latency_ms": item.latency_ms,
            "context": context_view(item.context),
            **exit_fields(item),
        }
    if item.alert_type == "large_seller":
        what = f"large seller {item.order_size:,} shares @ {format_price(item.price_level)} ({item.source})"
    elif item.alert_type == "market_selloff":
        what = f"market sell-off: {market_fall_words(item)}"
    else:
        what = f"red burst: volume {item.volume_ratio:.1f}x normal, {item.sell_ratio:.0%} sells"
    return {
        "id": item.id,
        "kind": item.alert_type,
        "symbol": item.symbol,
        "severity": item.severity,
        "colour": "red" if item.alert_type != "large_seller" else COLOUR_NAMES[_colour_then(item, state)],
        "time": milliseconds(item.ts_event),
        "what": what + (" (two-sided)" if item.two_sided else ""),
        "price": dollars(item.price_level) if item.price_level else None,
        "order_size": item.order_size,
        "sell_ratio": item.sell_ratio,
        "volume_ratio": item.volume_ratio,
        "latency_ms": item.latency_ms,
        "context": context_view(item.context),
    }


def market_view(state: DashboardState) -> list[dict[str, Any]]:
    """The banner: each index sold off inside the alert window (newest first), with the market exit it raised (the
    positions named, the action and its arithmetic) or the positions held when it raised none yet."""
    banners = []
    for alert, market_exit in state.active_selloffs():
        context = alert.context
        banners.append(
            {
                "id": alert.id,
                "index": alert.symbol,
                "severity": alert.severity,
                "fall_bps": None if context is None else round(-context.index_return_bps, 1),
                "sell_share": None if context is None else round(context.index_sell_share, 3),
                "window_seconds": None if context is None else context.window_seconds,
                "what": market_fall_words(alert),
                "reason": "" if context is None else context.reason,
                "time": milliseconds(alert.ts_event),
                "exit": None if market_exit is None else {"id": market_exit.id, **exit_fields(market_exit)},
                "held": sorted(state.positions),
            }
        )
    return banners


def _colour_then(alert: OrderFlowAlert, state: DashboardState) -> str:
    """The colour the alert's symbol had when the alert arrived (not now: an old yellow line stays yellow)."""
    return state.log_colours.get(alert.id) or state.colour(alert.symbol)


def card_view(symbol: str, state: DashboardState) -> dict[str, Any]:
    position = state.positions.get(symbol)
    market = state.markets.get(symbol)
    monitoring = state.monitoring_of(symbol)
    alerts = state.window_alerts(symbol)
    last_exit = state.last_exits.get(symbol)
    pnl = state.pnl(symbol)
    return {
        "symbol": symbol,
        "colour": COLOUR_NAMES[state.colour(symbol)],
        "position": (
            {
                "quantity": position.quantity,
                "entry": format_price(position.entry_price),
                "stop": format_price(position.stop_loss) if position.stop_loss else None,
            }
            if position
            else None
        ),
        "price": format_price(market.last_price) if market and market.last_price else None,
        "pnl": None if pnl is None else {"dollars": round(pnl[0], 2), "percent": round(pnl[1], 2)},
        "monitoring": {
            "state": monitoring.state,
            "reason": monitoring.reason,
            "since": milliseconds(monitoring.since_ns),
        },
        "large_sellers": sum(alert.alert_type == "large_seller" for alert in alerts),
        "red_bursts": sum(alert.alert_type == "red_burst" for alert in alerts),
        "last_exit": None
        if last_exit is None
        else {
            "id": last_exit.id,
            "trigger": last_exit.trigger.replace("_", " ").replace("selloff", "sell-off"),
            "time": milliseconds(last_exit.ts_event),
            "reasoning": last_exit.reasoning[:200],
            "from": last_exit.symbol if last_exit.symbol != symbol else None,
            **exit_fields(last_exit),
            "bots": dict(sorted(state.handled.get(mark_key(last_exit, symbol), {}).items())),
        },
        "detector": state.detectors.get(symbol, "") if state.detectors_alive else None,
        "lag": state.lags.get(symbol),
    }


def summary_view(state: DashboardState, now_ns: int) -> dict[str, Any]:
    """The header (counts, largest seller, feed health) and every card."""
    largest = state.largest_seller_today()
    latency = state.latency_ms()
    delay = state.delay_ms()
    last_frame = state.last_frame_ns()
    return {
        "clock": milliseconds(state.clock_ns),
        "now": milliseconds(now_ns),
        "alerts_5m": state.recent_alerts(),
        "largest_seller": None
        if largest is None
        else {
            "symbol": largest.symbol,
            "shares": largest.order_size,
            "price": format_price(largest.price_level),
            "time": milliseconds(largest.ts_event),
        },
        "health": {
            "redis": "unreachable" if state.unreachable_since_ns else "ok",
            "redis_since": milliseconds(state.unreachable_since_ns),
            "sources": {
                name: {"connected": source.connected, "since": milliseconds(source.since_ns), "code": source.code}
                for name, source in sorted(state.sources.items())
            },
            "last_frame": milliseconds(last_frame),
            "last_frame_age_s": round((now_ns - last_frame) / 1e9, 1) if last_frame else None,
            "lag": state.total_lag(),
            "latency_p50_ms": latency[0],
            "latency_p99_ms": latency[1],
            "delay_p50_ms": None if delay[0] is None else round(delay[0], 1),
            "delay_p99_ms": None if delay[1] is None else round(delay[1], 1),
            "detectors_alive": state.detectors_alive,
        },
        "market": market_view(state),
        "cards": [card_view(symbol, state) for symbol in state.symbols()],
    }


def bar_view(market: SymbolMarket, bar: MinuteBar) -> dict[str, Any]:
    ratio = market.volume_ratio(bar)
    return {
        "time": bar.minute,
        "volume": bar.volume,
        "sell_share": None if bar.sell_share is None else round(bar.sell_share, 3),
        "volume_ratio": None if ratio is None else round(ratio, 2),
    }


def book_view(market: SymbolMarket) -> dict[str, Any] | None:
    if not market.book_ns:
        return None
    return {
        "time": milliseconds(market.book_ns),
        "venue": market.book_venue,
        "asks": [[format_price(price), size] for price, size in market.asks],
        "bids": [[format_price(price), size] for price, size in market.bids],
    }


def chart_view(market: SymbolMarket) -> dict[str, Any]:
    """A symbol's whole chart: price points (epoch seconds), minute bars, the book."""
    return {
        "prices": [[second, dollars(price)] for second, price in market.prices],
        "bars": [bar_view(market, bar) for bar in market.bars],
        "book": book_view(market),
    }


def market_changes(state: DashboardState) -> dict[str, Any]:
    """Each shown symbol's chart changes since the last call (symbols without any are left out)."""
    changes: dict[str, Any] = {}
    for symbol in state.symbols():
        market = state.markets.get(symbol)
        changed = market.changes() if market else None
        if changed is None or market is None:
            continue
        changes[symbol] = {
            "prices": [[second, dollars(price)] for second, price in changed["prices"]],  # type: ignore[attr-defined]
            "bars": [bar_view(market, bar) for bar in changed["bars"]],  # type: ignore[attr-defined]
            "book": book_view(market) if changed["book"] else None,
            "received": milliseconds(market.last_recv_ns),  # when ingest published the latest event (wall)
        }
    return changes


def snapshot_view(state: DashboardState, now_ns: int, sequence: str) -> dict[str, Any]:
    """Everything the page starts from; ``sequence`` is the last event id sent before it (the page's
    ``/events?after=``)."""
    return {
        "sequence": sequence,
        "summary": summary_view(state, now_ns),
        "log": [output_view(item, state) for item in state.log],
        "charts": {symbol: chart_view(state.market(symbol)) for symbol in state.symbols()},
    }
