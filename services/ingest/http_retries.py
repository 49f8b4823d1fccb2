"""The retry policy both HTTP adapters share (Polygon/Massive REST, Databento's historical API): which answers are
worth another try, how long to wait before it, and a client-side rate limit.

A retryable answer (408, 413, 429, 499, 5xx) or a network error waits a random time in ``[d/2, d]`` with
``d = min(cap, base × 2^(attempt − 1))``, and never less than the server's ``Retry-After`` (seconds)::

    delay = retry_delay(attempt=2, base_seconds=0.25, cap_seconds=20.0, retry_after=retry_after_seconds("1.5"))
    # 1.5: the server asked for more than the 0.25 – 0.5 s the backoff gives
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from orderflow_client.errors import OrderflowError

RETRYABLE_STATUSES = frozenset({408, 413, 429, 499, 500, 502, 503, 504})


class HttpStatusError(OrderflowError):
    """An HTTP API refused a request for good; ``status`` the HTTP status when there was one (each adapter names its
    own subclasses and codes)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (``"2"`` → 2.0); None when absent or not a number of seconds."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def retry_delay(*, attempt: int, base_seconds: float, cap_seconds: float, retry_after: float | None) -> float:
    """Seconds to wait after failed ``attempt`` (1 first): doubling from ``base_seconds``, capped, jittered, and at
    least the server's ``retry_after``."""
    delay = min(cap_seconds, base_seconds * 2 ** (attempt - 1))
    delay = random.uniform(delay / 2, delay)
    return delay if retry_after is None else max(delay, retry_after)


@dataclass
class RateLimiter:
    """At most ``per_minute`` calls in any 60 s, spaced evenly (thread-safe)."""

    per_minute: float
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self.clock()
            start = max(now, self._next)
            self._next = start + 60.0 / self.per_minute
        if start > now:
            self.sleep(start - now)


class Cancellation(Protocol):
    """A flag another thread or process sets to stop a fetch: a :class:`threading.Event` or a
    ``multiprocessing`` one (the live calibration worker's child process)."""

    def is_set(self) -> bool: ...

    def set(self) -> None: ...


class FetchBoundReached(Exception):
    """A bounded fetch reached a bound: ``bound`` is ``requests``, ``seconds`` or ``cancelled``."""

    def __init__(self, bound: str) -> None:
        super().__init__(f"fetch stopped: {bound} bound reached")
        self.bound = bound


class FetchBudget:
    """The bounds of one fetch: at most ``requests`` requests (retries count) within ``seconds``.

    An adapter spends it before each request (:meth:`spend_request`), caps each request's timeout to what is left
    (:meth:`seconds_left`) and sleeps through :meth:`sleep`, so a wait (backoff, ``Retry-After``, rate limit) that
    would end past the deadline stops the fetch at once. :meth:`cancel` (any thread) stops it at its next request
    or wait (as does setting the ``cancelled`` event given, a thread's or a process's). Sample: under
    ``FetchBudget(200, 60.0)`` the 201st request raises ``FetchBoundReached("requests")``."""

    def __init__(
        self,
        requests: int,
        seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        cancelled: Cancellation | None = None,
    ) -> None:
        self.max_requests = requests
        self.requests = 0
        self.deadline = clock() + seconds
        self.clock = clock
        self._sleep = sleep
        self.cancelled: Cancellation = cancelled if cancelled is not None else threading.Event()

    def spend_request(self) -> None:
        """Count one request; :class:`FetchBoundReached` when none is left, the time is up or it was cancelled."""
        self._check(0.0)
        if self.requests >= self.max_requests:
            raise FetchBoundReached("requests")
        self.requests += 1

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` unless that ends past the deadline (then :class:`FetchBoundReached` at once)."""
        self._check(seconds)
        self._sleep(seconds)

    def seconds_left(self) -> float:
        return max(0.0, self.deadline - self.clock())

    def cancel(self) -> None:
        self.cancelled.set()

    def _check(self, seconds: float) -> None:
        if self.cancelled.is_set():
            raise FetchBoundReached("cancelled")
        if self.clock() + seconds >= self.deadline:
            raise FetchBoundReached("seconds")
