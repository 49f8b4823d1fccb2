"""Wire types: the normalised events and outputs that travel on the bus.

Every struct is a frozen msgspec struct with a tag, so one decoder reads any
of them. Conventions that every part of orderflow relies on:

* Timestamps are integer **nanoseconds since the Unix epoch, UTC**.
  ``ts_event`` is the venue/SIP time of the event; ``ts_recv`` the wall-clock
  moment ingest published it (live: socket receive; replay: publish), used
  for latency; ``ts_arrival`` the receive time on the *source's* clock (live:
  socket receive; a capture: the recorded receive time; files without
  receive times: ``ts_event``). Freshness is ``ts_arrival - ts_event``, so a
  replay judges staleness exactly as the live session did.
* Prices are exact integers in **nano-dollars** (``PRICE_SCALE`` = 1e9 per
  dollar), so comparisons at the bid/ask never touch floats. $187.43 is
  ``187_430_000_000``. See :mod:`orderflow_client.prices`.
* Sizes are integer shares.

On the bus the payload is msgpack; in logs and files it is JSON. A sample
trade as JSON::

    {"type":"trade","symbol":"AAPL","ts_event":1700000000123000000,
     "ts_recv":1700000000125000000,"ts_arrival":1700000000125000000,
     "price":187430000000,"size":200,
     "exchange":4,"trade_id":"71675577320245","side":"sell",
     "side_source":"quote", ...}
"""

from __future__ import annotations

from typing import Literal

import msgspec

from orderflow_client.errors import WireDecodeError
from orderflow_client.timestamps import ns_to_utc_iso

Side = Literal["buy", "sell", "unknown"]
"""Aggressor side of a trade."""

SideSource = Literal["feed", "quote", "tick", "none"]
"""How the side was obtained: given by the source (``feed``), inferred from
the NBBO before the print (``quote``), from the last price change (``tick``),
or not at all (``none``)."""

EvidenceValue = int | float | str | bool


class Trade(msgspec.Struct, frozen=True, tag="trade", kw_only=True):
    """One print on the tape.

    ``conditions`` are the vendor's condition codes (Polygon/CTA/UTP ids);
    :mod:`shared.conditions` decides what they mean. ``trf_id`` is
    the Trade Reporting Facility id for off-exchange prints (0 when none).
    """

    symbol: str
    ts_event: int
    ts_recv: int
    ts_arrival: int
    price: int
    size: int
    exchange: int = 0
    trade_id: str = ""
    trf_id: int = 0
    conditions: tuple[int, ...] = ()
    sequence: int = 0
    tape: int = 0
    correction: int = 0
    side: Side = "unknown"
    side_source: SideSource = "none"
    backfilled: bool = False

    @property
    def dedup_key(self) -> tuple[str, int, str, int]:
        """Identity of a print: exact duplicates share it."""
        return (self.symbol, self.exchange, self.trade_id, self.trf_id)


class Quote(msgspec.Struct, frozen=True, tag="quote", kw_only=True):
    """National best bid and offer (one level). Sizes in shares."""

    symbol: str
    ts_event: int
    ts_recv: int
    ts_arrival: int
    bid_price: int
    bid_size: int
    ask_price: int
    ask_size: int
    bid_exchange: int = 0
    ask_exchange: int = 0
    conditions: tuple[int, ...] = ()
    sequence: int = 0
    tape: int = 0


class BookUpdate(msgspec.Struct, frozen=True, tag="book", kw_only=True):
    """The visible book after an update, best level first, any depth.

    ``bids`` and ``asks`` hold ``(price, size)`` pairs; empty levels are
    simply absent. A one-level book is an NBBO.
    """

    symbol: str
    ts_event: int
    ts_recv: int
    ts_arrival: int
    bids: tuple[tuple[int, int], ...] = ()
    asks: tuple[tuple[int, int], ...] = ()
    venue: str = ""


OrderAction = Literal["add", "cancel", "modify", "fill", "clear"]
"""What happened to a resting order (see :class:`OrderUpdate`)."""


class OrderUpdate(msgspec.Struct, frozen=True, tag="order", kw_only=True):
    """One resting sell order (an offer) changing, from an order-by-order source (Databento MBO).

    ``action``: ``add`` (a new order of ``size`` shares at ``price``), ``cancel`` (``size`` shares taken off without
    trading), ``modify`` (the order now rests ``size`` shares at ``price``), ``fill`` (``size`` shares of it
    traded), ``clear`` (every order of the symbol at ``venue`` is gone, e.g. before a new session's snapshot;
    ``order_id`` 0). ``remaining`` is the shares still resting after it (0: the order left the book). Only the ask
    side travels: the rules judge sellers, and it halves the traffic of a depth feed. A sample (JSON)::

        {"type":"order","symbol":"AMZN","ts_event":1340285400021893010,"ts_recv":…,"ts_arrival":…,
         "order_id":16119403,"action":"fill","price":223820000000,"size":100,"remaining":0,"venue":"XNAS"}
    """

    symbol: str
    ts_event: int
    ts_recv: int
    ts_arrival: int
    order_id: int
    action: OrderAction
    price: int = 0
    size: int = 0
    remaining: int = 0
    venue: str = ""


FeedState = Literal[
    "connected",
    "disconnected",
    "gap",
    "auth_failed",
    "watchdog_silence",
    "trading_halted",
    "trading_resumed",
    "monitoring_halted",
    "monitoring_resumed",
    "calibrating",
    "calibrated",
    "dead_letter",
    "positions_lost",
    "position_unreadable",
]


class FeedStatus(msgspec.Struct, frozen=True, tag="status", kw_only=True):
    """A change in the state of a feed or of monitoring.

    ``symbols`` empty means "every symbol of this source". For a gap,
    ``gap_start_ns``/``gap_end_ns`` bound the interval during which data may
    be missing; windows that span it are not trusted.
    """

    source: str
    state: FeedState
    ts_event: int
    ts_recv: int
    symbols: tuple[str, ...] = ()
    code: str = ""
    detail: str = ""
    gap_start_ns: int = 0
    gap_end_ns: int = 0


AlertType = Literal["large_seller", "red_burst", "market_selloff"]
Severity = Literal["warning", "critical"]
AlertSource = Literal["tape", "book", "index"]
TradingSession = Literal["pre_market", "regular", "after_hours", "closed"]

ContextLabel = Literal["stock_specific", "market_wide", "mixed", "unknown"]
"""Whether the selling is the stock's own (``stock_specific``: its index is not falling), the market's
(``market_wide``: the index falls and explains the stock's move), both (``mixed``: the index falls and the stock
falls further than its beta explains), or cannot be told (``unknown``: no fresh index data)."""


class MarketContext(msgspec.Struct, frozen=True, kw_only=True):
    """The market beside an alert: its index over the same window, and the label the numbers give.

    Returns in basis points over the ``window_seconds`` ending at the alert (event time). ``beta`` is the stock's
    beta to ``index`` (from its profile; 1.0 without one), ``expected_return_bps`` = beta × the index's return and
    ``relative_return_bps`` the stock's return minus that. ``index_sell_share`` is the index's aggressive sell
    volume over its classified volume in the window (0..1). ``index_age_ms`` is how old the index's last event was
    at the alert (event time). A sample (JSON)::

        {"label":"market_wide","index":"SPY","window_seconds":300,"index_return_bps":-18.2,
         "index_sell_share":0.64,"stock_return_bps":-21.5,"beta":1.1,"expected_return_bps":-20.0,
         "relative_return_bps":-1.5,"index_age_ms":12.0,"reason":"SPY fell 18.2 bps in 300 s; ..."}
    """

    label: ContextLabel
    index: str = ""
    window_seconds: int = 0
    index_return_bps: float = 0.0
    index_sell_share: float = 0.0
    stock_return_bps: float = 0.0
    beta: float = 1.0
    expected_return_bps: float = 0.0
    relative_return_bps: float = 0.0
    index_age_ms: float = 0.0
    reason: str = ""


class OrderFlowAlert(msgspec.Struct, frozen=True, tag="alert", kw_only=True):
    """An alert about selling pressure on one symbol.

    ``id`` is deterministic (derived from the triggering events), so a
    redelivered event never yields a second, different alert.
    ``price_level`` is nano-dollars; ``volume_ratio`` is spike-window volume
    over the baseline per-window average (0 for large-seller alerts);
    ``sell_ratio`` is sell volume over classified volume (0..1).
    ``latency_ms`` runs from ingest ``ts_recv`` of the triggering event to
    the moment the alert was logged.
    """

    id: str
    symbol: str
    alert_type: AlertType
    severity: Severity
    source: AlertSource
    ts_event: int
    ts_recv: int
    timestamp_utc: str
    order_size: int = 0
    price_level: int = 0
    volume_ratio: float = 0.0
    sell_ratio: float = 0.0
    two_sided: bool = False
    session: TradingSession = "regular"
    evidence: dict[str, EvidenceValue] = {}
    latency_ms: float = 0.0
    context: MarketContext | None = None
    """The market beside the alert (None: market context is off)."""


ExitTrigger = Literal["large_sellers", "red_burst", "market_selloff"]
ExitScope = Literal["symbol", "market"]
"""``symbol``: the recommendation is about ``symbol``'s own selling; ``market``: the market itself is being sold
(``symbol`` is the index) and ``symbols`` names every open position it applies to."""
ExitAction = Literal["exit", "watch"]
"""``exit``: the expected fall exceeds the cost of acting now; ``watch``: it does not (the default client policy
does not sell on it)."""


class ExitRecommendation(msgspec.Struct, frozen=True, tag="exit", kw_only=True):
    """A recommendation to exit a position, for the risk manager to evaluate."""

    id: str
    symbol: str
    trigger: ExitTrigger
    ts_event: int
    ts_recv: int
    timestamp_utc: str
    alert_ids: tuple[str, ...]
    reasoning: str
    severity: Severity = "critical"
    session: TradingSession = "regular"
    evidence: dict[str, EvidenceValue] = {}
    latency_ms: float = 0.0
    scope: ExitScope = "symbol"
    symbols: tuple[str, ...] = ()
    """``scope == "market"``: the open positions it names (empty for ``symbol`` scope: only ``symbol``)."""
    action: ExitAction = "exit"
    expected_fall_bps: float = 0.0
    """The fall (basis points of the mid, over the exit horizon) that the recommendation expects; 0: not estimated."""
    cost_bps: float = 0.0
    """The cost of acting now: half the quoted spread, in basis points of the mid, when it was raised."""
    context: MarketContext | None = None
    key_id: str = ""
    """The signing key's name; with ``signed_ns`` (ns) and ``signature`` (HMAC-SHA256, hex): see
    :mod:`orderflow_client.signing`."""
    signed_ns: int = 0
    signature: str = ""


MarketEvent = Trade | Quote | BookUpdate | OrderUpdate | FeedStatus


class MarketEvents(msgspec.Struct, frozen=True, tag="events", kw_only=True):
    """Several market events of one symbol's stream in one stream entry, oldest first.

    Ingest and replay pack the events a batch holds for one stream into entries of up to
    :data:`EVENTS_PER_ENTRY` (a single event keeps an entry of its own), so Redis and the detector pay their
    per-entry cost once for many events: at high rates that cost, not the rules, set the detector's pace. A
    sample (JSON)::

        {"type":"events","events":[{"type":"quote","symbol":"AAPL",…},{"type":"trade","symbol":"AAPL",…}]}
    """

    events: tuple[MarketEvent, ...]


EVENTS_PER_ENTRY = 64
"""At most this many events in one :class:`MarketEvents` entry (an entry is the unit of acknowledgement,
redelivery and dead-lettering, so it stays small: 64 ten-level book updates are about 25 KB)."""

WireMessage = Trade | Quote | BookUpdate | OrderUpdate | FeedStatus | MarketEvents | OrderFlowAlert | ExitRecommendation

_msgpack_encoder = msgspec.msgpack.Encoder()
_msgpack_decoder = msgspec.msgpack.Decoder(WireMessage)
_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder(WireMessage)


def encode(message: WireMessage) -> bytes:
    """Encode for the bus (msgpack)."""
    return _msgpack_encoder.encode(message)


def decode(payload: bytes) -> WireMessage:
    """Decode a bus payload; raises :class:`WireDecodeError` on anything bad."""
    try:
        return _msgpack_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise WireDecodeError(f"undecodable bus payload: {error}") from None


def unbatched(message: WireMessage) -> tuple[WireMessage, ...]:
    """The messages an entry holds: the events of a :class:`MarketEvents`, else the message alone."""
    return message.events if isinstance(message, MarketEvents) else (message,)


def to_json(message: WireMessage) -> bytes:
    """Encode as compact JSON (logs, files)."""
    return _json_encoder.encode(message)


def from_json(payload: bytes | str) -> WireMessage:
    """Decode JSON written by :func:`to_json`; raises :class:`WireDecodeError`."""
    try:
        return _json_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise WireDecodeError(f"undecodable JSON message: {error}") from None


def utc_iso(ts_ns: int) -> str:
    """The ``timestamp_utc`` string for a nanosecond timestamp."""
    return ns_to_utc_iso(ts_ns)
