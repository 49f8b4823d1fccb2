"""How market events become entries of the per-symbol streams: the events a batch holds for one stream are packed
into entries of up to :data:`~orderflow_client.wire.EVENTS_PER_ENTRY`, oldest first.

An entry holding one event keeps the event's own field and payload (``trade``, ``quote``, ``book``, ``order``,
``status``); an entry holding several has the field ``events`` and a :class:`~orderflow_client.wire.MarketEvents`
payload. Redis and the detector pay their per-entry cost (XADD, delivery to the group, the reply's parse, the decode
call, XACK) once for the entry, so at high rates — when batches fill — that cost is shared by up to 64 events, and
at low rates nothing waits to fill an entry. ``redis-cli`` shows which an entry is::

    XRANGE orderflow:md:{AAPL} - + COUNT 2
    1) 1) "1718890000123-0"
       2) 1) "trade"
          2) "\\xde\\x00\\x11\\xa4type\\xa5trade…"
    2) 1) "1718890000125-0"
       2) 1) "events"
          2) "\\x82\\xa4type\\xa6events\\xa6events\\xdc\\x00@\\xde…"
"""

from __future__ import annotations

from collections.abc import Iterable

from orderflow_client.wire import EVENTS_PER_ENTRY, MarketEvent, MarketEvents, encode

EVENTS_FIELD = b"events"


def pack_market_events(
    stream_events: Iterable[tuple[str, MarketEvent]], *, per_entry: int = EVENTS_PER_ENTRY
) -> list[tuple[str, bytes, bytes]]:
    """``(stream, event)`` pairs, in order, as encoded ``(stream, field, payload)`` entries: each stream's events
    in their order, ``per_entry`` at most an entry. Streams keep their first appearance's order."""
    per_stream: dict[str, list[MarketEvent]] = {}
    for stream, event in stream_events:
        events = per_stream.get(stream)
        if events is None:
            per_stream[stream] = [event]
        else:
            events.append(event)
    entries: list[tuple[str, bytes, bytes]] = []
    for stream, events in per_stream.items():
        for start in range(0, len(events), per_entry):
            chunk = events[start : start + per_entry]
            if len(chunk) == 1:
                event = chunk[0]
                entries.append((stream, type(event).__struct_config__.tag.encode(), encode(event)))  # type: ignore[union-attr]
            else:
                entries.append((stream, EVENTS_FIELD, encode(MarketEvents(events=tuple(chunk)))))
    return entries
