"""The one adapter between orderflow and Polygon/Massive's REST API.

It uses the client's ``RESTClient`` (``massive`` or ``polygon-api-client``:
:mod:`services.ingest.polygon_clients`) for what it gets right (the
``Authorization: Bearer`` header, the CA bundle, the user agent) and works
around what they get wrong: polygon-api-client 1.16.3 builds its ``Timeout``
and never applies it (massive 2.9 does), and both turn any non-200 answer into
``BadResponse(body)``, losing the status and ``Retry-After`` of a 429. So
requests go through the client's own connection pool with:

* an explicit connect/read timeout on every call;
* no hidden urllib3 retries; our loop retries 429, 5xx and network errors
  with exponential backoff and jitter, honouring ``Retry-After``, then raises
  :class:`RestUnavailableError`;
* a client-side rate limit (requests per minute of the plan).

Calls are blocking; async code runs them with ``asyncio.to_thread``. The API
key is sent in a header, never in a URL, so it cannot leak through a logged
URL; ``next_url`` cursors are followed as given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from urllib.parse import urlencode, urljoin

import msgspec
import urllib3

from orderflow_client.logs import get_logger
from services.ingest.http_retries import (
    RETRYABLE_STATUSES,
    FetchBudget,
    HttpStatusError,
    RateLimiter,
    retry_after_seconds,
    retry_delay,
)
from services.ingest.polygon_clients import PolygonClientName, client_classes
from shared.conditions import ConditionTable

log = get_logger(__name__)


class RestError(HttpStatusError):
    """A REST call failed for good (4xx other than 429, bad body)."""

    code = "rest_error"


class RestUnavailableError(RestError):
    """The REST API kept failing (timeouts, 5xx, 429) past every retry."""

    code = "rest_unavailable"


class PolygonRest:
    """Blocking REST access with timeouts, backoff and a rate limit."""

    def __init__(
        self,
        api_key: str,
        base_url: str = "https://api.massive.com",
        *,
        client: PolygonClientName = "massive",
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        attempts: int = 6,
        backoff_base: float = 0.25,
        backoff_cap: float = 20.0,
        requests_per_minute: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        budget: FetchBudget | None = None,
    ) -> None:
        """``budget``: a bounded fetch (:class:`FetchBudget`): each request spends it, its timeouts are capped to the
        time left, every wait goes through its ``sleep`` (``FetchBoundReached`` raised at a bound)."""
        self.base_url = base_url.rstrip("/")
        # imported here, not at import: commands without a key never pay for the client (~0.3 s)
        rest_client = client_classes(client).rest
        self._client = rest_client(api_key=api_key, base=self.base_url, retries=0, pagination=False)
        self._pool: urllib3.PoolManager = self._client.client
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self.attempts = attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.budget = budget
        self.sleep = sleep if budget is None else budget.sleep
        self.limiter = RateLimiter(requests_per_minute, sleep=self.sleep)
        self.retries_done = 0

    def get(self, path_or_url: str, params: dict | None = None) -> bytes:
        """GET a path (``/v3/trades/AAPL``) or a full ``next_url``; the body on 200."""
        url = path_or_url if path_or_url.startswith("http") else urljoin(self.base_url + "/", path_or_url.lstrip("/"))
        if params:
            url = f"{url}?{urlencode(params)}"
        last_problem = ""
        for attempt in range(1, self.attempts + 1):
            timeout = self._next_timeout()
            retry_after = None
            try:
                response = self._pool.request("GET", url, timeout=timeout, retries=False, preload_content=True)
            except urllib3.exceptions.HTTPError as error:  # timeouts, refused connections, protocol errors
                last_problem = f"{type(error).__name__}"
            else:
                if response.status == 200:
                    return response.data
                last_problem = f"HTTP {response.status}"
                if response.status not in RETRYABLE_STATUSES:
                    raise RestError(f"GET {_path(url)} answered {response.status}", response.status)
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if attempt == self.attempts:
                break
            delay = retry_delay(
                attempt=attempt, base_seconds=self.backoff_base, cap_seconds=self.backoff_cap, retry_after=retry_after
            )
            self.retries_done += 1
            log.warning(
                "order_flow.rest_retry",
                path=_path(url),
                problem=last_problem,
                attempt=attempt,
                delay_seconds=round(delay, 3),
            )
            self.sleep(delay)
        raise RestUnavailableError(f"GET {_path(url)} failed {self.attempts} times; last: {last_problem}")

    def _next_timeout(self) -> urllib3.Timeout:
        """Wait for the rate limit; under a budget, spend one request and cap the timeouts to the time left."""
        if self.budget is None:
            self.limiter.wait()
            return self.timeout
        self.budget.spend_request()
        self.limiter.wait()
        left = max(0.05, self.budget.seconds_left())
        connect, read = self.timeout.connect_timeout, self.timeout.read_timeout
        return urllib3.Timeout(
            connect=min(connect, left) if isinstance(connect, float | int) else left,
            read=min(read, left) if isinstance(read, float | int) else left,
        )

    def pages(self, path: str, params: dict) -> Iterator[bytes]:
        """Every page of a paginated endpoint, following ``next_url``."""
        body = self.get(path, params)
        while True:
            yield body
            try:
                cursor = _cursor_decoder.decode(body).next_url
            except (msgspec.DecodeError, msgspec.ValidationError):
                return
            if not cursor:
                return
            body = self.get(cursor)

    def condition_table(self) -> ConditionTable:
        """Stock trade conditions from ``/v3/reference/conditions``."""
        results: list = []
        for body in self.pages(
            "/v3/reference/conditions", {"asset_class": "stocks", "data_type": "trade", "limit": 1000}
        ):
            results.extend(msgspec.json.decode(body).get("results", []))
        return ConditionTable.from_reference({"results": results}, source=f"rest {self.base_url}")

    def close(self) -> None:
        self._pool.clear()


def load_condition_table(rest: PolygonRest | None) -> ConditionTable:
    """The live table when reachable, else the bundled snapshot (logged, never fatal)."""
    if rest is None:
        return ConditionTable.bundled()
    try:
        table = rest.condition_table()
        log.info("order_flow.conditions_loaded", source=table.source, conditions=len(table.by_id))
        return table
    except (RestError, ValueError) as error:
        log.warning(
            "order_flow.conditions_fallback", code=getattr(error, "code", "invalid_reference"), reason=str(error)
        )
        return ConditionTable.bundled()


class _Cursor(msgspec.Struct):
    next_url: str | None = None


_cursor_decoder = msgspec.json.Decoder(_Cursor)


def _path(url: str) -> str:
    """A URL without its query (cursors can be long; keys are never in URLs)."""
    return url.split("?", 1)[0]
