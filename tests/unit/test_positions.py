"""Prices at the bot's boundary: its own price types read exactly, rounding to a tick (the registry: integration)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderflow_client.prices import NanoDollars, format_price, price_from_any, round_to_tick


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
