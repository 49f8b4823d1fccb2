"""The REST side of the simulated Polygon: ``/v3/trades``, ``/v3/quotes`` and ``/v3/reference/conditions``.

``GET /v3/trades/{ticker}`` (``timestamp.gte``/``gt``/``lte``/``lt`` in ns, ``order``, ``limit``, ``next_url``
pagination through a ``cursor`` offset) serves every trade the simulated market printed
(:class:`services.tools.simulator_history.MarketHistory`); ``/v3/quotes/{ticker}`` the archive's quotes. The key is
checked (``Authorization: Bearer KEY`` or ``apiKey``). A trades page::

    {"results": [{"conditions": [], "exchange": 4, "id": "1", "participant_timestamp": 1795531500039000000,
                  "price": 50.004, "sequence_number": 2, "sip_timestamp": 1795531500039000000, "size": 200,
                  "tape": 3, "trf_id": 202}],
     "status": "OK", "request_id": "sim-0", "next_url": "http://127.0.0.1:8765/v3/trades/DEMO?limit=1&cursor=1"}

``GET /v2/aggs/ticker/{ticker}/range/1/minute/{from}/{to}`` (dates ``YYYY-MM-DD``, whole New York days, or UTC ms;
``adjusted``, ``sort``, ``limit``, ``next_url`` through a ``cursor``) serves the minute bars of the trades
(:meth:`~services.tools.simulator_history.MarketHistory.minute_bars`), in Polygon's shape::

    {"ticker": "SPY", "queryCount": 1, "resultsCount": 1, "adjusted": false, "status": "OK", "request_id": "sim-0",
     "results": [{"v": 300, "vw": 50.0033, "o": 50.0, "c": 50.01, "h": 50.01, "l": 50.0, "t": 1381152600000, "n": 2}]}

Fault for tests: ``failures`` answers that many requests 429 with ``Retry-After: 0.2``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from http import HTTPStatus
from importlib import resources
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from orderflow_client.timestamps import NANOSECONDS_PER_MILLISECOND, NANOSECONDS_PER_SECOND
from services.tools.simulator_history import MarketHistory, event_time_ns

NEW_YORK = ZoneInfo("America/New_York")


class SimulatedRest:
    """Answers the REST requests of the simulated Polygon from its :class:`MarketHistory`."""

    def __init__(self, history: MarketHistory, *, api_keys: frozenset[str]) -> None:
        self.history = history
        self.api_keys = api_keys
        self.failures = 0  # answer this many requests 429 first
        self.port = 0  # where next_url points: the simulator's port, set when it starts

    def answer(self, request: Request, path: str, query: dict[str, str]) -> Response:
        """The answer to ``GET path?query`` (``query``: the last value of each parameter)."""
        key = request.headers.get("Authorization", "").removeprefix("Bearer ").strip() or query.get("apiKey", "")
        if key not in self.api_keys:
            return json_response(HTTPStatus.UNAUTHORIZED, {"status": "ERROR", "error": "Unknown API Key"})
        if self.failures > 0:
            self.failures -= 1
            return json_response(
                HTTPStatus.TOO_MANY_REQUESTS,
                {"status": "ERROR", "error": "You've exceeded the maximum requests per minute."},
                {"Retry-After": "0.2"},
            )
        if path == "/v3/reference/conditions":
            text = resources.files("shared").joinpath("data/polygon_trade_conditions.json").read_bytes()
            return json_response(HTTPStatus.OK, json.loads(text))
        if path.startswith("/v3/trades/"):
            return self._trades_page(path.rsplit("/", 1)[1], query)
        if path.startswith("/v3/quotes/"):
            return self._quotes_page(path.rsplit("/", 1)[1], query)
        if path.startswith("/v2/aggs/ticker/"):
            return self._aggregates(path, query)
        return json_response(HTTPStatus.NOT_FOUND, {"status": "NOT_FOUND"})

    def _trades_page(self, symbol: str, query: dict[str, str]) -> Response:
        def row(t: dict) -> dict:
            ns = event_time_ns(t)
            return {
                "conditions": t["c"],
                "exchange": t["x"],
                "id": t["i"],
                "participant_timestamp": ns,
                "price": t["p"],
                "sequence_number": t["q"],
                "sip_timestamp": ns,
                "size": t["s"],
                "tape": t["z"],
                **({"trf_id": t["trfi"]} if "trfi" in t else {}),
            }

        return self._paged_answer("trades", symbol, self.history.trades.get(symbol, []), query, row)

    def _quotes_page(self, symbol: str, query: dict[str, str]) -> Response:
        def row(q: dict) -> dict:
            ns = event_time_ns(q)
            return {
                "ask_exchange": q["ax"],
                "ask_price": q["ap"],
                "ask_size": q["as"],
                "bid_exchange": q["bx"],
                "bid_price": q["bp"],
                "bid_size": q["bs"],
                "conditions": q["c"],
                "participant_timestamp": ns,
                "sequence_number": q["q"],
                "sip_timestamp": ns,
                "tape": q["z"],
            }

        return self._paged_answer("quotes", symbol, self.history.quotes.get(symbol, []), query, row)

    def _aggregates(self, path: str, query: dict[str, str]) -> Response:
        """``/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}``: one-minute bars only."""
        parts = path.split("/")
        if len(parts) != 10 or parts[5] != "range" or (parts[6], parts[7]) != ("1", "minute"):
            return json_response(HTTPStatus.BAD_REQUEST, {"status": "ERROR", "error": "only range/1/minute bars"})
        symbol, start, end = parts[4], parts[8], parts[9]
        try:
            low, high = _bound_ns(start, end_of_day=False), _bound_ns(end, end_of_day=True)
        except ValueError:
            return json_response(HTTPStatus.BAD_REQUEST, {"status": "ERROR", "error": "from/to: YYYY-MM-DD or ms"})
        bars = self.history.minute_bars(symbol, low, high)
        if query.get("sort", "asc") == "desc":
            bars.reverse()
        limit = min(int(query.get("limit", 5000)), 50_000)
        offset = int(query.get("cursor", 0))
        page = bars[offset : offset + limit]
        body: dict = {
            "ticker": symbol,
            "queryCount": len(page),
            "resultsCount": len(page),
            "adjusted": query.get("adjusted", "true") != "false",
            "results": page,
            "status": "OK",
            "request_id": f"sim-{offset}",
        }
        if offset + limit < len(bars):
            body["next_url"] = f"http://127.0.0.1:{self.port}{path}?" + urlencode({**query, "cursor": offset + limit})
        return json_response(HTTPStatus.OK, body)

    def _paged_answer(
        self, kind: str, symbol: str, events: Iterable[dict], query: dict[str, str], row: Callable[[dict], dict]
    ) -> Response:
        """One page of ``/v3/{kind}/{symbol}``: ``timestamp.gte/gt/lte/lt`` (ns), ``order``, ``limit``, ``cursor``."""
        low = max(int(query.get("timestamp.gte", 0)), int(query.get("timestamp.gt", -1)) + 1)
        high = min(int(query.get("timestamp.lte", 2**63 - 1)), int(query.get("timestamp.lt", 2**63)) - 1)
        limit = min(int(query.get("limit", 1000)), 50_000)
        offset = int(query.get("cursor", 0))
        rows = [event for event in events if low <= event_time_ns(event) <= high]
        if query.get("order", "asc") == "desc":
            rows.reverse()
        body: dict = {
            "results": [row(event) for event in rows[offset : offset + limit]],
            "status": "OK",
            "request_id": f"sim-{offset}",
        }
        if offset + limit < len(rows):
            body["next_url"] = f"http://127.0.0.1:{self.port}/v3/{kind}/{symbol}?" + urlencode(
                {**query, "cursor": offset + limit}
            )
        return json_response(HTTPStatus.OK, body)


def _bound_ns(value: str, *, end_of_day: bool) -> int:
    """An aggregates ``from``/``to`` in UTC ns: a New York date's start (``end_of_day``: its end), or UTC ms."""
    if value.isdigit():
        return int(value) * NANOSECONDS_PER_MILLISECOND + (1 if end_of_day else 0)
    day = date.fromisoformat(value) + timedelta(days=1 if end_of_day else 0)
    return int(datetime(day.year, day.month, day.day, tzinfo=NEW_YORK).timestamp()) * NANOSECONDS_PER_SECOND


def json_response(status: HTTPStatus, body: dict, headers: dict[str, str] | None = None) -> Response:
    """An HTTP answer with a JSON body; the connection closes after it."""
    data = json.dumps(body).encode()
    response_headers = Headers(
        {"Content-Type": "application/json", "Content-Length": str(len(data)), "Connection": "close", **(headers or {})}
    )
    return Response(status.value, status.phrase, response_headers, data)
