"""A local Databento Live gateway: the raw API the official ``databento`` client speaks, replaying DBN files or
LOBSTER days (no key of Databento's, no internet).

``orderflow simulate-databento --port 13000 --key-file KEY FILE…`` serves it; a client points at it with its own
arguments::

    client = databento.Live(key=KEY, gateway="127.0.0.1", port=13000)
    client.subscribe(dataset="XNAS.ITCH", schema="mbp-10", symbols=["AMZN"])
    for record in client: ...     # SymbolMappingMsg, SystemMsg (ack), then MBP10Msg records of AMZN

Each connection (:mod:`services.tools.databento_gateway_session`) is a session: the control lines of
:mod:`services.tools.databento_gateway_protocol` (greeting, CRAM challenge, authentication against the one key given
here, subscriptions, ``start_session``), then DBN (:mod:`services.tools.databento_gateway_records`): the metadata,
symbol mappings, acknowledgements, the subscribed records and heartbeats.

The market (:mod:`services.tools.databento_gateway_market`) plays at ``speed`` × its own pace on one clock started
with the gateway, in a loop, whether or not anyone listens: a session joins it where it is now, so a client that
reconnects misses what played meanwhile, as on the real feed. Each record goes out with ``ts_recv`` set to when it is
due (``ts_event`` keeps its distance to it), so the data is fresh. ``speed=0``: as fast as possible — each session
gets the files once from their start, as fast as it reads, then heartbeats only.

Faults, for tests: :meth:`DatabentoGateway.drop_after` and :meth:`DatabentoGateway.inject_after` (after N records of
the next sessions), :meth:`DatabentoGateway.drop_connections` and :meth:`DatabentoGateway.inject` (now), ``paused``
(sessions stay open and heartbeat, no records).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from dataclasses import dataclass

from orderflow_client.logs import get_logger
from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from services.tools.databento_gateway_market import Market
from services.tools.databento_gateway_protocol import BUCKET_ID_LENGTH, MAXIMUM_LINE_BYTES
from services.tools.databento_gateway_records import MALFORMED_KINDS
from services.tools.databento_gateway_session import DROP_KINDS, GatewaySession

log = get_logger(__name__)

DEFAULT_PORT = 13000
"""The real gateway's port, which the client uses unless told another."""
LAP_PAUSE_NS = NANOSECONDS_PER_SECOND
"""Market time between the last record of a lap and the first of the next."""


@dataclass
class Fault:
    """After ``after_records`` market records of a session, ``kind``: a drop (``reset``, ``close``, ``error``) or a
    malformed record (``bad_side``, ``undefined_price``, ``unknown_record_type``); for the next ``sessions`` sessions
    to start streaming."""

    after_records: int
    kind: str
    sessions: int = 1


class DatabentoGateway:
    """The server, its clock and its sessions. ``api_key`` is the one key it accepts (never logged)."""

    def __init__(self, market: Market, *, api_key: str, speed: float = 1.0) -> None:
        if len(api_key) < BUCKET_ID_LENGTH or not api_key.isprintable() or " " in api_key:
            raise ValueError(f"the key must be at least {BUCKET_ID_LENGTH} printable characters without blanks")
        if speed < 0:
            raise ValueError(f"speed must be 0 (as fast as possible) or more, not {speed}")
        self.market = market
        self.api_key = api_key
        self.speed = speed
        self.paused = False
        self.sessions: set[GatewaySession] = set()
        self.sessions_served = 0
        self.faults: list[Fault] = []
        self.publishers = {record.instrument_id: record.record.publisher_id for record in reversed(market.records)}
        self.port = 0
        self._times = [record.ts_index for record in market.records]
        self._origin_ns = time.time_ns()
        self._session_ids = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    # --- lifecycle ---------------------------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> DatabentoGateway:
        """Listen on ``host:port`` (0: a free port, then in ``self.port``); the market clock starts now."""
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAXIMUM_LINE_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]
        self._origin_ns = time.time_ns()
        log.info(
            "order_flow.databento_gateway_started",
            host=host,
            port=self.port,
            dataset=self.market.dataset,
            schemas=sorted(self.market.schemas),
            symbols=sorted(self.market.instruments),
            records=len(self.market.records),
            speed=self.speed,
        )
        return self

    async def stop(self) -> None:
        """Stop listening and end every session (their connections reset)."""
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            session.writer.transport.abort()  # each session then reads the end of its stream and finishes
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=5)
        late = list(self._connections)  # a session that did not finish within 5 s is cancelled, then awaited
        for connection in late:
            connection.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        session = GatewaySession(self, reader, writer)
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            self.sessions_served += 1
            if task is not None:
                self._connections.discard(task)

    def next_session_id(self) -> int:
        self._session_ids += 1
        return self._session_ids

    # --- the clock ---------------------------------------------------------------------------------------------------
    def _lap_ns(self) -> int:
        return self._times[-1] - self._times[0] + LAP_PAUSE_NS

    def due_ns(self, lap: int, ts_index: int) -> int:
        """Wall-clock ns at which the record recorded at ``ts_index`` plays in lap ``lap`` (paced replay)."""
        return self._origin_ns + int((lap * self._lap_ns() + ts_index - self._times[0]) / self.speed)

    def clock_position(self, now_ns: int) -> tuple[int, int]:
        """``(lap, index)`` of the first record not yet played at wall time ``now_ns``."""
        lap, offset = divmod(int((now_ns - self._origin_ns) * self.speed), self._lap_ns())
        return lap, bisect.bisect_left(self._times, self._times[0] + offset)

    # --- faults ------------------------------------------------------------------------------------------------------
    def drop_after(self, records: int, *, kind: str = "reset", sessions: int = 1) -> None:
        """Drop each of the next ``sessions`` sessions after it sent ``records`` market records."""
        if kind not in DROP_KINDS:
            raise ValueError(f"unknown drop kind {kind!r}; choose one of {', '.join(DROP_KINDS)}")
        self.faults.append(Fault(records, kind, sessions))

    def inject_after(self, records: int, *, kind: str = "bad_side", sessions: int = 1) -> None:
        """Write one malformed record of ``kind`` into each of the next ``sessions`` sessions after ``records``."""
        if kind not in MALFORMED_KINDS:
            raise ValueError(f"unknown malformed kind {kind!r}; choose one of {', '.join(MALFORMED_KINDS)}")
        self.faults.append(Fault(records, kind, sessions))

    def take_faults(self) -> list[Fault]:
        """The faults of a session starting now (each counts the session against its ``sessions``)."""
        taken = []
        for fault in self.faults:
            if fault.sessions > 0:
                fault.sessions -= 1
                taken.append(fault)
        self.faults = [fault for fault in self.faults if fault.sessions > 0]
        return taken

    def streaming(self) -> list[GatewaySession]:
        return [session for session in self.sessions if session.started]

    def drop_connections(self, kind: str = "reset") -> int:
        """Drop every streaming session now; how many were dropped."""
        sessions = self.streaming()
        for session in sessions:
            session.drop(kind)
        return len(sessions)

    def inject(self, kind: str = "bad_side") -> int:
        """Write one malformed record of ``kind`` into every streaming session now; how many got it."""
        if kind not in MALFORMED_KINDS:
            raise ValueError(f"unknown malformed kind {kind!r}; choose one of {', '.join(MALFORMED_KINDS)}")
        sessions = self.streaming()
        for session in sessions:
            session.inject(kind)
        return len(sessions)
