"""The colour of a symbol's selling pressure, as every orderflow view shows it (``orderflow watch``, the bot's
dashboard panel): **yellow** one large seller in the alert window, **orange** several, **red** a red burst or an
exit recommendation; **green** none of these.

    pressure_colour(alerts_in_window, exit_recommended=False)   # "green", "yellow", "dark_orange" or "red"

The names are Rich colour names (``dark_orange`` is Rich's orange).

A symbol's **monitoring state** from the status stream, as every view shows it: each status sets or clears one
condition of its source (:data:`STATUS_CONDITIONS`): a ``connected`` clears only a lost feed, ``trading_resumed`` only a
trading halt, ``monitoring_resumed`` only a monitoring halt, ``calibrated`` only calibrating; the symbol shows the worst
condition of any source (:func:`worst_monitoring`), ``live`` when none holds.
"""

from __future__ import annotations

from collections.abc import Iterable

from orderflow_client.wire import OrderFlowAlert

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
