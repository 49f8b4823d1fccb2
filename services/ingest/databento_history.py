"""Databento's historical API for a live gap: ``POST {base}/v0/timeseries.get_range``, spoken by our own adapter.

The request is the one the official client (``databento.Historical().timeseries.get_range``, 0.88) sends: form fields
``dataset``, ``start``, ``end`` (ns since the epoch, inclusive start, exclusive end, on ``ts_recv``), ``symbols``
(comma-separated raw symbols), ``schema``, ``stype_in`` ``raw_symbol``, ``stype_out`` ``instrument_id``, ``encoding``
``dbn``, ``compression`` ``zstd``; HTTP basic auth with the API key as the user name and no password. The reply body is
a DBN stream (zstd): the metadata (its ``mappings`` name each instrument id), then the records.

Not through the official client, because it does not let us own the call: its gateway is forced to ``https://`` (no
local stand-in without a certificate), its timeout is one class-wide 100 s for connecting and reading, it never
retries, ignores ``Retry-After``, and buffers the whole reply before decoding it. Here, as in
:mod:`services.ingest.polygon_rest_client`:

* an explicit connect and read timeout on every call (urllib3);
* our retries of 429, 5xx and network errors with exponential backoff and jitter, honouring ``Retry-After``, then
  :class:`HistoricalUnavailableError` (code ``databento_historical_unavailable``); any other 4xx is
  :class:`HistoricalError` (``databento_historical_error``) with Databento's own message (``detail``);
* a client-side rate limit (requests per minute; Databento allows 100 time-series requests a second);
* the reply decoded as it arrives (``databento_dbn``'s decoder), 64 KiB at a time.

The key is only in the ``Authorization`` header: never in a URL, a log line or an error. Calls block: ingest runs
them in a thread. A trades record of the reply, ``TradeMsg(instrument_id=2879268766, action='T', side='A',
price=220300000000, size=100, sequence=1188, …)`` with AMZN → 2879268766 in the metadata, becomes
``Trade(symbol="AMZN", price=220_300_000_000, size=100, side="sell", side_source="feed", trade_id="1188",
backfilled=True, …)`` (the mapping of :func:`services.ingest.databento_records.trade_event`), its ``ts_recv`` and
``ts_arrival`` our receive time (ns) of the reply, as for live records.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import msgspec
import urllib3

from orderflow_client.logs import get_logger
from orderflow_client.timestamps import now_ns
from orderflow_client.wire import Trade
from services.ingest.http_retries import (
    RETRYABLE_STATUSES,
    HttpStatusError,
    RateLimiter,
    retry_after_seconds,
    retry_delay,
)
from services.ingest.rejects import Reject

log = get_logger(__name__)
DEFAULT_HISTORICAL_URL = "https://hist.databento.com"
GET_RANGE_PATH = "/v0/timeseries.get_range"
READ_BYTES = 65_536
SOURCE = "databento_historical"  # the reject source
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class HistoricalError(HttpStatusError):
    """The historical API refused the request for good (a 4xx other than 408/429, or a reply that does not
    decode); ``status`` the HTTP status when there was one."""

    code = "databento_historical_error"


class HistoricalUnavailableError(HistoricalError):
    """The historical API kept failing (timeouts, refused connections, 5xx, 429) past every retry."""

    code = "databento_historical_unavailable"


class TradeBatch(NamedTuple):
    """What one read of the reply held: the trades (marked backfilled) and the records refused."""

    trades: list[Trade]
    rejects: list[Reject]


def get_range_form(dataset: str, symbols: list[str], schema: str, start: int, end: int) -> dict[str, str]:
    """The form fields of ``timeseries.get_range`` for ``symbols`` over ``[start, end)`` (ns), as the official
    client builds them::

        get_range_form("XNAS.ITCH", ["AMZN"], "trades", 1781011800000000000, 1781011803400000000) ==
        {"dataset": "XNAS.ITCH", "start": "1781011800000000000", "symbols": "AMZN", "schema": "trades",
         "stype_in": "raw_symbol", "stype_out": "instrument_id", "encoding": "dbn", "compression": "zstd",
         "end": "1781011803400000000"}
    """
    if not symbols:
        raise ValueError("a get_range request names at least one symbol")
    if not 0 <= start < end:
        raise ValueError(f"the range must be 0 <= start < end (ns), not [{start}, {end})")
    return {
        "dataset": dataset,
        "start": str(start),
        "symbols": ",".join(symbols),
        "schema": schema,
        "stype_in": "raw_symbol",
        "stype_out": "instrument_id",
        "encoding": "dbn",
        "compression": "zstd",
        "end": str(end),
    }


class DatabentoHistorical:
    """Blocking ``timeseries.get_range`` calls with timeouts, retries with backoff and a rate limit."""

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_HISTORICAL_URL,
        *,
        dataset: str = "XNAS.ITCH",
        connect_timeout: float = 3.0,
        read_timeout: float = 30.0,
        attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 20.0,
        requests_per_minute: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``base_url``: ``https://hist.databento.com`` or a stand-in (``http://127.0.0.1:PORT``); ``dataset``: the
        live source's; ``read_timeout``: seconds of silence allowed while a reply is awaited or read."""
        self.base_url = base_url.rstrip("/")
        self.dataset = dataset
        self._authorization = "Basic " + base64.b64encode(f"{api_key}:".encode()).decode()
        self._pool = urllib3.PoolManager(num_pools=2, maxsize=2)
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self.attempts = attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.sleep = sleep
        self.limiter = RateLimiter(requests_per_minute, sleep=sleep)
        self.retries_done = 0
        self.requests_made = 0

    @property
    def url(self) -> str:
        """The endpoint (no key in it)."""
        return self.base_url + GET_RANGE_PATH

    def get_range(self, form: dict[str, str]) -> Iterator[bytes]:
        """The reply body of a ``get_range`` request, piece by piece as it arrives (retried until a 200 starts)."""
        response = self._open(form)
        try:
            yield from response.stream(READ_BYTES)
        except urllib3.exceptions.HTTPError as error:  # a read timeout or a reset mid-reply
            raise HistoricalUnavailableError(
                f"the reply of {GET_RANGE_PATH} broke off: {type(error).__name__}"
            ) from None
        finally:
            response.release_conn()

    def trades(self, symbols: list[str], start: int, end: int) -> Iterator[TradeBatch]:
        """The trades of ``symbols`` over ``[start, end)`` (ns, on Databento's ``ts_recv``), schema ``trades``, batch
        by batch as the reply is read; each marked ``backfilled``."""
        decoder = ReplyDecoder(set(symbols))
        for piece in self.get_range(get_range_form(self.dataset, symbols, "trades", start, end)):
            batch = decoder.feed(piece, now_ns())
            if batch.trades or batch.rejects:
                yield batch
        decoder.finish()

    def _open(self, form: dict[str, str]) -> Any:
        headers = {"Authorization": self._authorization, "Accept": "application/json"}
        last_problem = ""
        for attempt in range(1, self.attempts + 1):
            self.limiter.wait()
            self.requests_made += 1
            retry_after = None
            try:
                response = self._pool.request(
                    "POST",
                    self.url,
                    fields=form,
                    encode_multipart=False,
                    headers=headers,
                    timeout=self.timeout,
                    retries=False,
                    preload_content=False,
                )
            except urllib3.exceptions.HTTPError as error:  # timeouts, refused connections, protocol errors
                last_problem = type(error).__name__
            else:
                if response.status == 200:
                    return response
                body = _read_error_body(response)
                last_problem = f"HTTP {response.status} {error_message(body)}".strip()
                if response.status not in RETRYABLE_STATUSES:
                    raise HistoricalError(f"{GET_RANGE_PATH} answered {last_problem}", response.status)
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if attempt == self.attempts:
                break
            delay = retry_delay(
                attempt=attempt, base_seconds=self.backoff_base, cap_seconds=self.backoff_cap, retry_after=retry_after
            )
            self.retries_done += 1
            log.warning(
                "order_flow.databento_historical_retry",
                problem=last_problem[:200],
                attempt=attempt,
                delay_seconds=round(delay, 3),
            )
            self.sleep(delay)
        raise HistoricalUnavailableError(f"{GET_RANGE_PATH} failed {self.attempts} times; last: {last_problem[:200]}")

    def close(self) -> None:
        self._pool.clear()


class _Detail(msgspec.Struct):
    detail: Any = None


def error_message(body: bytes) -> str:
    """Databento's message of an error reply: ``{"detail": "text"}`` or ``{"detail": {"case": …, "message": …,
    "docs": …}}`` (as both official clients read them); the body's first 200 characters otherwise::

        error_message(b'{"detail": {"case": "auth_invalid_api_key", "message": "Invalid API key."}}')
        == "auth_invalid_api_key: Invalid API key."
    """
    try:
        detail = msgspec.json.decode(body, type=_Detail).detail
    except (msgspec.DecodeError, msgspec.ValidationError):
        return body[:200].decode(errors="replace").strip()
    if isinstance(detail, dict) and isinstance(detail.get("message"), str):
        case = detail.get("case")
        return f"{case}: {detail['message']}" if isinstance(case, str) and case else detail["message"]
    return str(detail)[:200] if detail is not None else ""


def _read_error_body(response: Any) -> bytes:
    try:
        return bytes(response.read(4096))
    except urllib3.exceptions.HTTPError:
        return b""
    finally:
        response.release_conn()


class ReplyDecoder:
    """A ``get_range`` reply (DBN, zstd or plain: told from its first bytes) → trades of ``symbols``, piece by piece.

    Instrument ids are named by the metadata's ``mappings`` (raw symbol → ``[{"start_date", "end_date", "symbol":
    "<instrument id>"}]``) or ``SymbolMappingMsg`` records; a trade of an id not named, or of a symbol not asked for,
    is the reject ``unknown_instrument``. Bytes the decoder refuses raise :class:`HistoricalError`."""

    def __init__(self, symbols: set[str]) -> None:
        self.symbols = symbols
        self.names: dict[int, str] = {}
        self.records = 0
        self._decoder: Any = None
        self._head = b""

    def feed(self, data: bytes, received: int) -> TradeBatch:
        """The trades of the records completed by ``data``, received at ``received`` (ns, our clock)."""
        from databento_dbn import Compression, DBNDecoder, DBNError

        if self._decoder is None:
            self._head += data
            if len(self._head) < 4:
                return TradeBatch([], [])
            zstd = self._head[:4] == ZSTD_MAGIC
            self._decoder = DBNDecoder(compression=Compression("zstd" if zstd else "none"))
            data, self._head = self._head, b""
        try:
            self._decoder.write(data)
            items = self._decoder.decode()
        except (DBNError, RuntimeError, ValueError) as error:
            raise HistoricalError(f"the reply of {GET_RANGE_PATH} does not decode as DBN: {str(error)[:200]}") from None
        return self._batch(items, received)

    def finish(self) -> None:
        """The reply ended: HistoricalError when it ended inside a record or before any metadata."""
        if self._decoder is None or self._decoder.buffer():
            raise HistoricalError(f"the reply of {GET_RANGE_PATH} ended inside the DBN stream")

    def _batch(self, items: list[Any], received: int) -> TradeBatch:
        from databento_dbn import Metadata, SymbolMappingMsg, TradeMsg

        from services.ingest.databento_records import trade_event

        batch = TradeBatch([], [])
        for item in items:
            kind = type(item)
            if kind is TradeMsg:
                self.records += 1
                symbol = self.names.get(item.instrument_id)
                where = f"get_range@{received}"
                if symbol is None or symbol not in self.symbols:
                    batch.rejects.append(Reject(SOURCE, "unknown_instrument", where, str(item.instrument_id)))
                    continue
                trade = trade_event(item, symbol, where)
                if type(trade) is Trade:
                    stamped = msgspec.structs.replace(trade, ts_recv=received, ts_arrival=received, backfilled=True)
                    batch.trades.append(stamped)
                else:
                    batch.rejects.append(trade._replace(source=SOURCE))  # type: ignore[union-attr]
            elif kind is Metadata:
                for raw_symbol, intervals in (item.mappings or {}).items():
                    for interval in intervals:
                        if str(interval["symbol"]).isdigit():
                            self.names[int(interval["symbol"])] = raw_symbol
            elif kind is SymbolMappingMsg:
                self.names[item.instrument_id] = item.stype_in_symbol
            else:
                self.records += 1
                batch.rejects.append(Reject(SOURCE, "unsupported_record", f"get_range@{received}", kind.__name__))
        return batch
