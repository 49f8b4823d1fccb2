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
* **REST** (:mod:`services.tools.simulator_rest`): ``GET /v3/trades/{ticker}`` over every trade the simulated market
  printed (:mod:`services.tools.simulator_history`), ``/v3/quotes/{ticker}`` and ``/v3/reference/conditions``.

The market plays the files' events (:mod:`services.tools.simulator_timeline`) in a loop at ``speed`` × their own
pace, whether or not anyone listens (so a disconnected client misses trades that
REST still has). Each event's ``t`` is its market time mapped onto the wall
clock of the lap (compressed by ``speed``): the data is fresh for the
detector and events keep their order and spacing (a quote 400 ms before a
sweep at 40× lands 10 ms before it). Note that the rules' windows are event
time, so at 40× a 60 s spike window holds 40 minutes of the file. Faults for tests: :meth:`drop_connections`,
:meth:`inject`, ``paused``, ``rest.failures`` (answer 429 with ``Retry-After``), ``rest_delay_seconds``, and the
same over HTTP at ``/admin/drop``, ``/admin/inject``, ``/admin/rest-429?count=N``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlparse

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from orderflow_client.logs import get_logger
from services.tools.simulator_history import MarketHistory
from services.tools.simulator_rest import SimulatedRest, json_response

log = get_logger(__name__)
_encoder = msgspec.json.Encoder()


@dataclass
class _Client:
    connection: ServerConnection
    key: str = ""
    authenticated: bool = False
    topics: set[str] = field(default_factory=set)


class PolygonSimulator:
    """The simulated market, its WebSocket clients and its REST archive."""

    def __init__(
        self,
        timeline: list[tuple[int, dict]],
        *,
        api_key: str,
        other_keys: tuple[str, ...] = (),
        speed: float = 1.0,
        loop_forever: bool = True,
        batch_ms: int = 5,
        max_frame_events: int = 500,
        archive: list[tuple[int, dict]] | None = None,
        history_trades: int = 1_000_000,
    ) -> None:
        """``other_keys``: more accounts' keys it accepts (one WebSocket connection each, as ``api_key``'s: several
        ingests, one key each); ``history_trades``: the REST archive keeps at most this many trades per symbol, the
        newest (a simulator looping for days must not grow without bound)."""
        if not timeline:
            raise ValueError("nothing to replay: no trades or quotes in the input")
        self.timeline = timeline
        self.api_key = api_key
        self.keys = frozenset({api_key, *other_keys})
        self.speed = speed
        self.loop_forever = loop_forever
        self.batch_ns = batch_ms * 1_000_000
        self.max_frame_events = max_frame_events
        self.clients: list[_Client] = []
        self.history = MarketHistory(history_trades, archive)  # printed trades and archive quotes, for REST
        self.rest = SimulatedRest(self.history, api_keys=self.keys)
        self.rest_delay_seconds = 0.0
        self.paused = False  # keep connections open but send nothing (a silent feed)
        self.sent_events = 0
        self.played = asyncio.Event()
        self._server: Server | None = None
        self._player: asyncio.Task | None = None
        self._admin_tasks: set[asyncio.Task] = set()  # faults asked for over HTTP, running
        self.port = 0

    # --- lifecycle -----------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> PolygonSimulator:
        self._server = server = await serve(self._serve_client, host, port, process_request=self._http, max_size=None)
        self.port = self.rest.port = next(iter(server.sockets)).getsockname()[1]
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
                    batch: list[tuple[int, dict]] = []
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
        printed = self.history.trades
        now_ms = time.time_ns() // 1_000_000  # a batch reaches batch_ms ahead: no event is stamped after its sending
        for market_ns, event in batch:
            event = {**event, "t": min(now_ms, lap_start_ms + int((market_ns - first_ns) / 1e6 / self.speed))}
            if lap and event["ev"] == "T":
                event["i"] = f"{lap}-{event['i']}"  # a new print each lap, not a duplicate
            stamped.append(event)
            if event["ev"] == "T":
                printed[event["sym"]].append(event)
        self.sent_events += len(stamped)
        for client in list(self.clients):
            if self.paused or not client.authenticated or not client.topics:
                continue
            wanted = [e for e in stamped if f"{e['ev']}.{e['sym']}" in client.topics or f"{e['ev']}.*" in client.topics]
            if wanted:
                with contextlib.suppress(ConnectionClosed):
                    await client.connection.send(_encoder.encode(wanted).decode())

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
    async def _serve_client(self, connection: ServerConnection) -> None:
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
                    await self._authenticate(client, params)
                elif not client.authenticated:
                    await connection.send('[{"ev":"status","status":"error","message":"not authorized"}]')
                elif action in ("subscribe", "unsubscribe"):
                    await self._change_topics(client, action, params)
        except ConnectionClosed:
            pass
        finally:
            self.clients.remove(client)

    async def _authenticate(self, client: _Client, key: str) -> None:
        if key not in self.keys:
            await client.connection.send('[{"ev":"status","status":"auth_failed","message":"authentication failed"}]')
            await client.connection.close()
            return
        if any(other.authenticated and other is not client and other.key == key for other in self.clients):
            await client.connection.send(
                '[{"ev":"status","status":"max_connections","message":"Maximum number of websocket connections '
                "exceeded. You have reached the connection limit for your account. Please contact support at "
                'https://polygon.io/contact to increase your limit."}]'
            )
            await client.connection.close()
            return
        client.authenticated = True
        client.key = key
        client.topics = set()
        await client.connection.send('[{"ev":"status","status":"auth_success","message":"authenticated"}]')

    async def _change_topics(self, client: _Client, action: str, params: str) -> None:
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

    # --- HTTP: REST and the admin faults ---------------------------------------------------
    def _http(self, connection: ServerConnection, request: Request) -> Response | Awaitable[Response] | None:
        """The REST side; a ``/v3/`` answer waits ``rest_delay_seconds`` first when set (a slow API, for tests)."""
        response = self._route(request)
        if response is not None and self.rest_delay_seconds > 0 and "/v3/" in request.path:
            return self._later(response)
        return response

    async def _later(self, response: Response) -> Response:
        await asyncio.sleep(self.rest_delay_seconds)
        return response

    def _route(self, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        url = urlparse(request.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        if url.path.startswith("/admin/"):
            return self._admin(url.path, query)
        return self.rest.answer(request, url.path, query)

    def _admin(self, path: str, query: dict[str, str]) -> Response:
        loop = asyncio.get_running_loop()
        if path == "/admin/drop":
            self._keep(loop.create_task(self.drop_connections()))
        elif path == "/admin/inject":
            self._keep(loop.create_task(self.inject(query.get("frame", ""))))
        elif path == "/admin/rest-429":
            self.rest.failures = int(query.get("count", 1))
        else:
            return json_response(HTTPStatus.NOT_FOUND, {"status": "NOT_FOUND"})
        return json_response(HTTPStatus.OK, {"status": "OK"})

    def _keep(self, task: asyncio.Task) -> None:
        """Hold a fault's task until it is done (the loop keeps only a weak reference)."""
        self._admin_tasks.add(task)
        task.add_done_callback(self._admin_tasks.discard)
