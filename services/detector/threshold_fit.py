"""Fitting a symbol's thresholds to its own statistics (the adaptive mode).

:func:`thresholds_for` turns a :class:`~services.detector.profiles.SymbolProfile`
and the settings into the :class:`Thresholds` the rules use;
:func:`fit_thresholds` does the same from raw counters (a profile's, or the
session so far while a day with no history calibrates itself):

* large order = the ``large_order_quantile`` (default 0.999) of aggressive
  sell order sizes, at least ``adaptive_min_large_order_size`` shares and
  ``adaptive_min_large_order_notional`` dollars: about one order in a
  thousand is a large seller, on a $14 stock or a $570 one;
* large resting offer = the ``offer_size_quantile`` (0.999) of displayed ask
  sizes, at least the large order: an offer displayed less than 0.1 % of the
  time;
* burst ratio = the ``burst_ratio_quantile`` (0.995) of the red-burst rule's
  own readings (the setting's ratio stays the floor);
* the volume curve (:class:`~services.detector.volume_curve.VolumeCurve`): a
  red burst's spike window is compared with its trailing baseline *scaled by
  the curve* (what the stock normally trades at this time of day relative to
  the minutes before), so the ramp into the close is not a burst.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from services.detector.day_recorder import RATIO_RESOLUTION
from services.detector.profiles import SymbolProfile
from services.detector.quantiles import merge_counts, tail_quantile, weighted_quantile
from services.detector.threshold_prior import FirstDayPrior
from services.detector.volume_curve import VolumeCurve


@dataclass(frozen=True)
class Thresholds:
    """What the rules of one symbol judge against. Shares; ``source`` names where they came from:
    ``absolute`` (the settings), ``override`` (a per-symbol override), ``profile`` (history),
    ``session_start`` (the first minutes of this session), ``first_day_prior`` (a prior fitted across stocks,
    alone or blended with the session's own fit; :mod:`~services.detector.threshold_prior`). ``days`` names
    the sessions they were fitted on (``2013-10-07`` or ``2013-10-07..2013-10-11``; empty for the settings)."""

    large_order_size: int
    offer_size: int
    source: str
    days: str = ""
    curve: VolumeCurve | None = None
    burst_ratio: float = 0.0
    """The ``burst_ratio_quantile`` of the symbol's own burst ratio readings (0: none known)."""


@dataclass(frozen=True)
class FitRules:
    """How thresholds are read from a symbol's statistics (the adaptive settings)."""

    large_order_quantile: float = 0.999
    offer_size_quantile: float = 0.999
    burst_ratio_quantile: float = 0.995
    min_size: int = 1_000
    min_notional_dollars: float = 100_000.0
    first_day_prior: bool = True
    """A day with no history starts from the first-day prior (``first_day_thresholds = "prior"``)."""


def fit_thresholds(
    rules: FitRules,
    orders: dict[int, int],
    offers: dict[int, int],
    ratios: dict[int, int],
    vwap: int,
    *,
    source: str,
    days: str,
    curve: VolumeCurve | None = None,
    confidence: float = 0.0,
    offer_unit_ns: int = NANOSECONDS_PER_SECOND,
) -> Thresholds:
    """Thresholds from count-weighted order sizes, time-weighted offer sizes (ns displayed) and burst
    ratio readings (tenths); ``vwap`` in nano-dollars.

    With ``confidence`` the order size, offer size and burst ratio are the upper bounds of their
    quantiles (see :func:`~services.detector.quantiles.tail_quantile`), an offer displayed for
    ``offer_unit_ns`` counting as one observation.
    An empty ``offers`` leaves the offer threshold at the large order; fewer than ``1 / (1 − q)``
    ratio readings leave the burst ratio unknown (0)."""
    notional_floor = math.ceil(rules.min_notional_dollars * NANOSECONDS_PER_SECOND / vwap) if vwap else 0
    large = max(tail_quantile(orders, rules.large_order_quantile, confidence), rules.min_size, notional_floor)
    if confidence and offers:
        displays = {size: displayed / offer_unit_ns for size, displayed in offers.items()}
        offer = max(tail_quantile(displays, rules.offer_size_quantile, confidence), large)
    else:
        offer = max(weighted_quantile(offers, rules.offer_size_quantile), large)
    enough_readings = sum(ratios.values()) * (1 - rules.burst_ratio_quantile) >= 1
    burst = tail_quantile(ratios, rules.burst_ratio_quantile, confidence) / RATIO_RESOLUTION if enough_readings else 0.0
    return Thresholds(
        large_order_size=large, offer_size=offer, source=source, days=days, curve=curve, burst_ratio=burst
    )


def thresholds_for(profile: SymbolProfile, rules: FitRules, *, source: str, open_ns: int | None) -> Thresholds:
    """The adaptive thresholds of ``profile`` (see the module docstring); the curve anchored at ``open_ns``."""
    sessions = profile.sessions
    curve = VolumeCurve(profile.volume_curve, open_ns) if profile.volume_curve and open_ns is not None else None
    days = profile.first_day if profile.first_day == profile.last_day else f"{profile.first_day}..{profile.last_day}"
    return fit_thresholds(
        rules,
        merge_counts(session.order_sizes for session in sessions),
        merge_counts(session.offer_sizes for session in sessions),
        merge_counts(session.burst_ratios for session in sessions),
        profile.vwap,
        source=source,
        days=days,
        curve=curve,
    )


def prior_thresholds(
    rules: FitRules, prior: FirstDayPrior, expected_volume: int, vwap: int, *, days: str
) -> Thresholds:
    """The first-day prior's thresholds for a day expected to trade ``expected_volume`` shares at ``vwap``
    (nano-dollars), with the share and notional floors of :func:`fit_thresholds`."""
    notional_floor = math.ceil(rules.min_notional_dollars * NANOSECONDS_PER_SECOND / vwap) if vwap else 0
    large = max(prior.large_order_size(expected_volume), rules.min_size, notional_floor)
    return Thresholds(large, prior.offer_size(large), "first_day_prior", days, None, prior.burst_ratio)


def blend_thresholds(prior: Thresholds, session: Thresholds | None, weight: float) -> Thresholds:
    """The prior moved toward the session's own fit: sizes geometrically, the burst ratio linearly, by
    ``weight`` (0: the prior, 1: the session's fit). A burst ratio the session does not know yet (0) is the
    prior's.

    >>> blend_thresholds(Thresholds(4_000, 5_000, "first_day_prior", burst_ratio=6.0),
    ...                  Thresholds(16_000, 16_000, "session_start", "2012-06-21"), 0.5).large_order_size
    8000
    """
    if session is None or weight <= 0:
        return prior
    if weight >= 1:
        return session

    def between(a: int, b: int) -> int:
        return round(math.exp((1 - weight) * math.log(a) + weight * math.log(b)))

    large = between(prior.large_order_size, session.large_order_size)
    burst = session.burst_ratio and (1 - weight) * prior.burst_ratio + weight * session.burst_ratio
    return Thresholds(
        large,
        max(between(prior.offer_size, session.offer_size), large),
        "first_day_prior",
        session.days,
        None,
        round(burst or prior.burst_ratio, 2),
    )
