"""The robinhood bot's own, never-wired order-flow API (``trading_bot.order_flow.OrderFlowDetector``), answered from
orderflow's streams, with the bot's ``OrderFlowAlert`` type::

    from orderflow_client.robinhood_detector import OrderFlowDetector
    detector = OrderFlowDetector(orderflow)          # orderflow: the client attach_trading_bot returned
    detector.should_trigger_exit("AAPL")             # True: an exit of AAPL recommended within 120 s
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from orderflow_client.prices import format_price
from orderflow_client.threaded import OrderFlowClient
from orderflow_client.wire import OrderFlowAlert


def bot_alert(alert: OrderFlowAlert, alert_class: type | None = None) -> Any:
    """orderflow's alert as the bot's own ``trading_bot.order_flow.OrderFlowAlert``: ``Decimal`` price, aware UTC
    ``datetime``, ``None`` where the field does not apply (price and size of a red burst, ratio of a large seller)."""
    if alert_class is None:
        from trading_bot.order_flow.data_models import (  # type: ignore[import-not-found]  # the bot's own package
            OrderFlowAlert as bot_alert_class,
        )
    else:
        bot_alert_class = alert_class
    large = alert.alert_type == "large_seller"
    return bot_alert_class(
        symbol=alert.symbol,
        alert_type=alert.alert_type,
        severity=alert.severity,
        order_size=alert.order_size if large else None,
        price_level=Decimal(format_price(alert.price_level)) if large else None,
        volume_ratio=None if large else alert.volume_ratio,
        timestamp_utc=datetime.fromtimestamp(alert.ts_event / 1e9, tz=UTC),
    )


class OrderFlowDetector:
    """The bot's own order-flow API (``trading_bot.order_flow.OrderFlowDetector``), answered from orderflow's
    streams."""

    def __init__(
        self, client: OrderFlowClient, alert_window_seconds: float = 120.0, alert_class: type | None = None
    ) -> None:
        self.client = client
        self.alert_window_seconds = alert_window_seconds
        self.alert_class = alert_class
        self.alert_history: list[Any] = []

    def should_trigger_exit(self, symbol: str | None = None) -> bool:
        """True when orderflow recommended an exit (of ``symbol``, or of any symbol) within the alert window."""
        return bool(self.client.recent("exits", self.alert_window_seconds, symbol))

    def monitor_active_positions(self, symbols: list[str]) -> dict[str, list[Any]]:
        """The alerts of the alert window for each of ``symbols`` (the bot's ``OrderFlowAlert``); kept in
        ``alert_history``."""
        alerts = self.client.recent("alerts", self.alert_window_seconds)
        found = {
            symbol: [bot_alert(alert, self.alert_class) for alert in alerts if alert.symbol == symbol]
            for symbol in symbols
        }
        for symbol_alerts in found.values():
            for alert in symbol_alerts:
                if alert not in self.alert_history:
                    self.alert_history.append(alert)
        return found

    def health_check(self) -> dict[str, Any]:
        """``status`` ok/degraded, the last alert, and whether orderflow (Redis, and monitoring of held symbols)
        answers."""
        dependencies = {"orderflow_redis": "unknown", "orderflow_monitoring": "unknown"}
        status: dict[str, Any] = {
            "status": "ok",
            "timestamp_utc": datetime.now(UTC).isoformat(),
            "last_alert_count": len(self.alert_history),
            "last_alert_timestamp": self.alert_history[-1].timestamp_utc.isoformat() if self.alert_history else None,
            "dependencies": dependencies,
        }
        try:
            dependencies["orderflow_redis"] = "ok" if self.client.ping() else "unreachable"
        except Exception as error:
            dependencies["orderflow_redis"] = f"unreachable: {type(error).__name__}"
        unmonitored = sorted(self.client.client.stats.unmonitored) if self.client.client is not None else []
        dependencies["orderflow_monitoring"] = f"unmonitored: {', '.join(unmonitored)}" if unmonitored else "ok"
        if dependencies["orderflow_redis"] != "ok" or unmonitored or not self.client.running:
            status["status"] = "degraded"
        return status
