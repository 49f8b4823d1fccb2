"""A local stand-in for Polygon/Massive: its WebSocket protocol and enough REST.

``orderflow simulate-polygon --port 8765 FILE…`` serves, on one port:

* **WebSocket** ``ws://127.0.0.1:8765/stocks``, Polygon's exact handshake::

      ← [{"ev":"status","status":"connected","message":"Connected Successfully"}]
      → {"action":"auth","params":"KEY"}
      ← [{"ev":"status","status":"auth_success","message":"authenticated"}]   (or auth_failed + close)
      → {"action":"subscribe","params":"T.AAPL,Q.AAPL"}
      ← [{"ev":"status","status":"success","message":"subscribed to: T.AAPL"}, …]
      ← [{"ev":"T","sym":"AAPL",…,"t":1732550000123}, {"ev":"Q",…}]           (data, t in ms)

  A second authenticated connection with the same key gets
  ``max_connections`` and is closed, as Polygon does.
* **REST**: ``GET /v3/trades/{ticker}`` (``timestamp.gte``/``timestamp.lte``
  in ns, ``order``, ``limit``, ``next_url`` pagination) over every trade the
  simulated market printed, and ``GET /v3/reference/conditions``. The key is
  checked (Bearer header or ``apiKey``).

The market plays the files' events in a loop at ``speed`` × their own pace,
whether or not anyone listens (so a disconnected client misses trades that
REST still has). Each event's ``t`` is its market time mapped onto the wall
clock of the lap (compressed by ``speed``): the data is fresh for the
detector and events keep their order and spacing (a quote 400 ms before a
sweep at 40× lands 10 ms before it). Note that the rules' windows are event
time, so at 40× a 60 s spike window holds 40 minutes of the file. Faults for tests: :meth:`drop_connections`,
:meth:`inject`, ``rest_failures`` (answer 429 with ``Retry-After``), and the
same over HTTP at ``/admin/drop``, ``/admin/inject``, ``/admin/rest-429?count=N``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import msgspec
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from orderflow_client.logs import get_logger
from orderflow_client.prices import PRICE_SCALE
from orderflow_client.wire import BookUpdate, Quote, Trade
from services.ingest.rejects import Reject
from services.ingest.sources import read_events

log = get_logger(__name__)
_encoder = msgspec.json.Encoder()


def inside_quote(book: BookUpdate) -> Quote:
    """The NBBO of a depth book update."""
    bid, bid_size = book.bids[0] if book.bids else (0, 0)
    ask, ask_size = book.asks[0] if book.asks else (0, 0)
    return Quote(
        symbol=book.symbol,
        ts_event=book.ts_event,
        ts_recv=book.ts_recv,
        ts_arrival=book.ts_arrival,
        bid_price=bid,
        bid_size=bid_size,
        ask_price=ask,
        ask_size=ask_size,
    )


def polygon_event(event: Trade | Quote) -> dict:
    """A normalised event as a Polygon WebSocket dict (``t`` filled in when sent)."""
    if type(event) is Trade:
        data = {
            "ev": "T",
            "sym": event.symbol,
            "x": event.exchange,
            "i": event.trade_id,
            "z": event.tape,
            "p": event.price / PRICE_SCALE,
            "s": event.size,
            "c": list(event.conditions),
            "t": 0,
            "q": event.sequence,
        }
        if event.trf_id:
            data["trfi"] = event.trf_id
        return data
    return {
        "ev": "Q",
        "sym": event.symbol,
        "bx": event.bid_exchange,
        "bp": event.bid_price / PRICE_SCALE,
        "bs": event.bid_size,
        "ax": event.ask_exchange,
        "ap": event.ask_price / PRICE_SCALE,
        "as": event.ask_size,
        "c": list(event.conditions),
        "i": [],
        "t": 0,
        "q": event.sequence,
        "z": event.tape,
    }


def load_timeline(format: str, paths: list[Path]) -> list[tuple[int, dict]]:
    """``(event time ns, Polygon dict)`` of trades and quotes, in time order. A depth book
    (LOBSTER) becomes the quotes of its inside level: all Polygon shows of a stock's book."""
    timeline = []
    for item in read_events(format, paths):
        if type(item) is BookUpdate:
            item = inside_quote(item)
        if isinstance(item, Reject) or type(item) not in (Trade, Quote):
            continue
        timeline.append((item.ts_event, polygon_event(item)))
    timeline.sort(key=lambda pair: pair[0])
    return timeline


@dataclass
class _Client:
    connection: ServerConnection
    key: str = ""
    authenticated: bool = False
    topics: set[str] | None = None


class PolygonSimulator:
    """The simulated market, its WebSocket clients and its REST archive."""

    def __init__(
        self,
        timeline: list[tuple[int, dict]],
        *,
        api_key: str,
        speed: float = 1.0,
        loop_forever: bool = True,
        batch_ms: int = 5,
        max_frame_events: int = 500,
        archive: list[tuple[int, dict]] | None = None,
        history_trades: int = 1_000_000,
    ) -> None:
        """``history_trades``: the REST archive keeps at most this many trades per symbol, the newest (a simulator
        looping for days must not grow without bound)."""
        if not timeline:
            raise ValueError("nothing to replay: no trades or quotes in the input")
        self.timeline = timeline
        self.api_key = api_key
        self.speed = speed
        self.loop_forever = loop_forever
        self.batch_ns = batch_ms * 1_000_000
        self.max_frame_events = max_frame_events
        self.clients: list[_Client] = []
        self.trades: dict[str, deque[dict]] = defaultdict(
            lambda: deque(maxlen=history_trades)
        )  # printed trades, for REST
        self.quotes: dict[str, list[dict]] = defaultdict(list)  # REST quotes: the archive's
        for market_ns, event in archive or ():  # history days served by REST (calibration), at their own times
            (self.trades if event["ev"] == "T" else self.quotes)[event["sym"]].append({**event, "t_ns": market_ns})
        self.rest_failures = 0
        self.rest_delay_seconds = 0.0
        self.paused = False  # keep connections open but send nothing (a silent feed)
        self.sent_events = 0
        self.played = asyncio.Event()
        self._server = None
        self._player: asyncio.Task | None = None
        self.port = 0

    # --- lifecycle -----------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> PolygonSimulator:
        self._server = await serve(self._session, host, port, process_request=self._http, max_size=None)
        self.port = self._server.sockets[0].getsockname()[1]
        self._player = asyncio.ensure_future(self._play())
        log.info("order_flow.simulator_started", port=self.port, events=len(self.timeline), speed=self.speed)
        return self

    async def stop(self) -> None:
        if self._player is not None:
            self._player.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def feed(self) -> str:
        return f"127.0.0.1:{self.port}"

    # --- the market ----------------------------------------------------------------
    async def _play(self) -> None:
        try:
            lap = 0
            while True:
                first = self.timeline[0][0]
                started = time.perf_counter()
                lap_start_ms = time.time_ns() // 1_000_000
                index = 0
                while index < len(self.timeline):
                    due_ns = self.timeline[index][0]
                    delay = started + (due_ns - first) / 1e9 / self.speed - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    batch = []
                    horizon = due_ns + self.batch_ns * self.speed
                    while (
                        index < len(self.timeline)
                        and self.timeline[index][0] <= horizon
                        and len(batch) < self.max_frame_events
                    ):
                        batch.append(self.timeline[index])
                        index += 1
                    await self._send_market(batch, lap, lap_start_ms, first)
                    await asyncio.sleep(0)  # at extreme speeds, let handshakes and REST in
                self.played.set()
                if not self.loop_forever:
                    return
                lap += 1
        except asyncio.CancelledError:
            return

    async def _send_market(self, batch: list[tuple[int, dict]], lap: int, lap_start_ms: int, first_ns: int) -> None:
        stamped = []
        for market_ns, event in batch:
            event = {**event, "t": lap_start_ms + int((market_ns - first_ns) / 1e6 / self.speed)}
            if lap and event["ev"] == "T":
                event["i"] = f"{lap}-{event['i']}"  # a new print each lap, not a duplicate
            stamped.append(event)
            if event["ev"] == "T":
                self.trades[event["sym"]].append(event)
        self.sent_events += len(stamped)
        for client in list(self.clients):
            if self.paused or not client.authenticated or not client.topics:
                continue
            wanted = [e for e in stamped if f"{e['ev']}.{e['sym']}" in client.topics or f"{e['ev']}.*" in client.topics]
            if wanted:
                try:
                    await client.connection.send(_encoder.encode(wanted).decode())
                except ConnectionClosed:
                    pass

    # --- faults ------------------------------------------------------------------------
    async def drop_connections(self) -> int:
        """Cut every client off without a closing handshake (a network drop)."""
        count = 0
        for client in list(self.clients):
            client.connection.transport.abort()
            count += 1
        return count

    async def inject(self, frame: str | bytes) -> None:
        """Send a raw frame (malformed or not) to every authenticated client."""
        for client in list(self.clients):
            if client.authenticated:
                await client.connection.send(frame if isinstance(frame, str) else frame.decode(errors="replace"))

    # --- WebSocket protocol --------------------------------------------------------------
    async def _session(self, connection: ServerConnection) -> None:
        client = _Client(connection)
        self.clients.append(client)
        try:
            await connection.send('[{"ev":"status","status":"connected","message":"Connected Successfully"}]')
            async for message in connection:
                try:
                    request = json.loads(message)
                    action, params = request.get("action"), str(request.get("params", ""))
                except (ValueError, AttributeError):
                    await connection.send('[{"ev":"status","status":"error","message":"invalid message"}]')
                    continue
                if action == "auth":
                    await self._auth(client, params)
                elif not client.authenticated:
                    await connection.send('[{"ev":"status","status":"error","message":"not authorized"}]')
                elif action in ("subscribe", "unsubscribe"):
                    await self._subscribe(client, action, params)
        except ConnectionClosed:
            pass
        finally:
            self.clients.remove(client)

    async def _auth(self, client: _Client, key: str) -> None:
        if key != self.api_key:
            await client.connection.send('[{"ev":"status","status":"auth_failed","message":"authentication failed"}]')
            await client.connection.close()
            return
        if any(other.authenticated and other is not client for other in self.clients):
            await client.connection.send(
                '[{"ev":"status","status":"max_connections","message":"Maximum number of websocket connections exceeded. You have reached the connection limit for your account. Please contact support at https://polygon.io/contact to increase your limit."}]'
            )
            await client.connection.close()
            return
        client.authenticated = True
        client.topics = set()
        await client.connection.send('[{"ev":"status","status":"auth_success","message":"authenticated"}]')

    async def _subscribe(self, client: _Client, action: str, params: str) -> None:
        topics = [topic.strip() for topic in params.split(",") if topic.strip()]
        statuses = []
        for topic in topics:
            if action == "subscribe":
                client.topics.add(topic)
                statuses.append({"ev": "status", "status": "success", "message": f"subscribed to: {topic}"})
            else:
                client.topics.discard(topic)
                statuses.append({"ev": "status", "status": "success", "message": f"unsubscribed to: {topic}"})
        await client.connection.send(_encoder.encode(statuses).decode())

    # --- REST ------------------------------------------------------------------------------
    def _http(self, connection: ServerConnection, request: Request):
        """The REST side; a ``/v3/`` answer waits ``rest_delay_seconds`` first when set (a slow API, for tests)."""
        response = self._answer(connection, request)
        if response is not None and self.rest_delay_seconds > 0 and "/v3/" in request.path:
            return self._later(response)
        return response

    async def _later(self, response: Response) -> Response:
        await asyncio.sleep(self.rest_delay_seconds)
        return response

    def _answer(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        url = urlparse(request.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        if url.path.startswith("/admin/"):
            return self._admin(url.path, query)
        key = request.headers.get("Authorization", "").removeprefix("Bearer ").strip() or query.get("apiKey", "")
        if key != self.api_key:
            return _json(HTTPStatus.UNAUTHORIZED, {"status": "ERROR", "error": "Unknown API Key"})
        if self.rest_failures > 0:
            self.rest_failures -= 1
            return _json(
                HTTPStatus.TOO_MANY_REQUESTS,
                {"status": "ERROR", "error": "You've exceeded the maximum requests per minute."},
                {"Retry-After": "0.2"},
            )
        if url.path == "/v3/reference/conditions":
            text = resources.files("shared").joinpath("data/polygon_trade_conditions.json").read_bytes()
            return _json(HTTPStatus.OK, json.loads(text))
        if url.path.startswith("/v3/trades/"):
            return self._trades(url.path.rsplit("/", 1)[1], query)
        if url.path.startswith("/v3/quotes/"):
            return self._quotes(url.path.rsplit("/", 1)[1], query)
        return _json(HTTPStatus.NOT_FOUND, {"status": "NOT_FOUND"})

    def _trades(self, symbol: str, query: dict[str, str]) -> Response:
        def row(t: dict) -> dict:
            ns = _ns(t)
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

        return self._page("trades", symbol, self.trades.get(symbol, []), query, row)

    def _quotes(self, symbol: str, query: dict[str, str]) -> Response:
        def row(q: dict) -> dict:
            ns = _ns(q)
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

        return self._page("quotes", symbol, self.quotes.get(symbol, []), query, row)

    def _page(self, kind: str, symbol: str, events: Iterable[dict], query: dict[str, str], row) -> Response:
        """One page of ``/v3/{kind}/{symbol}``: ``timestamp.gte/gt/lte/lt``, ``order``, ``limit``, a ``cursor`` offset."""
        low = max(int(query.get("timestamp.gte", 0)), int(query.get("timestamp.gt", -1)) + 1)
        high = min(int(query.get("timestamp.lte", 2**63 - 1)), int(query.get("timestamp.lt", 2**63)) - 1)
        limit = min(int(query.get("limit", 1000)), 50_000)
        offset = int(query.get("cursor", 0))
        rows = [event for event in events if low <= _ns(event) <= high]
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
        return _json(HTTPStatus.OK, body)

    def _admin(self, path: str, query: dict[str, str]) -> Response:
        loop = asyncio.get_running_loop()
        if path == "/admin/drop":
            loop.create_task(self.drop_connections())
        elif path == "/admin/inject":
            loop.create_task(self.inject(query.get("frame", "")))
        elif path == "/admin/rest-429":
            self.rest_failures = int(query.get("count", 1))
        else:
            return _json(HTTPStatus.NOT_FOUND, {"status": "NOT_FOUND"})
        return _json(HTTPStatus.OK, {"status": "OK"})


def _ns(event: dict) -> int:
    """An event's time in ns: an archive event's own, a played one's WebSocket ms."""
    return event.get("t_ns", event["t"] * 1_000_000)


def _json(status: HTTPStatus, body: dict, headers: dict[str, str] | None = None) -> Response:
    data = json.dumps(body).encode()
    response_headers = Headers(
        {"Content-Type": "application/json", "Content-Length": str(len(data)), "Connection": "close", **(headers or {})}
    )
    return Response(status.value, status.phrase, response_headers, data)
