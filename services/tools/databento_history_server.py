"""A local stand-in of Databento's historical endpoint ``timeseries.get_range``, answering from the market the local
gateway (:class:`services.tools.databento_gateway.DatabentoGateway`) replays, so a live gap can be backfilled in tests.

``POST /v0/timeseries.get_range`` (form fields; or ``GET`` with them in the query), HTTP basic auth with the one key
as user name, fields as the official client sends them: ``dataset`` (the gateway's), ``symbols`` (comma-separated raw
symbols, or ``ALL_SYMBOLS``), ``schema`` (``trades`` only), ``start`` (inclusive) and ``end`` (exclusive) as ns since
the epoch or ISO 8601 (UTC unless an offset is given), filtering on ``ts_recv``; ``stype_in`` ``raw_symbol``,
``stype_out`` ``instrument_id``, ``encoding`` ``dbn``, ``compression`` ``zstd`` or ``none``. The reply is DBN: the
metadata (``mappings`` name each instrument id), then a ``TradeMsg`` for every trade the gateway played in the range
— with the ``ts_event``/``ts_recv`` the live session gave it, so a trade seen live and backfilled is the same print
(same ``sequence``). Trades come from the market's ``trades`` records, else from the trade records (action ``T``) of its
MBP-10, MBO, TBBO or MBP-1 records. A range that reaches past now is cut at now (nothing later has played).

Errors are JSON as Databento formats them, ``{"detail": {"case": …, "message": …, "status_code": …, "docs": …,
"payload": …}}`` (the case names are ours): 401 without the key, 422 for a field it cannot serve, 404 for another
path. Faults for tests: ``fail_next`` (statuses to answer first, e.g. ``[429, 429]``: a 429 carries
``Retry-After: retry_after_seconds``), ``down`` (every request 503), ``delay_seconds`` (before each answer).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, NamedTuple, cast
from urllib.parse import parse_qsl, urlsplit

from orderflow_client.logs import get_logger
from services.tools.databento_gateway_market import Market, MarketRecord
from services.tools.dbn_writer import metadata_mapping

if TYPE_CHECKING:
    from services.tools.databento_gateway import DatabentoGateway

log = get_logger(__name__)
GET_RANGE_PATH = "/v0/timeseries.get_range"
DOCS = "https://databento.com/docs/api-historical/timeseries/timeseries-get-range"
TRADE_SCHEMAS = ("trades", "mbp-10", "mbo", "tbbo", "mbp-1")
"""Where trades come from, in order of preference: the first schema of the market that has records."""


class Refusal(Exception):
    """A request answered with an error: ``status``, ``case`` (ours) and a message."""

    def __init__(self, status: int, case: str, message: str) -> None:
        super().__init__(message)
        self.status, self.case = status, case


class RangeRequest(NamedTuple):
    """A ``get_range`` request as understood: times in ns, ``[start, end)``; ``symbols`` empty for all."""

    dataset: str
    symbols: tuple[str, ...]
    schema: str
    start: int
    end: int
    compression: str


def parse_time(text: str) -> int:
    """ns since the epoch from ``"1781011800000000000"`` or ISO 8601 (``"2026-06-09T13:30:00.000000001Z"``,
    ``"2026-06-09"``; UTC unless an offset is given; digits past the microsecond kept to the ns). ValueError
    otherwise."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    nanoseconds = 0
    head, dot, tail = text.partition(".")
    if dot:  # datetime keeps microseconds only: take the fraction's digits ourselves
        digits = len(tail) - len(tail.lstrip("0123456789"))
        fraction, rest = tail[:digits], tail[digits:]
        if not fraction or len(fraction) > 9:
            raise ValueError(f"not a time: {text!r}")
        nanoseconds = int(fraction.ljust(9, "0"))
        text = head + rest
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = int(moment.timestamp())
    if seconds < 0:
        raise ValueError(f"a time before 1970: {text!r}")
    return seconds * 1_000_000_000 + nanoseconds


def parse_request(fields: dict[str, str], dataset: str) -> RangeRequest:
    """The request of ``fields`` (one value each), or :class:`Refusal` (422) naming the field it cannot serve."""

    def field(name: str, default: str | None = None) -> str:
        value = fields.get(name, default)
        if value is None or not value.strip():
            raise Refusal(422, "missing_parameter", f"The `{name}` parameter is required.")
        return value.strip()

    if field("dataset") != dataset:
        raise Refusal(422, "dataset_not_available", f"Dataset {fields['dataset']!r} is not served here ({dataset}).")
    schema = field("schema", "trades")
    if schema != "trades":
        raise Refusal(422, "schema_not_supported", f"Schema {schema!r} is not served here (trades only).")
    for name, allowed in (("stype_in", "raw_symbol"), ("stype_out", "instrument_id"), ("encoding", "dbn")):
        if field(name, allowed) != allowed:
            raise Refusal(422, f"{name}_not_supported", f"`{name}` must be {allowed} here.")
    compression = field("compression", "none")
    if compression not in ("zstd", "none"):
        raise Refusal(422, "compression_not_supported", f"Compression {compression!r} is not supported.")
    try:
        start = parse_time(field("start"))
        end = parse_time(field("end"))
    except (ValueError, OverflowError) as error:
        raise Refusal(422, "invalid_datetime", f"Invalid start or end: {error}.") from None
    if end <= start:
        raise Refusal(422, "invalid_range", "`end` must be after `start`.")
    symbols = tuple(symbol.strip() for symbol in field("symbols", "ALL_SYMBOLS").split(",") if symbol.strip())
    if len(symbols) > 2000:
        raise Refusal(422, "too_many_symbols", "At most 2,000 symbols per request.")
    return RangeRequest(dataset, () if symbols == ("ALL_SYMBOLS",) else symbols, schema, start, end, compression)


def error_body(status: int, case: str, message: str) -> bytes:
    """An error's JSON body as Databento formats it."""
    detail = {"case": case, "message": message, "status_code": status, "docs": DOCS, "payload": None}
    return json.dumps({"detail": detail}).encode()


class HistoricalStandIn:
    """Answers ``get_range`` from ``gateway``'s market and clock; ``api_key`` the one key accepted (never logged)."""

    def __init__(self, gateway: DatabentoGateway, *, api_key: str) -> None:
        self.gateway = gateway
        self.market: Market = gateway.market
        self._key = api_key
        self.fail_next: list[int] = []
        self.retry_after_seconds = 0.5
        self.down = False
        self.delay_seconds = 0.0
        self.requests: list[tuple[float, dict[str, str]]] = []  # (monotonic s, fields): what was asked, no key
        self._lock = threading.Lock()
        schemas = self.market.schemas
        self.schema = next((schema for schema in TRADE_SCHEMAS if schema in schemas), "")
        self._trades = [
            index
            for index, entry in enumerate(self.market.records)
            if entry.schema == self.schema and entry.record.action == "T"
        ]

    def answer(self, method: str, target: str, authorization: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """``(status, headers, body)`` of a request (``target``: path and query)."""
        time.sleep(self.delay_seconds)
        parts = urlsplit(target)
        fields = dict(parse_qsl(parts.query))
        if method == "POST":
            fields.update(parse_qsl(body.decode(errors="replace")))
        with self._lock:
            self.requests.append((time.monotonic(), fields))
            failure = self.fail_next.pop(0) if self.fail_next else None
        try:
            if parts.path != GET_RANGE_PATH:
                raise Refusal(404, "not_found", f"No endpoint {parts.path!r} here ({GET_RANGE_PATH} only).")
            if not self._authorized(authorization):
                raise Refusal(401, "auth_authentication_failed", "Authentication failed.")
            if self.down or failure == 503:
                raise Refusal(503, "gateway_unavailable", "Data gateway is offline or overloaded.")
            if failure == 429:
                raise Refusal(429, "rate_limit_exceeded", "Too many requests: retry after the Retry-After seconds.")
            if failure is not None:
                raise Refusal(failure, "fault_injected", f"Fault injected: {failure}.")
            request = parse_request(fields, self.market.dataset)
        except Refusal as refusal:
            headers = {"Content-Type": "application/json"}
            if refusal.status == 429:
                headers["Retry-After"] = f"{self.retry_after_seconds:g}"
            log.info("order_flow.databento_history_refused", status=refusal.status, case=refusal.case)
            return refusal.status, headers, error_body(refusal.status, refusal.case, str(refusal))
        data = self.reply(request)
        return 200, {"Content-Type": "application/octet-stream"}, data

    def _authorized(self, authorization: str) -> bool:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == self._key

    def reply(self, request: RangeRequest) -> bytes:
        """The DBN reply (metadata, then the trades) of a request, zstd-compressed when asked."""
        import databento_dbn as dbn

        wanted = set(request.symbols) if request.symbols else set(self.market.instruments)
        instruments = {
            symbol: self.market.instruments[symbol] for symbol in wanted if symbol in self.market.instruments
        }
        ids = set(instruments.values())
        day = datetime.fromtimestamp(request.start / 1e9, UTC).date()
        following = datetime.fromtimestamp(request.end / 1e9 + 86_400, UTC).date()
        mappings = [
            metadata_mapping(symbol, instrument_id, day, following)
            for symbol, instrument_id in sorted(instruments.items())
        ]
        metadata = dbn.Metadata(
            dataset=request.dataset,
            start=request.start,
            end=request.end,
            stype_in=dbn.SType("raw_symbol"),
            stype_out=dbn.SType("instrument_id"),
            schema=dbn.Schema("trades"),
            symbols=sorted(wanted),
            not_found=sorted(wanted - set(instruments)),
            mappings=cast(Any, mappings),  # SymbolMapping-shaped: raw_symbol, intervals
        )
        pieces = [bytes(metadata)]
        for send_ns, entry in self.played(request.start, request.end):
            if entry.instrument_id in ids:
                pieces.append(_trade_bytes(entry, send_ns - entry.ts_index, dbn))
        data = b"".join(pieces)
        if request.compression == "zstd":
            sink = io.BytesIO()
            transcoder = dbn.Transcoder(sink, dbn.Encoding("dbn"), dbn.Compression("zstd"))
            transcoder.write(data)
            transcoder.finish()
            data = sink.getvalue()
        return data

    def played(self, start: int, end: int) -> Iterator[tuple[int, MarketRecord]]:
        """``(send ns, record)`` of each trade the gateway played (or, paced, plays) with a send time in
        ``[start, end)``, cut at now; at speed 0 the recorded times, unshifted."""
        records = self.market.records
        if not self._trades:
            return
        gateway = self.gateway
        if gateway.speed <= 0:
            for index in self._trades:
                if start <= records[index].ts_index < end:
                    yield records[index].ts_index, records[index]
            return
        end = min(end, time.time_ns())
        if end <= start:
            return
        start_lap, first = gateway.clock_position(start)
        if start_lap < 0:  # before the market's clock started
            start_lap, first = 0, 0
        last_lap, last = gateway.clock_position(end)
        lap = start_lap
        while lap <= last_lap:
            low = first if lap == start_lap else 0
            high = last if lap == last_lap else len(records)
            for index in self._trades[bisect.bisect_left(self._trades, low) : bisect.bisect_left(self._trades, high)]:
                send_ns = gateway.due_ns(lap, records[index].ts_index)
                if start <= send_ns < end:
                    yield send_ns, records[index]
            lap += 1


def _trade_bytes(entry: MarketRecord, shift_ns: int, dbn: Any) -> bytes:
    """A TradeMsg of a market trade record, its times moved by ``shift_ns`` as the live session moved them (the
    record's own ts fields are the gateway's to rewrite: the recorded ones are ``entry.ts_event``/``ts_recv``)."""
    record = entry.record
    return bytes(
        dbn.TradeMsg(
            publisher_id=record.publisher_id,
            instrument_id=record.instrument_id,
            ts_event=entry.ts_event + shift_ns,
            price=record.price,
            size=record.size,
            action=dbn.Action("T"),
            side=dbn.Side(str(record.side)),
            depth=record.depth,
            ts_recv=entry.ts_recv + shift_ns,
            flags=record.flags,
            ts_in_delta=getattr(record, "ts_in_delta", 0),
            sequence=record.sequence,
        )
    )


class HistoricalServer:
    """The stand-in served over HTTP in its own threads: ``with HistoricalServer(stand_in) as server: server.url``."""

    def __init__(self, stand_in: HistoricalStandIn, host: str = "127.0.0.1", port: int = 0) -> None:
        self.stand_in = stand_in
        self.host = host

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._respond(b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._respond(self.rfile.read(length) if length > 0 else b"")

            def _respond(self, body: bytes) -> None:
                status, headers, data = stand_in.answer(
                    self.command, self.path, self.headers.get("Authorization", ""), body
                )
                try:
                    self.send_response(status, HTTPStatus(status).phrase)
                    for name, value in {**headers, "Content-Length": str(len(data))}.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:  # the default prints every request to stderr
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="databento-history", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        """The base URL a client is given (``http://127.0.0.1:PORT``)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> HistoricalServer:
        self.thread.start()
        log.info("order_flow.databento_history_started", url=self.url, dataset=self.stand_in.market.dataset)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> HistoricalServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
