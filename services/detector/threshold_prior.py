"""The first-day prior: what a stock with no history starts from, fitted across stocks.

A stock seen for the first time has no profile; its own first minutes are too few to read a 0.999 quantile
from. The prior says what such a stock's thresholds probably are from one feature its first minutes do know:
its **expected regular-session volume** (shares, as the feed counts them), estimated from the volume so far
divided by the share of a day's volume a typical intraday curve puts before this minute. The model::

    large order  = volume_fraction × expected volume        (at least the share and notional floors)
    large offer  = offer_multiple × large order
    burst ratio  = burst_ratio

fitted on whole sessions of several stocks (``python -m bench.first_day_prior``): ``volume_fraction`` is the
geometric mean over stocks of (the profile's large-order size / the day's volume), ``offer_multiple`` of
(large offer / large order), ``burst_ratio`` of the profile's burst ratio. On the shared days the large order
is 0.095 % (AIG 2013-10-08) to 0.28 % (AMZN 2012-06-21) of the day's volume — a $14 stock and a $580 one
alike — while the price alone leaves it anywhere between $0.36 M and $1.8 M of notional (a model with the
price, or a free volume exponent, predicts the held-out stock worse: see docs/cold-start.md).

A sample prior (the bundled one, ``shared/data/first_day_prior.json``)::

    {"volume_fraction": 0.0015024, "offer_multiple": 1.323, "burst_ratio": 5.96, "volume_curve": [0.024372, ...],
     "days": ["AMZN 2012-06-21", "AAPL 2012-06-21", "AIG 2013-10-07", ...], "rms_error": 0.45, ...}
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from importlib import resources

import msgspec

from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from services.detector.volume_curve import BUCKET_SECONDS

PRIOR_MIN_SECONDS = 60
"""Regular-session seconds (and some volume) before the expected day's volume is estimated."""
MIN_CURVE_FRACTION = 0.002
"""The cumulative curve is read no lower than this (the first seconds of the open would divide by ~0)."""


class HeldOut(msgspec.Struct, frozen=True, kw_only=True):
    """One stock left out of the fit: the prior fitted without it, and how far off it is on its days.

    ``errors`` are ln(predicted / actual large order) per day (0.69: twice too high)."""

    symbol: str
    volume_fraction: float
    offer_multiple: float
    burst_ratio: float
    errors: dict[str, float]


class FirstDayPrior(msgspec.Struct, frozen=True, kw_only=True):
    """The prior's parameters and where they came from (see the module docstring).

    ``volume_curve`` is the mean fraction of a day's volume per 5-minute bucket from the open (the days
    it was fitted on); ``days`` the stock-days of the fit (``"AIG 2013-10-07"``); ``held_out`` each
    stock's leave-one-stock-out fit and error; ``rms_error`` their root mean square (ln)."""

    volume_fraction: float
    offer_multiple: float
    burst_ratio: float
    volume_curve: tuple[float, ...]
    days: tuple[str, ...] = ()
    held_out: tuple[HeldOut, ...] = ()
    rms_error: float = 0.0
    quantile: float = 0.999

    def expected_volume(self, volume: int, from_ns: int, to_ns: int) -> int:
        """The regular session's expected volume (shares) after ``volume`` shares traded between ``from_ns``
        and ``to_ns`` after the open (a feed may start mid-session); 0 before :data:`PRIOR_MIN_SECONDS` or
        any volume.

        >>> FirstDayPrior(volume_fraction=0.001, offer_multiple=1.0, burst_ratio=5.0,
        ...               volume_curve=(0.1, 0.1)).expected_volume(50_000, 0, 150 * 10**9)
        1000000
        """
        if to_ns - from_ns < PRIOR_MIN_SECONDS * NANOSECONDS_PER_SECOND or volume <= 0 or not self.volume_curve:
            return 0
        fraction = self.curve_fraction(to_ns) - self.curve_fraction(from_ns)
        return round(volume / max(fraction, MIN_CURVE_FRACTION))

    def curve_fraction(self, elapsed_ns: int) -> float:
        """The share of a day's volume the curve puts in the first ``elapsed_ns`` of the regular session."""
        bucket_ns = BUCKET_SECONDS * NANOSECONDS_PER_SECOND
        full, partial = divmod(max(elapsed_ns, 0), bucket_ns)
        curve = self.volume_curve
        fraction = sum(curve[: int(full)])
        if full < len(curve):
            fraction += curve[int(full)] * partial / bucket_ns
        return min(fraction, 1.0)

    def large_order_size(self, expected_volume: int) -> int:
        """Shares: ``volume_fraction`` of the expected volume (floors are the caller's)."""
        return max(1, round(self.volume_fraction * expected_volume))

    def offer_size(self, large_order_size: int) -> int:
        return max(large_order_size, round(self.offer_multiple * large_order_size))


class PriorSample(msgspec.Struct, frozen=True, kw_only=True):
    """One stock-day to fit on: its volume (shares), its profile's large order and offer (shares) and burst
    ratio (0: unknown), and its volume curve (fractions per 5-minute bucket)."""

    symbol: str
    day: str
    volume: int
    large_order_size: int
    offer_size: int
    burst_ratio: float
    volume_curve: tuple[float, ...] = ()


def _stock_mean(values: dict[str, list[float]]) -> float:
    """The mean over stocks of each stock's mean (every stock counts once, however many days it has)."""
    means = [sum(day_values) / len(day_values) for day_values in values.values() if day_values]
    return sum(means) / len(means) if means else 0.0


def _by_stock(samples: list[PriorSample], value: Callable[[PriorSample], float | None]) -> dict[str, list[float]]:
    grouped: dict[str, list[float]] = {}
    for sample in samples:
        reading = value(sample)
        if reading is not None:
            grouped.setdefault(sample.symbol, []).append(reading)
    return grouped


def fit_prior(samples: list[PriorSample], *, quantile: float = 0.999) -> FirstDayPrior:
    """The prior of ``samples`` (geometric means over stocks; see the module docstring), with each stock's
    leave-one-stock-out fit and error when there are at least two stocks."""
    core = _fit_core(samples, quantile)
    stocks = sorted({sample.symbol for sample in samples})
    held_out: list[HeldOut] = []
    if len(stocks) > 1:
        for symbol in stocks:
            others = _fit_core([sample for sample in samples if sample.symbol != symbol], quantile)
            errors = {
                sample.day: round(math.log(others.large_order_size(sample.volume) / sample.large_order_size), 3)
                for sample in samples
                if sample.symbol == symbol
            }
            held_out.append(
                HeldOut(
                    symbol=symbol,
                    volume_fraction=others.volume_fraction,
                    offer_multiple=others.offer_multiple,
                    burst_ratio=others.burst_ratio,
                    errors=errors,
                )
            )
    squares = [error * error for entry in held_out for error in entry.errors.values()]
    rms = math.sqrt(sum(squares) / len(squares)) if squares else 0.0
    return msgspec.structs.replace(core, held_out=tuple(held_out), rms_error=round(rms, 3))


def _fit_core(samples: list[PriorSample], quantile: float) -> FirstDayPrior:
    if not samples:
        raise ValueError("no stock-day to fit a first-day prior on")
    fraction = _stock_mean(_by_stock(samples, lambda s: math.log(s.large_order_size / s.volume)))
    offer = _stock_mean(_by_stock(samples, lambda s: math.log(s.offer_size / s.large_order_size)))
    bursts = _by_stock(samples, lambda s: math.log(s.burst_ratio) if s.burst_ratio > 0 else None)
    curves = [sample.volume_curve for sample in samples if sample.volume_curve]
    width = max((len(curve) for curve in curves), default=0)
    curve = tuple(
        round(sum(curve[index] for curve in curves if index < len(curve)) / len(curves), 6) for index in range(width)
    )
    return FirstDayPrior(
        volume_fraction=round(math.exp(fraction), 7),
        offer_multiple=round(math.exp(offer), 3),
        burst_ratio=round(math.exp(_stock_mean(bursts)), 2) if bursts else 0.0,
        volume_curve=curve,
        days=tuple(f"{sample.symbol} {sample.day}" for sample in samples),
        quantile=quantile,
    )


def held_out_prior(prior: FirstDayPrior, symbol: str) -> FirstDayPrior:
    """The prior as fitted without ``symbol`` (its :class:`HeldOut` entry); ``prior`` itself when absent."""
    for entry in prior.held_out:
        if entry.symbol == symbol:
            return msgspec.structs.replace(
                prior,
                volume_fraction=entry.volume_fraction,
                offer_multiple=entry.offer_multiple,
                burst_ratio=entry.burst_ratio,
                days=tuple(day for day in prior.days if not day.startswith(f"{symbol} ")),
                held_out=(),
            )
    return prior


_prior_encoder = msgspec.json.Encoder()


def encode_prior(prior: FirstDayPrior) -> bytes:
    return msgspec.json.format(_prior_encoder.encode(prior), indent=1) + b"\n"


def decode_prior(payload: bytes | str) -> FirstDayPrior:
    """A prior from its JSON (:class:`msgspec.DecodeError` / :class:`msgspec.ValidationError` when unreadable)."""
    return msgspec.json.decode(payload, type=FirstDayPrior)


PRIOR_RESOURCE = "data/first_day_prior.json"
"""The bundled prior, inside the ``shared`` package (written by ``python -m bench.first_day_prior --write``)."""


@functools.cache
def bundled_prior() -> FirstDayPrior | None:
    """The prior shipped with orderflow; None when the package holds none."""
    resource = resources.files("shared").joinpath(PRIOR_RESOURCE)
    if not resource.is_file():
        return None
    return decode_prior(resource.read_bytes())
