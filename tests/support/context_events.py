"""Hand-made alerts and exit recommendations carrying market context, for the views' tests (dashboard, watch, the
bot's panel): an alert with each context label, a ``market_selloff`` of the index, and a market-scope exit naming
positions.

Times are ns since the epoch (``at``); prices nano-dollars ($50.00 is ``50_000_000_000``).
"""

from __future__ import annotations

import msgspec

from orderflow_client.wire import ContextLabel, ExitAction, ExitRecommendation, MarketContext, OrderFlowAlert
from tests.support.events import large_seller

CONTEXTS: dict[str, MarketContext] = {
    "stock_specific": MarketContext(
        label="stock_specific",
        index="SPY",
        window_seconds=300,
        index_return_bps=1.2,
        index_sell_share=0.48,
        stock_return_bps=-32.5,
        beta=1.1,
        expected_return_bps=1.3,
        relative_return_bps=-33.8,
        index_age_ms=8.0,
        reason="SPY rose 1.2 bps in 300 s; the stock fell 32.5 bps on its own",
    ),
    "market_wide": MarketContext(
        label="market_wide",
        index="SPY",
        window_seconds=300,
        index_return_bps=-18.2,
        index_sell_share=0.64,
        stock_return_bps=-21.5,
        beta=1.1,
        expected_return_bps=-20.0,
        relative_return_bps=-1.5,
        index_age_ms=12.0,
        reason="SPY fell 18.2 bps in 300 s; beta 1.10 explains the stock's fall",
    ),
    "mixed": MarketContext(
        label="mixed",
        index="SPY",
        window_seconds=300,
        index_return_bps=-15.0,
        index_sell_share=0.61,
        stock_return_bps=-48.0,
        beta=1.0,
        expected_return_bps=-15.0,
        relative_return_bps=-33.0,
        index_age_ms=20.0,
        reason="SPY fell 15.0 bps in 300 s; the stock fell 33.0 bps more than its beta explains",
    ),
    "unknown": MarketContext(label="unknown", reason="no SPY event in the last 60 s"),
}
"""One context per label, with numbers that agree with it (bps over a 300 s window)."""


def seller_with_context(symbol: str, number: int, at: int, label: ContextLabel, size: int = 10_000) -> OrderFlowAlert:
    """A large-seller alert of ``symbol`` carrying the :data:`CONTEXTS` entry of ``label``, e.g. id
    ``AAPL:large_seller:3``, ``size`` shares at $50.00, at ``at`` (ns)."""
    return msgspec.structs.replace(large_seller(symbol, number, at, size), context=CONTEXTS[label])


def market_selloff(index: str, number: int, at: int, fall_bps: float = 35.0) -> OrderFlowAlert:
    """A critical ``market_selloff`` alert of the index (``source`` ``index``), e.g. id ``SPY:market_selloff:1``: the
    index fell ``fall_bps`` in 300 s with 72 % of its volume sold."""
    context = MarketContext(
        label="market_wide",
        index=index,
        window_seconds=300,
        index_return_bps=-fall_bps,
        index_sell_share=0.72,
        stock_return_bps=-fall_bps,
        expected_return_bps=-fall_bps,
        reason=f"{index} fell {fall_bps:.1f} bps in 300 s, 72% of its volume sold",
    )
    return OrderFlowAlert(
        id=f"{index}:market_selloff:{number}",
        symbol=index,
        alert_type="market_selloff",
        severity="critical",
        source="index",
        ts_event=at,
        ts_recv=at,
        timestamp_utc="",
        sell_ratio=0.72,
        context=context,
    )


def market_exit(
    index: str,
    positions: tuple[str, ...],
    number: int,
    at: int,
    action: ExitAction = "exit",
    expected_fall_bps: float = 42.0,
    cost_bps: float = 1.5,
) -> ExitRecommendation:
    """A market-scope exit recommendation raised by ``index``'s sell-off and naming ``positions``, e.g. id
    ``SPY:exit:market_selloff:1``, with its expected fall and cost (bps)."""
    return ExitRecommendation(
        id=f"{index}:exit:market_selloff:{number}",
        symbol=index,
        trigger="market_selloff",
        ts_event=at,
        ts_recv=at,
        timestamp_utc="",
        alert_ids=(f"{index}:market_selloff:{number}",),
        reasoning=f"{index} is being sold: expected fall {expected_fall_bps:.1f} bps over 300 s",
        scope="market",
        symbols=positions,
        action=action,
        expected_fall_bps=expected_fall_bps,
        cost_bps=cost_bps,
        context=market_selloff(index, number, at).context,
    )
