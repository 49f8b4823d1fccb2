"""Exact prices: integer nano-dollars.

A price of $187.43 is ``187_430_000_000``. Vendors send floats (Polygon
JSON), decimal strings (CSV) or scaled integers (LOBSTER: dollars × 10,000);
each is converted exactly once, at the vendor boundary.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

PRICE_SCALE = 1_000_000_000
"""Nano-dollars per dollar."""


EXACT_FLOAT_LIMIT = 2**23
"""Below this many dollars a float is within half a nano-dollar of the decimal
it was printed from, so :func:`price_from_float` recovers it exactly."""


def price_from_float(dollars: float) -> int:
    """From a vendor float (Polygon JSON). Exact for every price below
    ``EXACT_FLOAT_LIMIT`` ($8,388,608) with at most 9 decimals: the whole
    dollars convert exactly and only the fraction is rounded."""
    whole = int(dollars)
    return whole * PRICE_SCALE + round((dollars - whole) * PRICE_SCALE)


def price_from_text(text: str) -> int:
    """From a decimal string such as ``"187.43"``; raises ValueError if not a number."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a price: {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a price: {text!r}")
    return int((value * PRICE_SCALE).to_integral_value())


def price_from_scaled(value: int, scale: int) -> int:
    """From an integer in 1/scale dollars, e.g. LOBSTER's ``price`` with scale 10,000."""
    if PRICE_SCALE % scale:
        raise ValueError(f"scale {scale} does not divide {PRICE_SCALE}")
    return value * (PRICE_SCALE // scale)


def price_to_float(price: int) -> float:
    """For display and ratios only, never for comparisons."""
    return price / PRICE_SCALE


def format_price(price: int) -> str:
    """``187430000000`` → ``"187.43"`` (at least 2 decimals, trailing zeros cut)."""
    sign = "-" if price < 0 else ""
    dollars, nanos = divmod(abs(price), PRICE_SCALE)
    fraction = f"{nanos:09d}".rstrip("0").ljust(2, "0")
    return f"{sign}{dollars}.{fraction}"
