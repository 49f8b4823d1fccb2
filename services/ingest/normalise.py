"""The last step before the bus: deduplicate prints and give every trade a side.

One :class:`Normaliser` serves any number of symbols (one classifier each)
and is a pure state machine over events, so live ingest, replay and the
offline ``analyze`` produce identical streams from identical input.

* Exact duplicate prints — same ``(symbol, exchange, trade_id, trf_id)`` —
  are dropped (they happen on the feed); the key is remembered for the
  last ``dedup_capacity`` prints of each symbol, as one string: strings are
  not tracked by Python's garbage collector, tuples are, and millions of
  remembered tuples made every full collection a 10–40 ms pause in ingest.
* Quotes and book updates move the classifier's NBBO; trades are classified
  (:mod:`services.ingest.classify`). Only prints that can be aggressive
  (per :mod:`shared.conditions`) move the tick test's last price, so an
  average-price or late print never fakes an uptick.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import overload

from orderflow_client.wire import BookUpdate, MarketEvent, Quote, Trade
from services.ingest.classify import Method, QuoteTiming, SideClassifier
from services.ingest.rejects import Reject, RejectCounter
from shared.conditions import ConditionTable


@dataclass
class _SymbolState:
    classifier: SideClassifier
    seen: set[str] = field(default_factory=set)
    order: deque[str] = field(default_factory=deque)


class Normaliser:
    """Dedup + side classification for a stream of market events."""

    def __init__(
        self,
        conditions: ConditionTable | None = None,
        *,
        method: Method = "lee_ready",
        timing: QuoteTiming = "strict",
        dedup_capacity: int = 100_000,
    ) -> None:
        self.conditions = conditions or ConditionTable.bundled()
        self.method = method
        self.timing = timing
        self.dedup_capacity = dedup_capacity
        self.duplicates = 0
        self._symbols: dict[str, _SymbolState] = {}

    def _moves_last_price(self, trade: Trade) -> bool:
        return self.conditions.classify(trade.conditions, trade.correction).aggressive

    def _state(self, symbol: str) -> _SymbolState:
        state = self._symbols.get(symbol)
        if state is None:
            classifier = SideClassifier(self.method, self.timing, self._moves_last_price)
            state = self._symbols[symbol] = _SymbolState(classifier)
        return state

    @overload
    def process(self, event: Trade | Quote) -> Trade | Quote | None: ...
    @overload
    def process(self, event: MarketEvent) -> MarketEvent | None: ...
    def process(self, event: MarketEvent) -> MarketEvent | None:
        """The event ready for the bus, or None for a duplicate print."""
        if type(event) is Trade:
            state = self._state(event.symbol)
            if event.trade_id:
                key = f"{event.exchange}|{event.trade_id}|{event.trf_id}"
                if key in state.seen:
                    self.duplicates += 1
                    return None
                state.seen.add(key)
                state.order.append(key)
                if len(state.order) > self.dedup_capacity:
                    state.seen.discard(state.order.popleft())
            return state.classifier.classify(event)
        if type(event) is Quote or type(event) is BookUpdate:
            self._state(event.symbol).classifier.on_event(event)
        return event

    def forget(self, symbol: str) -> None:
        """Drop a symbol's state (position closed)."""
        self._symbols.pop(symbol, None)


def normalised(
    items: Iterable[MarketEvent | Reject], normaliser: Normaliser, rejects: RejectCounter
) -> Iterator[MarketEvent]:
    """A source's events deduplicated and classified; its rejects counted into ``rejects``."""
    for item in items:
        if isinstance(item, Reject):
            rejects.add(item)
            continue
        event = normaliser.process(item)
        if event is not None:
            yield event
