"""The colour of a symbol's selling pressure, as every orderflow view shows it (``orderflow watch``, the bot's
dashboard panel): **yellow** one large seller in the alert window, **orange** several, **red** a red burst or an
exit recommendation; **green** none of these.

    pressure_colour(alerts_in_window, exit_recommended=False)   # "green", "yellow", "dark_orange" or "red"

The names are Rich colour names (``dark_orange`` is Rich's orange).

A symbol's **monitoring state** from the status stream, as every view shows it: each status sets or clears one
condition of its source (:data:`STATUS_CONDITIONS`): a ``connected`` clears only a lost feed, ``trading_resumed`` only a
trading halt, ``monitoring_resumed`` only a monitoring halt, ``calibrated`` only calibrating; the symbol shows the worst
condition of any source (:func:`worst_monitoring`), ``live`` when none holds.

The **market context** of an alert in words (:func:`context_word`: ``stock-specific``, ``market-wide``, ``mixed``,
``unknown``) and its numbers (:func:`context_numbers`); an exit recommendation's action against its cost
(:func:`exit_cost_words`); a market sell-off's fall (:func:`market_fall_words`); a market-scope exit counts as an
exit for each position it names (every view makes it their last exit: red, as their own would be).
"""

from __future__ import annotations

from collections.abc import Iterable

from orderflow_client.wire import ExitRecommendation, MarketContext, OrderFlowAlert

NO_PRESSURE = "green"
ONE_SELLER = "yellow"
SEVERAL_SELLERS = "dark_orange"
RED = "red"
ORDER = (NO_PRESSURE, ONE_SELLER, SEVERAL_SELLERS, RED)
"""From calm to alarming: the worst of several colours is the one latest in this tuple."""

STATUS_CONDITIONS: dict[str, tuple[str, str | None]] = {
    "connected": ("feed", None),
    "disconnected": ("feed", "halted"),
    "watchdog_silence": ("feed", "halted"),
    "auth_failed": ("feed", "halted"),
    "monitoring_halted": ("monitoring", "halted"),
    "monitoring_resumed": ("monitoring", None),
    "trading_halted": ("trading", "halted"),
    "trading_resumed": ("trading", None),
    "calibrating": ("calibration", "calibrating"),
    "calibrated": ("calibration", None),
    "gap": ("gap", "gap"),
}
"""A status's state → (the condition it is about, the monitoring state it sets; None: it clears the condition).
Other statuses (e.g. ``dead_letter``) say nothing of monitoring. A gap is cleared by time, not by a status."""
MONITORING_ORDER = ("live", "calibrating", "gap", "halted")
"""From fine to alarming: a symbol shows the worst of its sources' conditions."""


def worst_monitoring(states: Iterable[str]) -> str:
    """The most alarming of monitoring ``states`` (``live`` when there are none)."""
    return max(states, key=MONITORING_ORDER.index, default="live")


def pressure_colour(alerts: Iterable[OrderFlowAlert], exit_recommended: bool) -> str:
    """The colour of one symbol from its alerts in the alert window and whether an exit was recommended."""
    if exit_recommended:
        return RED
    sellers = 0
    for alert in alerts:
        if alert.alert_type == "red_burst":
            return RED
        sellers += alert.alert_type == "large_seller"
    if sellers >= 2:
        return SEVERAL_SELLERS
    return ONE_SELLER if sellers == 1 else NO_PRESSURE


def worst_colour(colours: Iterable[str]) -> str:
    """The most alarming of ``colours`` (green when there are none)."""
    return max(colours, key=ORDER.index, default=NO_PRESSURE)


CONTEXT_WORDS = {
    "stock_specific": "stock-specific",
    "market_wide": "market-wide",
    "mixed": "mixed",
    "unknown": "unknown",
}
"""A :class:`~orderflow_client.wire.MarketContext` label as every view writes it (the words carry the meaning, not a
colour)."""


def context_word(context: MarketContext | None) -> str:
    """The label in words (``market-wide``); ``""`` without context (market context off)."""
    return "" if context is None else CONTEXT_WORDS.get(context.label, context.label)


def context_numbers(context: MarketContext | None) -> str:
    """The numbers behind the label, in basis points over the window, e.g. ``SPY -18.2 bps, stock -21.5 bps,
    relative -1.5 bps (beta 1.10), 300 s``; the reason alone when no index was read."""
    if context is None:
        return ""
    if not context.index:
        return context.reason or "no index data"
    return (
        f"{context.index} {context.index_return_bps:+.1f} bps, stock {context.stock_return_bps:+.1f} bps, "
        f"relative {context.relative_return_bps:+.1f} bps (beta {context.beta:.2f}), {context.window_seconds} s"
    )


def exit_cost_words(recommendation: ExitRecommendation) -> str:
    """Action and its arithmetic, e.g. ``exit: expected fall 42.0 bps vs cost 1.5 bps`` (``watch`` when the fall
    does not pay the cost); the action alone when the fall was not estimated."""
    if not recommendation.expected_fall_bps:
        return recommendation.action
    return (
        f"{recommendation.action}: expected fall {recommendation.expected_fall_bps:.1f} bps "
        f"vs cost {recommendation.cost_bps:.1f} bps"
    )


def market_fall_words(alert: OrderFlowAlert) -> str:
    """A market sell-off's fall in words: ``SPY fell 35.0 bps in 300 s, 72% sold``."""
    context = alert.context
    if context is None:
        return f"{alert.symbol} sold, {alert.sell_ratio:.0%} of its volume"
    fall = -context.index_return_bps
    return (
        f"{context.index or alert.symbol} {'fell' if fall >= 0 else 'moved'} {abs(fall):.1f} bps in "
        f"{context.window_seconds} s, {context.index_sell_share:.0%} sold"
    )
