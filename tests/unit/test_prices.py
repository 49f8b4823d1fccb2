"""Exact prices and nanosecond timestamps."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderflow_client.prices import (
    EXACT_FLOAT_LIMIT,
    PRICE_SCALE,
    format_price,
    price_from_float,
    price_from_scaled,
    price_from_text,
)
from orderflow_client.timestamps import ms_to_ns, ns_to_utc_iso


def test_float_prices_convert_exactly():
    assert price_from_float(187.43) == 187_430_000_000
    assert price_from_float(0.0001) == 100_000
    assert price_from_float(129.9999) == 129_999_900_000


def test_text_and_scaled_prices():
    assert price_from_text("187.43") == 187_430_000_000
    assert price_from_scaled(2_239_500, 10_000) == 223_950_000_000  # LOBSTER $223.95
    with pytest.raises(ValueError):
        price_from_text("abc")
    with pytest.raises(ValueError):
        price_from_text("NaN")
    with pytest.raises(ValueError):
        price_from_scaled(1, 7)


@given(st.decimals(min_value=Decimal("0.000000001"), max_value=Decimal("8388607.999999999"), places=9, allow_nan=False))
def test_text_round_trips_through_format(value):
    price = price_from_text(str(value))
    assert Decimal(format_price(price)) == value


@given(st.integers(min_value=-(EXACT_FLOAT_LIMIT * PRICE_SCALE - 1), max_value=EXACT_FLOAT_LIMIT * PRICE_SCALE - 1))
def test_floats_below_the_limit_are_exact_to_the_nano_dollar(nanos):
    dollars = float(Decimal(nanos) / PRICE_SCALE)  # the float a vendor prints for that decimal
    assert price_from_float(dollars) == nanos


def test_timestamps():
    assert ns_to_utc_iso(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"
    assert ms_to_ns(1_700_000_000_123) == 1_700_000_000_123_000_000
    assert format_price(-1_500_000_000) == "-1.50"


def test_out_of_range_values_are_refused_at_the_boundary():
    from orderflow_client.prices import size_from_text

    with pytest.raises(ValueError, match="out of range"):
        price_from_text("1e300")
    with pytest.raises(ValueError, match="out of range"):
        price_from_text("9000000.00")
    with pytest.raises(ValueError, match="out of range"):
        size_from_text("1e300")
    with pytest.raises(ValueError):
        size_from_text("-5")
    assert size_from_text("200") == 200 and size_from_text("200.0") == 200
