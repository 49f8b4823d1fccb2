"""Polygon/Massive REST v3 trades and quotes responses → normalised events.

``GET /v3/trades/{ticker}`` and ``GET /v3/quotes/{ticker}`` answer
``{"results": [...], "status": "OK", "next_url": "..."}``; timestamps are
**nanoseconds**, the ticker is in the URL, not in the rows. A trade row::

    {"conditions":[12,37],"correction":1,"exchange":11,"id":"183276",
     "participant_timestamp":1651181822461636600,"price":156.43,
     "sequence_number":7179341,"sip_timestamp":1651181822461979400,"size":10,
     "tape":3,"trf_id":3,"trf_timestamp":1651181557090806500}
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from orderflow_client.prices import fits_price, fits_size, price_from_float
from orderflow_client.timestamps import MAX_TIMESTAMP
from orderflow_client.wire import Quote, Trade
from services.ingest.rejects import Reject

SOURCE = "polygon_rest"


class RestTrade(msgspec.Struct, kw_only=True):
    price: float
    sip_timestamp: int
    size: float = 0
    exchange: int = 0
    id: str = ""
    conditions: list[int] = []
    correction: int = 0
    participant_timestamp: int = 0
    sequence_number: int = 0
    tape: int = 0
    trf_id: int = 0
    trf_timestamp: int = 0


class RestQuote(msgspec.Struct, kw_only=True):
    bid_price: float
    ask_price: float
    sip_timestamp: int
    bid_size: float = 0
    ask_size: float = 0
    bid_exchange: int = 0
    ask_exchange: int = 0
    conditions: list[int] = []
    indicators: list[int] = []
    participant_timestamp: int = 0
    sequence_number: int = 0
    tape: int = 0


class _Page(msgspec.Struct):
    results: list[msgspec.Raw] = []
    status: str = ""
    next_url: str | None = None


_page_decoder = msgspec.json.Decoder(_Page)
_trade_decoder = msgspec.json.Decoder(RestTrade)
_quote_decoder = msgspec.json.Decoder(RestQuote)


class Page(NamedTuple):
    events: list
    rejects: list[Reject]
    next_url: str | None


def parse_trades_page(body: bytes, symbol: str, ts_recv: int, *, backfilled: bool = False) -> Page:
    """One page of ``/v3/trades/{symbol}``. ``backfilled`` marks trades fetched after a gap."""
    page, rejects = _decode_page(body)
    trades = []
    for index, raw in enumerate(page.results if page else []):
        try:
            row = _trade_decoder.decode(raw)
        except msgspec.ValidationError as error:
            rejects.append(Reject(SOURCE, "invalid_row", f"results[{index}]", str(error)))
            continue
        if not (fits_price(row.price) and fits_size(row.size) and 0 <= row.sip_timestamp <= MAX_TIMESTAMP):
            rejects.append(
                Reject(SOURCE, "value_out_of_range", f"results[{index}]", f"price={row.price} size={row.size}")
            )
            continue
        trades.append(
            Trade(
                symbol=symbol,
                ts_event=row.sip_timestamp,
                ts_recv=ts_recv,
                ts_arrival=ts_recv,
                price=price_from_float(row.price),
                size=int(row.size),
                exchange=row.exchange,
                trade_id=row.id,
                trf_id=row.trf_id,
                conditions=tuple(row.conditions),
                sequence=row.sequence_number,
                tape=row.tape,
                correction=row.correction,
                backfilled=backfilled,
            )
        )
    return Page(trades, rejects, page.next_url if page else None)


def parse_quotes_page(body: bytes, symbol: str, ts_recv: int, *, quote_size_multiplier: int = 1) -> Page:
    """One page of ``/v3/quotes/{symbol}``."""
    page, rejects = _decode_page(body)
    quotes = []
    for index, raw in enumerate(page.results if page else []):
        try:
            row = _quote_decoder.decode(raw)
        except msgspec.ValidationError as error:
            rejects.append(Reject(SOURCE, "invalid_row", f"results[{index}]", str(error)))
            continue
        if not (
            fits_price(row.bid_price)
            and fits_price(row.ask_price)
            and fits_size(row.bid_size)
            and fits_size(row.ask_size)
            and 0 <= row.sip_timestamp <= MAX_TIMESTAMP
        ):
            rejects.append(
                Reject(SOURCE, "value_out_of_range", f"results[{index}]", f"bid={row.bid_price} ask={row.ask_price}")
            )
            continue
        quotes.append(
            Quote(
                symbol=symbol,
                ts_event=row.sip_timestamp,
                ts_recv=ts_recv,
                ts_arrival=ts_recv,
                bid_price=price_from_float(row.bid_price),
                bid_size=int(row.bid_size) * quote_size_multiplier,
                ask_price=price_from_float(row.ask_price),
                ask_size=int(row.ask_size) * quote_size_multiplier,
                bid_exchange=row.bid_exchange,
                ask_exchange=row.ask_exchange,
                conditions=tuple(row.conditions),
                sequence=row.sequence_number,
                tape=row.tape,
            )
        )
    return Page(quotes, rejects, page.next_url if page else None)


def _decode_page(body: bytes) -> tuple[_Page | None, list[Reject]]:
    try:
        return _page_decoder.decode(body), []
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        return None, [Reject(SOURCE, "malformed_response", "body", str(error))]
