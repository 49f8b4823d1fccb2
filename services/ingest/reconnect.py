"""The reconnect policy both live sources share (Polygon's WebSocket, Databento's Live session): exponential
backoff with jitter, reset once a connection has lasted.

The n-th failure in a row waits a random time in ``[d/2, d]`` with ``d = min(cap, 0.25 s × 2^n)``: 0.25 – 0.5 s,
then 0.5 – 1 s, …, up to 15 – 30 s with the default cap. A connection that delivered data and lasted more than 5 s
resets the count, so a drop after a long session reconnects quickly and a refusing server is not hammered::

    backoff = ReconnectBackoff(cap_seconds=30.0)
    delay = backoff.after_drop(was_connected=True, lasted_ns=12 * NANOSECONDS_PER_SECOND)   # 0.25 – 0.5 s
"""

from __future__ import annotations

import random

from orderflow_client.timestamps import NANOSECONDS_PER_SECOND

FIRST_DELAY_SECONDS = 0.25
LASTING_NS = 5 * NANOSECONDS_PER_SECOND
"""A connection that delivered data and lasted this long resets the count of failures."""


class ReconnectBackoff:
    """How long to wait before the next connection attempt (seconds)."""

    def __init__(self, cap_seconds: float = 30.0) -> None:
        self.cap_seconds = cap_seconds
        self.failures = 0

    def after_drop(self, *, was_connected: bool, lasted_ns: int) -> float:
        """The wait after a connection ended: ``was_connected`` (it delivered data), ``lasted_ns`` its length."""
        self.failures = 0 if was_connected and lasted_ns > LASTING_NS else self.failures + 1
        delay = min(self.cap_seconds, FIRST_DELAY_SECONDS * 2 ** min(self.failures, 10))
        return random.uniform(delay / 2, delay)
