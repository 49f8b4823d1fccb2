"""The colour of a symbol's selling pressure, as every orderflow view shows it (``orderflow watch``, the bot's
dashboard panel): **yellow** one large seller in the alert window, **orange** several, **red** a red burst or an
exit recommendation; **green** none of these.

    pressure_colour(alerts_in_window, exit_recommended=False)   # "green", "yellow", "dark_orange" or "red"

The names are Rich colour names (``dark_orange`` is Rich's orange).
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
