"""Exit recommendations from alerts (US3, FR-008/009).

* ≥ 3 one-sided large-seller alerts within ``alert_window_ns`` (default 120 s)
  → one recommendation per episode; the episode ends when a whole window
  passes without a large-seller alert (a steady stream of sellers is one
  episode, not a recommendation every time the oldest alert ages out). Two-sided book alerts (large size on both sides:
  accumulation as much as distribution) do not count.
* a ``critical`` red burst (ratio ≥ ``red_burst_threshold``) → one
  recommendation for that burst episode.

Alerts leaving the window are reported so the service logs
``order_flow.alert_window_expired``.
"""

from __future__ import annotations

from collections import deque

from orderflow_client.prices import format_price
from orderflow_client.timestamps import NANOSECONDS_PER_SECOND, ns_to_utc_iso
from orderflow_client.wire import ExitRecommendation, OrderFlowAlert

LARGE_SELLER_COUNT = 3


class ExitRule:
    """Exit logic for one symbol."""

    def __init__(self, alert_window_ns: int) -> None:
        self.alert_window_ns = alert_window_ns
        self.recent: deque[OrderFlowAlert] = deque()
        self.seller_episode = False

    def expire(self, ts_event: int) -> list[OrderFlowAlert]:
        """Alerts older than the window at ``ts_event`` (removed)."""
        expired = []
        while self.recent and ts_event - self.recent[0].ts_event > self.alert_window_ns:
            expired.append(self.recent.popleft())
        if not self.recent:
            self.seller_episode = False
        return expired

    def on_alert(self, alert: OrderFlowAlert) -> ExitRecommendation | None:
        if alert.alert_type == "red_burst":
            if alert.severity == "critical":
                return _red_burst_exit(alert)
            return None
        if alert.two_sided or "escalates" in alert.evidence:
            return None  # two-sided size is not one-sided pressure; an escalation is a seller already counted
        self.recent.append(alert)
        if len(self.recent) >= LARGE_SELLER_COUNT and not self.seller_episode:
            self.seller_episode = True
            return _large_sellers_exit(alert, list(self.recent), self.alert_window_ns)
        return None

    def reset(self) -> None:
        self.recent.clear()
        self.seller_episode = False


def _large_sellers_exit(trigger: OrderFlowAlert, alerts: list[OrderFlowAlert], window_ns: int) -> ExitRecommendation:
    total = sum(alert.order_size for alert in alerts)
    span = (alerts[-1].ts_event - alerts[0].ts_event) / NANOSECONDS_PER_SECOND
    parts = ", ".join(f"{alert.order_size:,} @ {format_price(alert.price_level)} ({alert.source})" for alert in alerts)
    reasoning = (
        f"{len(alerts)} large sellers within {span:.0f} s (window {window_ns // NANOSECONDS_PER_SECOND} s): {parts}; "
        f"{total:,} shares sold aggressively into the bid. Institutional selling pressure: consider exiting "
        f"or tightening the stop."
    )
    return ExitRecommendation(
        id=f"{trigger.symbol}:exit:large_sellers:{trigger.id}",
        symbol=trigger.symbol,
        trigger="large_sellers",
        ts_event=trigger.ts_event,
        ts_recv=trigger.ts_recv,
        timestamp_utc=ns_to_utc_iso(trigger.ts_event),
        alert_ids=tuple(alert.id for alert in alerts),
        reasoning=reasoning,
        severity="critical",
        session=trigger.session,
        evidence={
            "alerts": len(alerts),
            "shares": total,
            "span_seconds": round(span, 3),
            "lowest_price": format_price(min(alert.price_level for alert in alerts)),
        },
    )


def _red_burst_exit(alert: OrderFlowAlert) -> ExitRecommendation:
    reasoning = (
        f"Red burst: volume {alert.volume_ratio:.1f}x the 5-minute average with {alert.sell_ratio:.0%} of it "
        f"sold aggressively. Panic selling: consider exiting or tightening the stop."
    )
    return ExitRecommendation(
        id=f"{alert.symbol}:exit:red_burst:{alert.id}",
        symbol=alert.symbol,
        trigger="red_burst",
        ts_event=alert.ts_event,
        ts_recv=alert.ts_recv,
        timestamp_utc=alert.timestamp_utc,
        alert_ids=(alert.id,),
        reasoning=reasoning,
        severity="critical",
        session=alert.session,
        evidence={"volume_ratio": round(alert.volume_ratio, 3), "sell_ratio": round(alert.sell_ratio, 3)},
    )
