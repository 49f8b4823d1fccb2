"""The position registry on a real Redis: the bot's own price types, never a silently unmonitored position."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orderflow_client.bus.connection import Bus
from orderflow_client.positions import PositionRegistry
from orderflow_client.wire import decode
from services.detector.service import DetectorService
from shared.config import OrderFlowConfig


@pytest.mark.redis
async def test_the_bots_price_types_are_monitored_and_an_unreadable_entry_is_reported_not_dropped(
    redis_url, key_prefix
):
    config = OrderFlowConfig(key_prefix=key_prefix)
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        registry = PositionRegistry(bus)
        await registry.open(
            "AAPL", quantity=100, entry_price=Decimal("221.00"), stop_loss=Decimal("219.50")
        )  # TradingBot
        await registry.open("MSFT", quantity=50, entry_price=410.25, stop_loss=405.1)  # TradingOrchestrator's floats
        await registry.open("NVDA", quantity=Decimal("10"), entry_price="120.5")
        with pytest.raises(TypeError, match="NanoDollars"):
            await registry.open("TSLA", quantity=1, entry_price=221)  # $221 or 221 nano-dollars? refused
        positions = {p.symbol: p for p in await registry.list()}
        assert (positions["AAPL"].entry_price, positions["AAPL"].stop_loss) == (221_000_000_000, 219_500_000_000)
        assert (positions["MSFT"].entry_price, positions["MSFT"].stop_loss) == (410_250_000_000, 405_100_000_000)
        assert positions["NVDA"].quantity == 10 and "TSLA" not in positions

        await bus.client.hset(
            bus.keys.positions, "AMD", b'{"symbol":"AMD","quantity":10,"entry_price":"155.20"}'
        )  # a bad writer
        service = DetectorService(config, bus, consumer="one")
        assert await service.monitored_symbols() == ["AAPL", "AMD", "MSFT", "NVDA"]  # AMD still monitored
        assert await service.monitored_symbols() == ["AAPL", "AMD", "MSFT", "NVDA"]  # reported once, not every read
        statuses = [decode(next(iter(fields.values()))) for _id, fields in await bus.client.xrange(bus.keys.status)]
        assert [(s.state, s.code, s.symbols) for s in statuses] == [
            ("position_unreadable", "position_unreadable", ("AMD",))
        ]
        assert "still monitored" in statuses[0].detail
