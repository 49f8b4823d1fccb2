"""Polygon/Massive stocks WebSocket frames → normalised events.

A frame is a JSON array of events. Fields mirror Polygon's names::

    [{"ev":"T","sym":"AAPL","x":4,"i":"71675577320245","z":3,"p":187.43,"s":200,
      "c":[14,41],"t":1700000000123,"q":1234,"trfi":202,"trft":1700000000121}]
    [{"ev":"Q","sym":"AAPL","bx":12,"bp":187.42,"bs":300,"ax":11,"ap":187.44,"as":200,
      "c":[1],"i":[604],"t":1700000000124,"q":5678,"z":3}]
    [{"ev":"status","status":"auth_success","message":"authenticated"}]

``t`` is Unix **milliseconds** (REST and flat files use nanoseconds). Unknown
fields are ignored; an element that does not fit is rejected with a code
(``unsupported_event`` for event types orderflow does not use, like ``A``,
``AM``, ``LULD``; ``invalid_event`` for a known type with bad fields) and the
rest of the frame is kept.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from orderflow_client.prices import fits_price, fits_size, price_from_float
from orderflow_client.timestamps import NANOSECONDS_PER_MILLISECOND
from orderflow_client.wire import Quote, Trade
from services.ingest.rejects import Reject

SOURCE = "polygon_ws"
MAX_MILLISECONDS = (2**63 - 1) // NANOSECONDS_PER_MILLISECOND


class WsTrade(msgspec.Struct, tag_field="ev", tag="T", kw_only=True):
    sym: str
    p: float
    t: int
    s: int = 0
    x: int = 0
    i: str = ""
    z: int = 0
    c: list[int] = []
    q: int = 0
    trfi: int | None = None
    trft: int | None = None
    ds: str | None = None


class WsQuote(msgspec.Struct, tag_field="ev", tag="Q", kw_only=True, rename={"as_": "as"}):
    sym: str
    bp: float
    ap: float
    t: int
    bs: int = 0
    as_: int = 0
    bx: int = 0
    ax: int = 0
    c: list[int] = []
    i: list[int] = []
    q: int = 0
    z: int = 0


class WsStatus(msgspec.Struct, tag_field="ev", tag="status", kw_only=True):
    status: str
    message: str = ""


class _EventType(msgspec.Struct):
    ev: str = ""


WsEvent = WsTrade | WsQuote | WsStatus
_frame_decoder = msgspec.json.Decoder(list[WsEvent])
_element_decoder = msgspec.json.Decoder(WsEvent)
_raw_frame_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_event_type_decoder = msgspec.json.Decoder(_EventType)


class ParsedFrame(NamedTuple):
    """What one frame held: market events, protocol statuses, rejects."""

    events: list[Trade | Quote]
    statuses: list[WsStatus]
    rejects: list[Reject]


def parse_frame(
    frame: bytes | str, ts_recv: int, *, ts_arrival: int | None = None, quote_size_multiplier: int = 1
) -> ParsedFrame:
    """Parse one frame received at ``ts_recv`` (ns).

    ``ts_arrival`` defaults to ``ts_recv`` (live); a capture replay passes
    the recorded receive time. ``quote_size_multiplier`` turns round-lot
    quote sizes into shares (1 when Polygon sends shares).
    """
    arrival = ts_recv if ts_arrival is None else ts_arrival
    where = f"frame@{arrival}"
    try:
        elements: list = _frame_decoder.decode(frame)
        rejects: list[Reject] = []
    except msgspec.ValidationError:
        elements, rejects = _salvage(frame, where)
    except msgspec.DecodeError as error:
        return ParsedFrame([], [], [Reject(SOURCE, "malformed_json", where, str(error))])
    events: list[Trade | Quote] = []
    statuses: list[WsStatus] = []
    event: Trade | Quote | Reject
    for element in elements:
        if type(element) is WsTrade:
            event = _trade_event(element, ts_recv, arrival)
        elif type(element) is WsQuote:
            event = _quote_event(element, ts_recv, arrival, quote_size_multiplier)
        else:
            statuses.append(element)
            continue
        if isinstance(event, Reject):
            rejects.append(event._replace(where=where))
        else:
            events.append(event)
    return ParsedFrame(events, statuses, rejects)


def _salvage(frame: bytes | str, where: str) -> tuple[list, list[Reject]]:
    """Decode element by element after the whole frame failed validation."""
    try:
        raw_elements = _raw_frame_decoder.decode(frame)
    except msgspec.ValidationError as error:
        try:
            msgspec.json.decode(frame)
        except (msgspec.DecodeError, UnicodeDecodeError) as malformed:  # (a string of invalid UTF-8: b'"\x80"')
            return [], [Reject(SOURCE, "malformed_json", where, str(malformed))]
        return [], [Reject(SOURCE, "not_an_array", where, str(error))]
    except msgspec.DecodeError as error:
        return [], [Reject(SOURCE, "malformed_json", where, str(error))]
    elements, rejects = [], []
    for raw in raw_elements:
        try:
            elements.append(_element_decoder.decode(raw))
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as error:
            try:
                event_type = _event_type_decoder.decode(raw).ev
            except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
                event_type = ""
            code = "invalid_event" if event_type in ("T", "Q", "status") else "unsupported_event"
            rejects.append(Reject(SOURCE, code, where, f"ev={event_type!r}: {error}"))
    return elements, rejects


def _trade_event(event: WsTrade, ts_recv: int, arrival: int) -> Trade | Reject:
    if not 0 <= event.t <= MAX_MILLISECONDS:
        return Reject(SOURCE, "timestamp_out_of_range", "", f"T {event.sym} t={event.t}")
    if not fits_price(event.p):
        return Reject(SOURCE, "price_out_of_range", "", f"T {event.sym} p={event.p}")
    if not fits_size(event.s):
        return Reject(SOURCE, "size_out_of_range", "", f"T {event.sym} s={event.s}")
    return Trade(
        symbol=event.sym,
        ts_event=event.t * NANOSECONDS_PER_MILLISECOND,
        ts_recv=ts_recv,
        ts_arrival=arrival,
        price=price_from_float(event.p),
        size=event.s,
        exchange=event.x,
        trade_id=event.i,
        trf_id=event.trfi or 0,
        conditions=tuple(event.c),
        sequence=event.q,
        tape=event.z,
    )


def _quote_event(event: WsQuote, ts_recv: int, arrival: int, multiplier: int) -> Quote | Reject:
    if not 0 <= event.t <= MAX_MILLISECONDS:
        return Reject(SOURCE, "timestamp_out_of_range", "", f"Q {event.sym} t={event.t}")
    if not (fits_price(event.bp) and fits_price(event.ap)):
        return Reject(SOURCE, "price_out_of_range", "", f"Q {event.sym} bp={event.bp} ap={event.ap}")
    if not (fits_size(event.bs) and fits_size(event.as_)):
        return Reject(SOURCE, "size_out_of_range", "", f"Q {event.sym} bs={event.bs} as={event.as_}")
    return Quote(
        symbol=event.sym,
        ts_event=event.t * NANOSECONDS_PER_MILLISECOND,
        ts_recv=ts_recv,
        ts_arrival=arrival,
        bid_price=price_from_float(event.bp),
        bid_size=event.bs * multiplier,
        ask_price=price_from_float(event.ap),
        ask_size=event.as_ * multiplier,
        bid_exchange=event.bx,
        ask_exchange=event.ax,
        conditions=tuple(event.c),
        sequence=event.q,
        tape=event.z,
    )
