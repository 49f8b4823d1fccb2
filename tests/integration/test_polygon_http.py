"""The REST adapter: timeouts, backoff on 429/5xx, rate limit, pagination, the
conditions table — against a local server speaking Polygon's REST shapes."""

from __future__ import annotations

import json
import logging
import time
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderflow_client import logs
from services.detector.day_recorder import DayRecorder
from services.ingest.http_retries import RateLimiter
from services.ingest.polygon_rest_client import (
    PolygonRest,
    RestError,
    RestUnavailableError,
    load_condition_table,
)
from services.ingest.polygon_rest_parse import parse_trades_page
from services.offline.index_bars import index_sessions_from_rest
from tests.support.paths import REPO, shared_data
from tests.support.polygon_rest_server import PolygonRestServer

KEY = "pk_test_SECRET_5f3a9c"
BUNDLED = json.loads((REPO / "shared" / "data" / "polygon_trade_conditions.json").read_text())


@pytest.fixture
def server():
    with PolygonRestServer() as running:
        yield running


def rest(server, **options) -> PolygonRest:
    defaults = {"backoff_base": 0.01, "backoff_cap": 0.05, "requests_per_minute": 60_000}
    return PolygonRest(KEY, server.url, **{**defaults, **options})


@pytest.mark.parametrize("client", ["massive", "polygon-api-client"])
def test_trades_page_with_bearer_auth(server, client):
    body = shared_data("polygon", "rest-mocks", "mocks", "v3", "trades", "AAPL&limit=2.json").read_bytes()
    server.routes["/v3/trades/AAPL"] = [(200, {}, body)]
    page = parse_trades_page(rest(server, client=client).get("/v3/trades/AAPL", {"limit": 2}), "AAPL", 1)
    assert len(page.events) == 2
    path, query, authorization = server.requests[0]
    assert (path, query, authorization) == ("/v3/trades/AAPL", "limit=2", f"Bearer {KEY}")
    assert KEY not in query  # the key is never in a URL


@pytest.mark.parametrize("client", ["massive", "polygon-api-client"])
def test_429_is_retried_honouring_retry_after(server, client):
    server.routes["/v3/trades/X"] = [
        (429, {"Retry-After": "0.3"}, b"slow down"),
        (429, {}, b""),
        (200, {}, b'{"results":[]}'),
    ]
    polygon = rest(server, client=client)
    started = time.monotonic()
    assert polygon.get("/v3/trades/X") == b'{"results":[]}'
    assert time.monotonic() - started >= 0.3
    assert polygon.retries_done == 2 and len(server.requests) == 3


@pytest.mark.parametrize("client", ["massive", "polygon-api-client"])
def test_server_errors_and_timeouts_end_in_a_typed_error(server, client, tmp_path):
    server.routes["/v3/trades/DOWN"] = [(503, {}, b"")]
    with pytest.raises(RestUnavailableError, match="HTTP 503"):
        rest(server, client=client, attempts=3).get("/v3/trades/DOWN")
    assert len(server.requests) == 3
    server.routes["/v3/trades/SLOW"] = [(200, {}, b"{}")]
    server.delays["/v3/trades/SLOW"] = 1.0
    started = time.monotonic()
    with pytest.raises(RestUnavailableError, match="ReadTimeoutError"):
        rest(server, client=client, attempts=2, read_timeout=0.2).get("/v3/trades/SLOW")
    assert time.monotonic() - started < 1.5  # bounded by our timeout, not the server


def test_client_errors_are_not_retried(server):
    with pytest.raises(RestError) as raised:
        rest(server).get("/v3/trades/NOPE")
    assert raised.value.status == 404 and len(server.requests) == 1


def test_rate_limiter_spaces_calls_evenly():
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(per_minute=120, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        limiter.wait()
    assert slept == [0.5, 0.5, 0.5]


def test_conditions_follow_pagination(server):
    results = BUNDLED["results"]
    first = {"results": results[:30], "next_url": f"{server.url}/v3/reference/conditions?cursor=page2"}
    second = {"results": results[30:]}
    server.routes["/v3/reference/conditions"] = [
        (200, {}, json.dumps(first).encode()),
        (200, {}, json.dumps(second).encode()),
    ]
    table = load_condition_table(rest(server))
    assert len(table.by_id) == len(results) and table.source.startswith("rest")
    assert server.requests[1][1] == "cursor=page2"
    assert table.classify((14, 41)).aggressive and not table.classify((37,)).aggressive


def test_unreachable_conditions_fall_back_to_the_bundled_table_without_leaking_the_key(server, tmp_path):
    log_dir = tmp_path / "logs"
    logs.configure_logging(service="test", log_dir=log_dir, secrets=[KEY], console=False)
    try:
        server.routes["/v3/reference/conditions"] = [(500, {}, b"")]
        table = load_condition_table(rest(server, attempts=2))
    finally:
        logging.getLogger().handlers.clear()
    assert table.source == "bundled"
    written = "".join(p.read_text() for p in log_dir.glob("*.jsonl"))
    assert '"event":"order_flow.conditions_fallback"' in written and '"code":"rest_unavailable"' in written
    assert KEY not in written


# --- minute aggregates (the index's minutes for a profile's beta) -------------------------------------------------
OPEN_2013_10_07_MS = 1_381_152_600_000  # 09:30 ET on 2013-10-07


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    bars=st.dictionaries(
        st.integers(min_value=-330, max_value=400), st.integers(min_value=1, max_value=10_000_000), max_size=40
    )
)
def test_minute_aggregates_read_as_the_day_recorder_s_minutes(server, bars):
    """Bars in Polygon's shape (minutes from the open, pre-market and after the close included; prices in cents),
    read through the REST adapter: the same minute prices as the day recorder gives a session of those closes."""
    results = [
        {"v": 100, "vw": cents / 100, "o": cents / 100, "c": cents / 100, "h": cents / 100, "l": cents / 100,
         "t": OPEN_2013_10_07_MS + minute * 60_000, "n": 1}
        for minute, cents in sorted(bars.items())
    ]  # fmt: skip
    body = {"ticker": "SPY", "queryCount": len(results), "resultsCount": len(results), "adjusted": False,
            "results": results, "status": "OK", "request_id": "6a7e466379af0a71039d60cc78e72282"}  # fmt: skip
    path = "/v2/aggs/ticker/SPY/range/1/minute/2013-10-07/2013-10-07"
    server.routes[path] = [(200, {}, json.dumps(body).encode())]
    server.requests.clear()
    sessions = index_sessions_from_rest(rest(server), "SPY", [date(2013, 10, 7)])
    recorder = DayRecorder("SPY", "2013-10-07", OPEN_2013_10_07_MS * 1_000_000)
    for minute, cents in sorted(bars.items()):  # the minute's last trade, 59 s in
        recorder.record_print((OPEN_2013_10_07_MS + minute * 60_000 + 59_000) * 1_000_000, cents * 10_000_000, 100)
    expected = recorder.statistics().minute_mids
    assert [session.minute_mids for session in sessions] == ([expected] if expected else [])
    assert [(p, q) for p, q, _authorization in server.requests] == [(path, "adjusted=false&sort=asc&limit=50000")]


def test_the_simulator_s_minute_bars_are_polygon_s():
    """The simulator rolls trades up as Polygon does (a Form T print counts toward volume, sets no price; an official
    close report counts toward neither) and the official client's model reads every field."""
    from polygon.rest.models import Agg

    from services.tools.simulator_history import MarketHistory

    open_ns = OPEN_2013_10_07_MS * 1_000_000

    def trade(seconds: float, price: float, size: int, conditions: list[int]) -> tuple[int, dict]:
        ns = open_ns + int(seconds * 1e9)
        return ns, {"ev": "T", "sym": "SPY", "p": price, "s": size, "c": conditions, "t": 0}

    archive = [
        trade(1, 169.00, 100, [0]),
        trade(20, 169.05, 200, [14, 41]),
        trade(50, 170.00, 300, [12]),  # Form T: volume only
        trade(59, 169.02, 100, [0]),
        trade(61, 168.90, 100, [15]),  # official close report: neither
        trade(130, 168.95, 100, [0]),
    ]
    bars = MarketHistory(10, archive).minute_bars("SPY", open_ns, open_ns + 3600 * 10**9)
    read = [Agg.from_dict(bar) for bar in bars]
    assert [(a.open, a.high, a.low, a.close, a.volume, a.transactions, a.timestamp) for a in read] == [
        (169.0, 169.05, 169.0, 169.02, 700, 4, OPEN_2013_10_07_MS),
        (168.95, 168.95, 168.95, 168.95, 100, 1, OPEN_2013_10_07_MS + 120_000),
    ]
    assert read[0].vwap == round((169.0 * 100 + 169.05 * 200 + 170.0 * 300 + 169.02 * 100) / 700, 4)
