"""Exit recommendations from alerts.

* ≥ 3 one-sided large-seller alerts within ``alert_window_ns`` (default 120 s)
  → one recommendation per episode; the episode ends when a whole window
  passes without a large-seller alert (a steady stream of sellers is one
  episode, not a recommendation every time the oldest alert ages out). Two-sided book alerts (large size on
  both sides: accumulation as much as distribution) do not count, nor does an escalation (a seller already
  counted, now critical).
* a ``critical`` red burst (ratio ≥ ``red_burst_threshold``) → one
  recommendation for that burst episode.

Alerts leaving the window are reported so the service logs
``order_flow.alert_window_expired``. What a recommendation says (id, reasoning,
evidence) is built in :mod:`services.detector.alert_builders`.
"""

from __future__ import annotations

from collections import deque

from orderflow_client.wire import ExitRecommendation, OrderFlowAlert
from services.detector.alert_builders import large_sellers_exit, red_burst_exit

LARGE_SELLER_COUNT = 3


class ExitRule:
    """Exit logic for one symbol."""

    def __init__(self, alert_window_ns: int) -> None:
        self.alert_window_ns = alert_window_ns
        self.recent: deque[OrderFlowAlert] = deque()
        self.seller_episode = False

    def expire(self, ts_event: int) -> list[OrderFlowAlert]:
        """Alerts older than the window at ``ts_event`` (removed)."""
        expired: list[OrderFlowAlert] = []
        while self.recent and ts_event - self.recent[0].ts_event > self.alert_window_ns:
            expired.append(self.recent.popleft())
        if not self.recent:
            self.seller_episode = False
        return expired

    def on_alert(self, alert: OrderFlowAlert) -> ExitRecommendation | None:
        """The recommendation ``alert`` completes, if any (the alert is counted toward the window)."""
        if alert.alert_type == "red_burst":
            if alert.severity == "critical":
                return red_burst_exit(alert)
            return None
        if alert.two_sided or "escalates" in alert.evidence:
            return None  # two-sided size is not one-sided pressure; an escalation is a seller already counted
        self.recent.append(alert)
        if len(self.recent) >= LARGE_SELLER_COUNT and not self.seller_episode:
            self.seller_episode = True
            return large_sellers_exit(alert, list(self.recent), self.alert_window_ns)
        return None

    def reset(self) -> None:
        self.recent.clear()
        self.seller_episode = False
