"""What an entry of a market stream (``{prefix}:md:{SYM}``) may hold, and the events it holds.

An entry holds one market event (field ``trade``, ``quote``, ``book`` or ``status``: the event's tag) or several
(field ``events``: :class:`~orderflow_client.wire.MarketEvents`), all of the stream's symbol. Anything else that
decodes — an alert on a market stream, a trade of another symbol, a field naming another type — is a poison entry:
:func:`market_events` says why, and the detector moves it to the dead-letter stream instead of running it::

    market_events(decode(entry.payload), entry, "AAPL")
    # (Quote(symbol="AAPL", …), Trade(symbol="AAPL", …))   or   Misplaced("wrong_symbol", "an event of MSFT on …")
"""

from __future__ import annotations

from typing import NamedTuple

from orderflow_client.bus.entries import EVENTS_FIELD
from orderflow_client.bus.streams import BusEntry, as_text
from orderflow_client.wire import (
    BookUpdate,
    FeedStatus,
    MarketEvent,
    MarketEvents,
    OrderUpdate,
    Quote,
    Trade,
    WireMessage,
)


class Misplaced(NamedTuple):
    """Why a decoded entry does not belong on a market stream: ``code`` (``wrong_type``, ``wrong_field``,
    ``wrong_symbol``) and the reason for its dead letter."""

    code: str
    reason: str


def market_events(message: WireMessage, entry: BusEntry, symbol: str) -> tuple[MarketEvent, ...] | Misplaced:
    """The events ``message`` (decoded from ``entry``) holds for the market stream of ``symbol`` (``""``: any
    symbol): one, or several for a :class:`MarketEvents` entry; or why the entry is a poison entry: valid msgpack,
    but not what this stream and field may hold (one misplaced event spoils its whole entry)."""
    if isinstance(message, MarketEvents):
        if entry.field and entry.field != EVENTS_FIELD:
            return Misplaced("wrong_field", f"field {as_text(entry.field)!r} holds several events")
        for event in message.events:
            if misplaced := _misplaced(event, symbol):
                return misplaced
        return message.events
    if not isinstance(message, _MARKET_TYPES):
        tag = type(message).__struct_config__.tag
        return Misplaced("wrong_type", f"a {tag} message on a market stream (only trade, quote, book, order, status)")
    field = MARKET_FIELDS[type(message)]
    if entry.field and entry.field != field:
        return Misplaced("wrong_field", f"field {as_text(entry.field)!r} holds a {field.decode()}")
    return _misplaced(message, symbol) or (message,)


def _misplaced(event: MarketEvent, symbol: str) -> Misplaced | None:
    if isinstance(event, FeedStatus):
        if event.symbols and symbol and symbol not in event.symbols:
            return Misplaced("wrong_symbol", f"a status for {','.join(event.symbols)} on the stream of {symbol}")
    elif symbol and event.symbol != symbol:
        return Misplaced("wrong_symbol", f"an event of {event.symbol} on the stream of {symbol}")
    return None


_MARKET_TYPES = (Trade, Quote, BookUpdate, OrderUpdate, FeedStatus)
MARKET_FIELDS: dict[type, bytes] = {kind: str(kind.__struct_config__.tag).encode() for kind in _MARKET_TYPES}
"""The field each market event is written under when alone in its entry (its wire tag): ``trade``, ``quote``,
``book``, ``order``, ``status``."""
