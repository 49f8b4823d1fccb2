"""What a bot embeds: exit recommendations from orderflow, and its positions in orderflow's registry.

- :class:`OrderFlowClient` — for a threaded bot (its own event loop in a background thread);
- :class:`orderflow_client.risk.RiskManagerClient` — for an asyncio bot;
- :mod:`orderflow_client.robinhood` — adapters for robinhood-algo-trading-bot;
- :func:`guest_logging` — orderflow's JSONL log beside the host's own handlers.
"""

from orderflow_client.logs import guest_logging
from orderflow_client.prices import NanoDollars
from orderflow_client.threaded import Delivery, OrderFlowClient

__all__ = ["Delivery", "NanoDollars", "OrderFlowClient", "guest_logging"]
