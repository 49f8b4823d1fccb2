"""What :meth:`services.detector.engine.Engine.process` returns for an event, besides the wire messages.

An :data:`Output` is an alert, an exit recommendation, a status (the
detector's own, or a feed's), a :class:`~services.detector.integrity.ValidationIssue`,
the :class:`ExpiredAlerts` that left the exit window, a :class:`PulledOrder`, or a :class:`ProfileUpdate`
to store. The live service and the offline tools dispatch on its type.
"""

from __future__ import annotations

from typing import NamedTuple

from orderflow_client.wire import ExitRecommendation, FeedStatus, OrderFlowAlert
from services.detector.integrity import ValidationIssue
from services.detector.orders import PulledOrder
from services.detector.profiles import SymbolProfile


class ExpiredAlerts(tuple[str, ...]):
    """The ids of alerts that left the exit window (for ``order_flow.alert_window_expired``)."""


class ProfileUpdate(NamedTuple):
    """A symbol's profile rebuilt after a session ended (the service stores it)."""

    profile: SymbolProfile


Output = (
    OrderFlowAlert | ExitRecommendation | FeedStatus | ValidationIssue | ExpiredAlerts | PulledOrder | ProfileUpdate
)
