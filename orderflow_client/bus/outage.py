"""One service's view of a Redis outage, reported once when it begins and once when it ends."""

from __future__ import annotations

import asyncio
import contextlib
import time

from orderflow_client import logs, metrics

log = logs.get_logger(__name__)


class Outage:
    """One service's view of a Redis outage: reported once when it begins and once when it ends
    (``order_flow.bus_unavailable`` / ``order_flow.bus_recovered``, the ``orderflow_bus_up`` gauge)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.since: float | None = None  # monotonic time Redis became unreachable
        self.since_ns = 0  # the same moment on the wall clock (ns since the epoch), for a gap's start

    def began(self, error: Exception) -> bool:
        """Redis failed a call; True when that starts an outage (it was answering until now)."""
        if self.since is not None:
            return False
        self.since = time.monotonic()
        self.since_ns = time.time_ns()
        metrics.BUS_UP.set(0)
        log.error("order_flow.bus_unavailable", code="bus_unavailable", reason=str(error)[:300], source=self.source)
        return True

    def ended(self) -> float | None:
        """Redis answered; the outage's length in seconds when one just ended, else None."""
        if self.since is None:
            return None
        seconds = round(time.monotonic() - self.since, 1)
        self.since = None
        metrics.BUS_UP.set(1)
        log.warning("order_flow.bus_recovered", down_seconds=seconds, source=self.source)
        return seconds

    @staticmethod
    async def pause(stop: asyncio.Event, seconds: float = 1.0) -> bool:
        """Wait before the next attempt, or until ``stop``; False once stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
        return not stop.is_set()
