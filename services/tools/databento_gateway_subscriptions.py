"""What one session of the local Databento gateway is subscribed to, and the records each request is answered with.

:meth:`Subscriptions.apply` takes a subscription or unsubscribe request and returns the DBN records to send for it;
a request the gateway cannot serve raises :class:`SubscriptionRefused` (the session then ends). For
``schema=trades|stype_in=raw_symbol|symbols=AMZN,MSFT|id=0`` on a market of AMZN: a ``SymbolMappingMsg`` AMZN → AMZN
(its instrument id), an ``ErrorMsg`` ``SYMBOL_RESOLUTION_FAILED`` for MSFT (the session goes on), then the
``SystemMsg`` ``SUBSCRIPTION_ACK`` "Subscription request 0 for trades data succeeded". Requests sent in parts
(``is_last=0`` on all but the last) are answered once whole.
"""

from __future__ import annotations

import time

from services.tools.databento_gateway_market import Market
from services.tools.databento_gateway_protocol import ALL_SYMBOLS, SubscriptionRequest, UnsubscribeRequest
from services.tools.databento_gateway_records import error_message, symbol_mapping, system_message

SERVED_SYMBOL_TYPES = ("raw_symbol", "instrument_id")
_MESSAGE_CHARACTERS = 300  # an ErrorMsg holds 302 characters


class SubscriptionRefused(Exception):
    """A request that ends the session: ``code`` for logs, ``error_code`` the ``ErrorCode`` name the client gets."""

    def __init__(self, code: str, message: str, error_code: str = "INVALID_SUBSCRIPTION") -> None:
        super().__init__(message)
        self.code = code
        self.error_code = error_code


class Subscriptions:
    """The (schema, instrument id) pairs a session wants, and the schemas it wants whole (``ALL_SYMBOLS``)."""

    def __init__(self, market: Market, publishers: dict[int, int]) -> None:
        self.market = market
        self.publishers = publishers
        self.wanted: set[tuple[str, int]] = set()
        self.whole_schemas: set[str] = set()
        self._parts: dict[tuple[str, str, str], list[str]] = {}

    def wants(self, schema: str, instrument_id: int) -> bool:
        return schema in self.whole_schemas or (schema, instrument_id) in self.wanted

    def first_instrument(self) -> int:
        """The lowest instrument id subscribed (0 when none): whom an injected malformed record names."""
        return min((pair[1] for pair in self.wanted), default=0)

    def apply(self, request: SubscriptionRequest | UnsubscribeRequest) -> list[bytes]:
        """The records answering ``request`` (none until a request sent in parts is whole)."""
        if isinstance(request, UnsubscribeRequest):
            symbols = self._whole(request, "unsubscribe")
            return [] if symbols is None else self._unsubscribe(request.schema, request.symbol_type, symbols)
        symbols = self._whole(request, str(request.subscription_id))
        if symbols is None:
            return []
        self._check(request)
        now = time.time_ns()
        records = []
        for symbol in symbols:
            if symbol == ALL_SYMBOLS:
                self.whole_schemas.add(request.schema)
                for raw_symbol, known_id in sorted(self.market.instruments.items()):
                    records.append(self._mapping(now, request.symbol_type, raw_symbol, known_id))
                continue
            instrument_id = self.resolve(symbol, request.symbol_type)
            if instrument_id is None:
                text = f"Failed to resolve symbol {symbol} ({request.symbol_type}) in {self.market.dataset}"
                records.append(error_message(now, text[:_MESSAGE_CHARACTERS], "SYMBOL_RESOLUTION_FAILED"))
                continue
            self.wanted.add((request.schema, instrument_id))
            records.append(self._mapping(now, request.symbol_type, symbol, instrument_id))
        number = "" if request.subscription_id is None else f" {request.subscription_id}"
        text = f"Subscription request{number} for {request.schema} data succeeded"
        records.append(system_message(now, text, "SUBSCRIPTION_ACK"))
        return records

    def resolve(self, symbol: str, symbol_type: str) -> int | None:
        """The instrument id of ``symbol`` (a raw symbol, or an instrument id's digits); None when unknown."""
        if symbol_type == "raw_symbol":
            return self.market.instruments.get(symbol)
        if symbol.isdigit() and int(symbol) in self.market.instruments.values():
            return int(symbol)
        return None

    def _check(self, request: SubscriptionRequest) -> None:
        if request.start is not None:
            raise SubscriptionRefused("not_implemented", "intraday replay (start=) is not implemented by this gateway")
        if request.snapshot:
            raise SubscriptionRefused("not_implemented", "snapshot subscriptions are not implemented by this gateway")
        schemas = self.market.schemas
        if request.schema not in schemas:
            served = ", ".join(sorted(schemas)) or "nothing"
            message = f"schema {request.schema} is not served here (this gateway: {served})"
            raise SubscriptionRefused("schema_not_served", message)
        if request.symbol_type not in SERVED_SYMBOL_TYPES:
            message = f"stype_in {request.symbol_type} is not implemented by this gateway"
            raise SubscriptionRefused("not_implemented", message)

    def _whole(self, request: SubscriptionRequest | UnsubscribeRequest, identity: str) -> list[str] | None:
        key = (request.schema, request.symbol_type, identity)
        symbols = self._parts.pop(key, []) + list(request.symbols)
        if not request.is_last:
            self._parts[key] = symbols
            return None
        return symbols

    def _mapping(self, now: int, symbol_type: str, requested: str, instrument_id: int) -> bytes:
        return symbol_mapping(
            now,
            instrument_id=instrument_id,
            publisher_id=self.publishers.get(instrument_id, 0),
            symbol_type=symbol_type,
            requested=requested,
            raw_symbol=self.market.symbol_of(instrument_id),
        )

    def _unsubscribe(self, schema: str, symbol_type: str, symbols: list[str]) -> list[bytes]:
        """Remove symbols: an ``UNSUBSCRIBE_ACK``, after an ``ErrorMsg`` naming those not subscribed (not fatal)."""
        now = time.time_ns()
        left: list[str] = []
        for symbol in symbols:
            if symbol == ALL_SYMBOLS:
                self.whole_schemas.discard(schema)
                self.wanted = {pair for pair in self.wanted if pair[0] != schema}
                continue
            instrument_id = self.resolve(symbol, symbol_type)
            if instrument_id is not None and (schema, instrument_id) in self.wanted:
                self.wanted.discard((schema, instrument_id))
            else:
                left.append(symbol)
        records = []
        if left:
            text = f"not subscribed to {schema} of {', '.join(left)}"
            records.append(error_message(now, text[:_MESSAGE_CHARACTERS], "INVALID_SUBSCRIPTION"))
        records.append(system_message(now, f"Unsubscribe request for {schema} data succeeded", "UNSUBSCRIBE_ACK"))
        return records
