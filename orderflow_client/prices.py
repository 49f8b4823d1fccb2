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
    """From a decimal string such as ``"187.43"``; raises ValueError if not a number.

    Plain decimals (digits, one optional dot, optional sign) take a fast
    integer path; anything else (exponents) goes through ``Decimal``.
    """
    whole, _, fraction = text.partition(".")
    digits = whole.lstrip("-+")
    if (
        digits.isdigit()
        and len(fraction) <= 9
        and (not fraction or fraction.isdigit())
        and len(whole) - len(digits) <= 1
    ):
        value = int(digits) * PRICE_SCALE + (int(fraction.ljust(9, "0")) if fraction else 0)
        return checked_price(-value if whole.startswith("-") else value)
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a price: {text!r}") from None
    if not number.is_finite():
        raise ValueError(f"not a price: {text!r}")
    return checked_price(int((number * PRICE_SCALE).to_integral_value()))


MAX_PRICE = EXACT_FLOAT_LIMIT * PRICE_SCALE
"""Largest price magnitude orderflow carries (nano-dollars, exclusive)."""

MAX_SIZE = 2**53
"""Largest size in shares orderflow carries (exclusive)."""


def fits_price(dollars: float) -> bool:
    """A vendor float within the range :func:`price_from_float` converts exactly."""
    return -EXACT_FLOAT_LIMIT < dollars < EXACT_FLOAT_LIMIT


def fits_size(size: float) -> bool:
    """A size orderflow carries: whole shares from 0 up to ``MAX_SIZE`` (exclusive)."""
    return 0 <= size < MAX_SIZE


def checked_price(price: int) -> int:
    """``price`` if it is within ±MAX_PRICE, else ValueError."""
    if not -MAX_PRICE < price < MAX_PRICE:
        raise ValueError(f"price out of range: {price} nano-dollars")
    return price


def size_from_text(text: str) -> int:
    """Whole shares from ``"200"`` or ``"200.0"``; ValueError when not a size."""
    size = int(text) if text.isdigit() else int(float(text))
    if not fits_size(size):
        raise ValueError(f"size out of range: {text!r}")
    return size


def price_from_scaled(value: int, scale: int) -> int:
    """From an integer in 1/scale dollars, e.g. LOBSTER's ``price`` with scale 10,000."""
    if PRICE_SCALE % scale:
        raise ValueError(f"scale {scale} does not divide {PRICE_SCALE}")
    return checked_price(value * (PRICE_SCALE // scale))


class NanoDollars(int):
    """A price already in nano-dollars, said explicitly: ``NanoDollars(187_430_000_000)`` is $187.43. A bare
    ``int`` is refused where people pass prices, because 221 could mean dollars or nano-dollars."""


def price_from_any(value: object, *, what: str = "price") -> int:
    """A price a person or a bot passes, in nano-dollars: ``Decimal("221.00")``, ``221.0`` (a float: the decimal it
    prints as, so 49.34 is exactly 49.34), ``"221.00"`` or :class:`NanoDollars`. Anything else — a bare ``int``,
    ``bool``, NaN, infinity, an out-of-range value — is a ``TypeError``/``ValueError`` naming ``what``.

    >>> price_from_any(Decimal("221.00")), price_from_any(49.34), price_from_any(NanoDollars(5))
    (221000000000, 49340000000, 5)
    """
    if isinstance(value, NanoDollars):
        return checked_price(int(value))
    if isinstance(value, (bool, int)):
        raise TypeError(
            f"{what}: a bare int is ambiguous (dollars or nano-dollars?): pass Decimal, float or str dollars, "
            f"or NanoDollars({value})"
        )
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or not fits_price(value):
            raise ValueError(f"{what}: not a price: {value!r}")
        return price_from_text(repr(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{what}: not a price: {value!r}")
        return checked_price(int((value * PRICE_SCALE).to_integral_value()))
    if isinstance(value, str):
        return price_from_text(value.strip())
    raise TypeError(f"{what}: expected Decimal, float, str or NanoDollars, got {type(value).__name__}")


def tick_size(price: int) -> int:
    """The minimum price increment (nano-dollars) US equities quote at ``price`` (SEC Rule 612): a penny at
    $1.00 and above, $0.0001 below."""
    return PRICE_SCALE // 100 if price >= PRICE_SCALE else PRICE_SCALE // 10_000


def round_to_tick(price: int, *, down: bool) -> int:
    """``price`` on a valid tick: rounded down (a long's stop) or up (a short's), never past it the other way."""
    tick = tick_size(price)
    below = price - price % tick
    if down or below == price:
        return below
    return below + tick


def price_to_float(price: int) -> float:
    """For display and ratios only, never for comparisons."""
    return price / PRICE_SCALE


def format_price(price: int) -> str:
    """``187430000000`` → ``"187.43"`` (at least 2 decimals, trailing zeros cut)."""
    sign = "-" if price < 0 else ""
    dollars, nanos = divmod(abs(price), PRICE_SCALE)
    fraction = f"{nanos:09d}".rstrip("0").ljust(2, "0")
    return f"{sign}{dollars}.{fraction}"
