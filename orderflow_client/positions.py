"""The position registry: which symbols are monitored (only those with open positions).

The bot registers each open position; ingest subscribes to its trades and
quotes and the detector reads its stream for as long as it is open.

Storage: the hash ``orderflow:positions`` (field = symbol, value = a JSON
:class:`Position`), and a notice ``{"action":"open","symbol":"AAPL"}`` on the
channel ``orderflow:positions:changes`` after every change, so followers
react within milliseconds; they also re-read the hash periodically, so a
missed notice costs at most that period.

    registry = PositionRegistry(bus)
    await registry.open("AAPL", quantity=200, entry_price=Decimal("187.43"), stop_loss=Decimal("184.00"))

Prices are ``Decimal``, ``float`` or ``str`` dollars (or :class:`~orderflow_client.prices.NanoDollars`); a bare
``int`` is refused (dollars or nano-dollars?). An entry of the hash that cannot be read is logged, reported by the
services as a ``position_unreadable`` status and its symbol still monitored.
    await registry.close("AAPL")
"""

from __future__ import annotations

import builtins
from decimal import Decimal
from typing import NamedTuple

import msgspec

from orderflow_client import logs
from orderflow_client.bus.connection import Bus
from orderflow_client.bus.registry import REGISTRY_MARK, RegistryHash
from orderflow_client.prices import format_price, price_from_any
from orderflow_client.timestamps import now_ns


class Position(msgspec.Struct, frozen=True, kw_only=True):
    """An open position. Prices in nano-dollars; ``opened_ns`` when registered."""

    symbol: str
    quantity: int
    entry_price: int
    stop_loss: int = 0
    opened_ns: int = 0


class PositionChange(msgspec.Struct, frozen=True):
    action: str  # "open" | "close"
    symbol: str


_position_decoder = msgspec.json.Decoder(Position)
_change_decoder = msgspec.json.Decoder(PositionChange)


def normalise_symbol(symbol: str) -> str:
    cleaned = symbol.strip().upper()
    if not cleaned or not all(character.isalnum() or character in ".-" for character in cleaned) or len(cleaned) > 12:
        raise ValueError(f"not a ticker symbol: {symbol!r}")
    return cleaned


def decode_change(payload: bytes | str) -> PositionChange | None:
    try:
        return _change_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


PriceInput = Decimal | float | str | int  # int only as orderflow_client.prices.NanoDollars


class RegistryNotice(NamedTuple):
    """Something a service following the registry must report as a status: ``positions_lost`` (the hash vanished;
    written back) or ``position_unreadable`` (an entry that does not decode; its symbol is still monitored)."""

    state: str
    code: str
    symbols: tuple[str, ...]
    detail: str


log = logs.get_logger(__name__)


class PositionRegistry:
    """Open, close and list positions in Redis."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._hash = RegistryHash(bus)
        self._last_seen: list[Position] = []  # what :meth:`follow` read last
        self._unreadable: dict[str, str] = {}  # symbol -> why its entry did not decode, at the last read
        self._reported_unreadable: dict[str, str] = {}  # what :meth:`follow` has reported

    async def open(
        self, symbol: str, *, quantity: int, entry_price: PriceInput, stop_loss: PriceInput | None = None
    ) -> Position:
        """Register (or update) an open position: ``quantity`` in shares (negative: short), prices as ``Decimal``,
        ``float`` or ``str`` dollars, or :class:`~orderflow_client.prices.NanoDollars`; no stop: None."""
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            if isinstance(quantity, (float, Decimal)) and quantity == int(quantity):
                quantity = int(quantity)
            else:
                raise TypeError(f"quantity: whole shares expected, got {quantity!r}")
        if quantity == 0:
            raise ValueError("quantity must not be 0")
        entry = price_from_any(entry_price, what="entry_price")
        stop = 0 if stop_loss is None else price_from_any(stop_loss, what="stop_loss")
        if entry <= 0 or stop < 0:
            raise ValueError("entry price must be > 0 and stop loss >= 0")
        if stop and quantity > 0 and stop >= entry:
            raise ValueError(
                f"the stop loss {format_price(stop)} of a long position must be below its entry {format_price(entry)}"
            )
        if stop and quantity < 0 and stop <= entry:
            raise ValueError(
                f"the stop loss {format_price(stop)} of a short position must be above its entry {format_price(entry)}"
            )
        position = Position(
            symbol=normalise_symbol(symbol), quantity=quantity, entry_price=entry, stop_loss=stop, opened_ns=now_ns()
        )
        await self._hash.put({position.symbol: msgspec.json.encode(position), REGISTRY_MARK: b"1"})
        await self._notify("open", position.symbol)
        return position

    async def close(self, symbol: str) -> bool:
        """Remove a position; True when it was open."""
        removed = await self._hash.remove(normalise_symbol(symbol))
        await self._notify("close", normalise_symbol(symbol))
        return removed

    async def list(self) -> builtins.list[Position]:
        return await self.current() or []

    async def current(self) -> builtins.list[Position] | None:
        """The open positions; None when the registry itself is missing (never used, or lost with a Redis
        restarted without persistence: the caller that knew positions tells which)."""
        values = await self._hash.entries()
        if not values:
            return None
        if REGISTRY_MARK not in values:  # written before the mark existed
            await self._hash.mark()
        positions = []
        unreadable: dict[str, str] = {}
        for symbol, value in values.items():
            if symbol == REGISTRY_MARK:
                continue
            try:
                positions.append(_position_decoder.decode(value))
            except (msgspec.DecodeError, msgspec.ValidationError) as error:
                # still monitored (by its symbol: the field name), never dropped in silence
                unreadable[symbol] = str(error)[:200]
                positions.append(Position(symbol=symbol, quantity=0, entry_price=0))
        for symbol, reason in unreadable.items():
            if self._unreadable.get(symbol) != reason:
                log.error("order_flow.position_unreadable", code="position_unreadable", symbol=symbol, reason=reason)
        self._unreadable = unreadable
        return sorted(positions, key=lambda position: position.symbol)

    async def follow(self) -> tuple[builtins.list[Position], builtins.list[RegistryNotice]]:
        """The open positions, for a service that monitors them, and what it must report (each once):

        - the registry vanished since the last call (Redis restarted without persistence): the positions seen
          then are written back and still returned (logged as ``order_flow.positions_lost``);
        - an entry does not decode (written by hand, or by a newer or broken client): its symbol is still
          returned, with quantity 0 (``order_flow.position_unreadable``).
        """
        positions = await self.current()
        notices: builtins.list[RegistryNotice] = []
        if positions is None and self._last_seen:
            positions = [position for position in self._last_seen if position.symbol not in self._reported_unreadable]
            restored = await self.restore(positions)
            symbols = tuple(p.symbol for p in self._last_seen)
            log.error("order_flow.positions_lost", code="registry_missing", symbols=list(symbols), restored=restored)
            notices.append(
                RegistryNotice(
                    "positions_lost",
                    "registry_missing",
                    symbols,
                    f"the position registry vanished (Redis restarted without persistence?): {restored} of "
                    f"{len(positions)} positions written back, still monitored",
                )
            )
            positions = self._last_seen
        else:
            for symbol, reason in self._unreadable.items():
                if self._reported_unreadable.get(symbol) != reason:
                    notices.append(
                        RegistryNotice(
                            "position_unreadable",
                            "position_unreadable",
                            (symbol,),
                            f"the registry's entry for {symbol} cannot be read ({reason}): still monitored; "
                            f"open it again from the bot",
                        )
                    )
            self._reported_unreadable = dict(self._unreadable)
        self._last_seen = positions or []
        return self._last_seen, notices

    async def restore(self, positions: builtins.list[Position]) -> int:
        """Write back positions known from before the registry was lost (a field set since is kept).
        Returns how many were written."""
        written = 0
        for position in positions:
            written += await self._hash.put_if_absent(position.symbol, msgspec.json.encode(position))
        await self._hash.mark()
        for position in positions:
            await self._notify("open", position.symbol)
        return written

    async def symbols(self) -> builtins.list[str]:
        return [position.symbol for position in await self.list()]

    async def _notify(self, action: str, symbol: str) -> None:
        await self._hash.announce(msgspec.json.encode(PositionChange(action, symbol)))
