"""What a bot embeds: exit recommendations from orderflow, and its positions in orderflow's registry.

- :class:`OrderFlowClient` — for a threaded bot (its own event loop in a background thread);
- :class:`orderflow_client.risk.RiskManagerClient` — for an asyncio bot;
- :mod:`orderflow_client.robinhood` — adapters for robinhood-algo-trading-bot;
- :func:`guest_logging` — orderflow's JSONL log beside the host's own handlers.

``from orderflow_client import OrderFlowClient`` loads the client (and redis) on first use of the name, so a
process that needs only a small module of the package (``orderflow_client.wire``, ``.prices``) does not pay for it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orderflow_client.logs import guest_logging
    from orderflow_client.prices import NanoDollars
    from orderflow_client.threaded import Delivery, OrderFlowClient

__all__ = ["Delivery", "NanoDollars", "OrderFlowClient", "guest_logging"]

_DEFINED_IN = {
    "Delivery": "orderflow_client.threaded",
    "OrderFlowClient": "orderflow_client.threaded",
    "guest_logging": "orderflow_client.logs",
    "NanoDollars": "orderflow_client.prices",
}


def __getattr__(name: str) -> Any:
    """The public names, imported from the module that defines them when first asked for."""
    if name not in _DEFINED_IN:
        raise AttributeError(f"module 'orderflow_client' has no attribute {name!r}")
    value = getattr(import_module(_DEFINED_IN[name]), name)
    globals()[name] = value
    return value
