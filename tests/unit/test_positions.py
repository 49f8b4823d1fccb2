"""The position registry at the bot's boundary: the bot's own price types, never a silently unmonitored position."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderflow_client.bus import Bus
from orderflow_client.positions import PositionRegistry
from orderflow_client.prices import NanoDollars, format_price, price_from_any, round_to_tick
from orderflow_client.wire import decode
from services.detector.service import DetectorService
from shared.config import OrderFlowConfig


def test_prices_at_the_boundary():
    assert price_from_any(Decimal("221.00")) == price_from_any(221.0) == price_from_any("221.00") == 221_000_000_000
    assert (
        price_from_any(49.34) == 49_340_000_000 and price_from_any(0.0001) == 100_000
    )  # the decimal the float prints as
    assert price_from_any(Decimal("1E+2")) == 100_000_000_000 and price_from_any(NanoDollars(5)) == 5
    with pytest.raises(TypeError, match="bare int is ambiguous"):
        price_from_any(221)
    with pytest.raises(TypeError):
        price_from_any(True)
    for bad in (float("nan"), float("inf"), Decimal("NaN"), 1e12, "abc"):
        with pytest.raises(ValueError):
            price_from_any(bad)


@given(st.integers(min_value=1, max_value=10_000_000))
def test_a_float_price_in_cents_is_read_exactly(cents):
    """Any float a bot holds for a price in whole cents (up to $100,000) becomes exactly those cents."""
    dollars = cents / 100
    assert price_from_any(dollars) == cents * 10_000_000 == price_from_any(Decimal(str(dollars)))


@given(st.integers(min_value=1, max_value=10**15))
def test_rounding_to_a_tick(price):
    down, up = round_to_tick(price, down=True), round_to_tick(price, down=False)
    tick = 10_000_000 if price >= 10**9 else 100_000
    assert down <= price <= up and up - down in (0, tick) and down % tick == 0 and up % tick == 0
    assert len(format_price(down).split(".")[1]) <= (2 if down >= 10**9 else 4)


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
