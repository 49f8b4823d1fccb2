"""One client connection of the local Databento gateway: CRAM authentication, requests, the DBN stream, heartbeats.

In order: greeting and challenge; the authentication request, answered ``success=1|session_id=N`` or
``success=0|error=…`` and closed; subscription and unsubscribe requests (kept until the session starts); on
``start_session``, the DBN metadata, then for each subscription a ``SymbolMappingMsg`` per resolved symbol, an
``ErrorMsg`` (``SYMBOL_RESOLUTION_FAILED``) per unresolved one and a ``SUBSCRIPTION_ACK``; then the market records of
the subscribed (schema, instrument) pairs, and a heartbeat whenever nothing was written for
``heartbeat_interval_s`` seconds. A request that cannot be served (a replay ``start``, a snapshot, a schema or
symbology the gateway lacks, a malformed line) ends the session: with an ``ErrorMsg`` once streaming, else by closing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from typing import TYPE_CHECKING

from orderflow_client.logs import get_logger
from services.tools.databento_gateway_protocol import (
    AUTHENTICATION_FAILED,
    MAXIMUM_LINE_BYTES,
    AuthenticationRequest,
    ControlLineError,
    SessionStart,
    SubscriptionRequest,
    UnsubscribeRequest,
    authentication_reply,
    greeting_lines,
    new_challenge,
    parse_client_line,
    response_matches,
)
from services.tools.databento_gateway_records import (
    MALFORMED_KINDS,
    error_message,
    heartbeat,
    malformed_record,
    session_metadata,
    shifted_record,
    with_ts_out,
)
from services.tools.databento_gateway_subscriptions import SubscriptionRefused, Subscriptions

if TYPE_CHECKING:
    from services.tools.databento_gateway import DatabentoGateway, Fault

log = get_logger(__name__)

DEFAULT_HEARTBEAT_SECONDS = 30
HEARTBEAT_RANGE_SECONDS = (5, 1800)
DROP_KINDS = ("reset", "close", "error")
"""How a fault ends a connection: ``reset`` (TCP RST: the client sees a connection reset), ``close`` (a clean FIN),
``error`` (an ``ErrorMsg`` ``INTERNAL_ERROR``, then FIN)."""
_FLUSH_BYTES = 65_536
_PAUSE_POLL_SECONDS = 0.05
_LINGER_SECONDS = 1.0


class GatewaySession:
    """The state of one connection; :meth:`run` serves it to its end."""

    def __init__(self, gateway: DatabentoGateway, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.gateway = gateway
        self.reader = reader
        self.writer = writer
        self.challenge = new_challenge()
        self.session_id: int | None = None
        self.ts_out = False
        self.heartbeat_seconds = DEFAULT_HEARTBEAT_SECONDS
        self.started = False
        self.subscriptions = Subscriptions(gateway.market, gateway.publishers)
        self.pending: list[SubscriptionRequest | UnsubscribeRequest] = []  # until the session starts
        self.records_sent = 0
        self.faults: list[Fault] = []
        self.last_write = time.monotonic()
        self.tasks: list[asyncio.Task[None]] = []
        self.end_reason = "client closed"
        self.refused = False

    # --- the connection ----------------------------------------------------------------------------------------------
    async def run(self) -> None:
        self.writer.write(greeting_lines(self.challenge))
        try:
            if await self._authenticate():
                await self._serve_requests()
        except (ConnectionError, asyncio.IncompleteReadError):
            self.end_reason = "connection lost"
        finally:
            await self.close()
            if self.session_id is not None:
                log.info(
                    "order_flow.databento_gateway_session_ended",
                    session_id=self.session_id,
                    records_sent=self.records_sent,
                    reason=self.end_reason,
                )

    async def close(self) -> None:
        """Cancel the session's tasks and close its socket in any case; a task that failed otherwise than by the
        connection's end is logged (``order_flow.databento_gateway_session_failed``)."""
        try:
            for task in self.tasks:
                task.cancel()
            for outcome in await asyncio.gather(*self.tasks, return_exceptions=True):
                if isinstance(outcome, Exception) and not isinstance(outcome, ConnectionError):
                    log.error(
                        "order_flow.databento_gateway_session_failed",
                        code="internal_error",
                        session_id=self.session_id,
                        error=f"{type(outcome).__name__}: {str(outcome)[:300]}",
                    )
            if self.refused and not self.writer.is_closing() and self.writer.can_write_eof():
                await self._linger()
        finally:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()

    async def _linger(self) -> None:
        """After a refusal, half-close and read what the client still sends (for a second at most) before closing:
        closing with unread input would send a reset, which can destroy the reply before the client reads it."""
        with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
            self.writer.write_eof()
            async with asyncio.timeout(_LINGER_SECONDS):
                while await self.reader.read(_FLUSH_BYTES):
                    pass

    async def _read_line(self) -> bytes | None:
        """The next line with its ``\\n``; None at the end of the stream."""
        try:
            return await self.reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise ControlLineError("bad_line", f"line longer than {MAXIMUM_LINE_BYTES:,} bytes") from None
        except asyncio.IncompleteReadError:
            return None

    def _refused(self, code: str, reason: str) -> None:
        self.refused = True
        self.end_reason = reason
        log.warning("order_flow.databento_gateway_refused", code=code, reason=reason, session_id=self.session_id)

    # --- authentication ----------------------------------------------------------------------------------------------
    async def _authenticate(self) -> bool:
        try:
            line = await self._read_line()
            if line is None:
                return False
            request = parse_client_line(line)
            if not isinstance(request, AuthenticationRequest):
                raise ControlLineError("unexpected_message", "the first request must be an authentication request")
        except ControlLineError as error:
            return self._refuse_authentication(error.code, str(error))
        if not response_matches(self.challenge, self.gateway.api_key, request.auth):
            return self._refuse_authentication("auth_failed", AUTHENTICATION_FAILED)
        problem = self._unsupported(request)
        if problem is not None:
            return self._refuse_authentication("unsupported_option", problem)
        self.ts_out = request.ts_out
        self.heartbeat_seconds = request.heartbeat_interval_seconds or DEFAULT_HEARTBEAT_SECONDS
        self.session_id = self.gateway.next_session_id()
        self.writer.write(authentication_reply(self.session_id))
        log.info(
            "order_flow.databento_gateway_authenticated",
            session_id=self.session_id,
            dataset=request.dataset,
            ts_out=self.ts_out,
            heartbeat_interval_s=self.heartbeat_seconds,
            client=request.client,
        )
        return True

    def _refuse_authentication(self, code: str, reason: str) -> bool:
        self._refused(code, reason)
        printable = "".join(character if character.isprintable() and character != "|" else "?" for character in reason)
        self.writer.write(authentication_reply(None, error=printable))
        return False

    def _unsupported(self, request: AuthenticationRequest) -> str | None:
        if request.dataset != self.gateway.market.dataset:
            return f"dataset {request.dataset} is not served here (this gateway serves {self.gateway.market.dataset})"
        if request.encoding != "dbn":
            return f"encoding {request.encoding} is not implemented by this gateway (dbn only)"
        if request.compression != "none":
            return f"compression {request.compression} is not implemented by this gateway (none only)"
        low, high = HEARTBEAT_RANGE_SECONDS
        interval = request.heartbeat_interval_seconds
        if interval is not None and not low <= interval <= high:
            return f"heartbeat_interval_s must be between {low} and {high}, not {interval}"
        return None

    # --- requests ----------------------------------------------------------------------------------------------------
    async def _serve_requests(self) -> None:
        try:
            while (line := await self._read_line()) is not None:
                request = parse_client_line(line)
                if isinstance(request, AuthenticationRequest):
                    raise SubscriptionRefused(
                        "unexpected_message", "authentication request on an authenticated session"
                    )
                if isinstance(request, SessionStart):
                    if self.started:
                        raise SubscriptionRefused("unexpected_message", "start_session sent twice")
                    self._start()
                elif self.started:
                    self._apply(request)
                else:
                    self.pending.append(request)
        except ControlLineError as error:
            self._end_on(error.code, str(error), "INVALID_SUBSCRIPTION")
        except SubscriptionRefused as refusal:
            self._end_on(refusal.code, str(refusal), refusal.error_code)

    def _end_on(self, code: str, reason: str, error_code: str) -> None:
        """A refused request ends the session: an ErrorMsg first when the client already reads DBN."""
        self._refused(code, reason)
        if self.started:
            self.write_record(error_message(time.time_ns(), reason[:300], error_code))

    def _start(self) -> None:
        self.started = True
        self.faults = self.gateway.take_faults()
        self.writer.write(session_metadata(self.gateway.market.dataset, time.time_ns(), ts_out=self.ts_out))
        for request in self.pending:
            self._apply(request)
        self.pending.clear()
        self.tasks.append(asyncio.create_task(self._stream()))
        self.tasks.append(asyncio.create_task(self._heartbeats()))

    def _apply(self, request: SubscriptionRequest | UnsubscribeRequest) -> None:
        for record in self.subscriptions.apply(request):
            self.write_record(record)

    # --- the DBN stream ----------------------------------------------------------------------------------------------
    def write_record(self, data: bytes) -> None:
        """Write one record now (ts_out appended when the session asked for it)."""
        if not self.writer.is_closing():
            self.writer.write(with_ts_out(data, time.time_ns()) if self.ts_out else data)
            self.last_write = time.monotonic()

    async def _flush(self, batch: list[bytes]) -> None:
        if batch:
            if not self.writer.is_closing():
                self.writer.write(b"".join(batch))
                self.last_write = time.monotonic()
            batch.clear()
        await self.writer.drain()

    async def _stream(self) -> None:
        """The market's records this session wants: paced on the gateway's clock (joining the market where it is
        now, lap after lap), or, at speed 0, the files once from their start as fast as the client reads."""
        gateway = self.gateway
        records = gateway.market.records
        if not records:
            return
        fastest = gateway.speed <= 0
        lap, position = (0, 0) if fastest else gateway.clock_position(time.time_ns())
        batch: list[bytes] = []
        size = 0
        try:
            while True:
                for entry in records[position:] if position else records:
                    if not self.subscriptions.wants(entry.schema, entry.instrument_id):
                        continue
                    if fastest:
                        while gateway.paused:
                            await self._flush(batch)
                            size = 0
                            await asyncio.sleep(_PAUSE_POLL_SECONDS)
                        send_ns = time.time_ns()
                    else:
                        send_ns = gateway.due_ns(lap, entry.ts_index)
                        wait_seconds = (send_ns - time.time_ns()) / 1e9
                        if wait_seconds > 0.001:
                            await self._flush(batch)
                            size = 0
                            await asyncio.sleep(wait_seconds)
                            if not self.subscriptions.wants(entry.schema, entry.instrument_id):
                                continue
                        if gateway.paused:
                            continue  # a live market moves on while the feed is silent
                    data = shifted_record(entry.record, entry.ts_event, entry.ts_recv, send_ns - entry.ts_index)
                    batch.append(with_ts_out(data, send_ns) if self.ts_out else data)
                    size += len(data)
                    self.records_sent += 1
                    if self.faults and await self._fault_due(batch, entry.instrument_id, entry.record.publisher_id):
                        return
                    if size >= _FLUSH_BYTES:
                        await self._flush(batch)
                        size = 0
                await self._flush(batch)
                size = 0
                if fastest:
                    return
                lap, position = lap + 1, 0
                await asyncio.sleep(max(0.0, (gateway.due_ns(lap, records[0].ts_index) - time.time_ns()) / 1e9))
        except ConnectionError:
            self.end_reason = "connection lost"

    async def _fault_due(self, batch: list[bytes], instrument_id: int, publisher_id: int) -> bool:
        """Apply the faults due after this many records; True when the connection was dropped."""
        for fault in self.faults:
            if fault.after_records != self.records_sent:
                continue
            if fault.kind in MALFORMED_KINDS:
                batch.append(malformed_record(fault.kind, instrument_id, publisher_id, time.time_ns()))
                self._faulted(fault.kind)
            else:
                await self._flush(batch)
                self.drop(fault.kind)
                return True
        return False

    def _faulted(self, kind: str) -> None:
        log.warning(
            "order_flow.databento_gateway_fault", kind=kind, session_id=self.session_id, records_sent=self.records_sent
        )

    def inject(self, kind: str) -> None:
        """Write one malformed record of ``kind`` now (for the first instrument the session wants)."""
        instrument_id = self.subscriptions.first_instrument()
        self.write_record(malformed_record(kind, instrument_id, self.gateway.publishers.get(instrument_id, 0), 0))
        self._faulted(kind)

    def drop(self, kind: str) -> None:
        """End the connection as a fault of ``kind`` (see :data:`DROP_KINDS`)."""
        if kind not in DROP_KINDS:
            raise ValueError(f"unknown drop kind {kind!r}; choose one of {', '.join(DROP_KINDS)}")
        self._faulted(kind)
        self.end_reason = f"fault {kind}"
        if kind == "reset":
            sock = self.writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.writer.transport.abort()
            return
        if kind == "error" and self.started:
            self.write_record(error_message(time.time_ns(), "Gateway fault injected: closing", "INTERNAL_ERROR"))
        self.writer.close()

    async def _heartbeats(self) -> None:
        """A heartbeat whenever nothing was written for the session's interval."""
        while not self.writer.is_closing():
            idle = time.monotonic() - self.last_write
            if idle >= self.heartbeat_seconds:
                self.write_record(heartbeat(time.time_ns()))
                idle = 0.0
            await asyncio.sleep(self.heartbeat_seconds - idle)
