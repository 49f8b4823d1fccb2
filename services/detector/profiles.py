"""Liquidity profiles: what is normal for *this* stock, so "large" means large for it.

A profile is built from whole regular sessions of one symbol. Each session is
summed up as :class:`DayStatistics` by a
:class:`~services.detector.day_recorder.DayRecorder` that the rules engine
feeds with what it already computes (no second pass, no I/O):

* **aggressive sell order sizes** — the orders the tape rule rebuilds
  (:mod:`services.detector.tape`), counted by size in shares;
* **displayed offer sizes** — every ask level the source shows (NBBO: one),
  weighted by how long it was displayed (ns), so a busy quote stream does not
  outvote a quiet one;
* **volume per 5-minute bucket** from the open (prints that count toward
  bursts), the intraday volume curve;
* **quoted spread** in tenths of a basis point, time-weighted; the VWAP;
* **minute mids**: the price at the end of each minute from the open (mid of the NBBO or book; last trade price
  without quotes), from which :func:`minute_sigma_bps` and :func:`beta_to_index` read the stock's volatility and
  its beta to an index (market context and the exit cost rule, :mod:`services.detector.exit_cost`).

This module holds the profile itself: :func:`build_profile` merges the last
``profile_days`` sessions into a :class:`SymbolProfile` (exact weighted
quantiles, the mean curve), and :func:`encode_profile` /
:func:`decode_profile` store it as JSON. What the rules judge against is read
from a profile by :func:`services.detector.threshold_fit.thresholds_for`.

A sample profile summary (BAC, built from 2013-10-07)::

    {"symbol": "BAC", "days": ["2013-10-07"], "large_order_size": 97787,
     "offer_size": 194400, "daily_volume": 58989914, "spread_bps": 7.2, ...}
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

from services.detector.quantiles import merge_counts, weighted_quantile

PROFILE_VERSION = 1
QUANTILE_GRID = (0.5, 0.9, 0.95, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9998, 0.9999)
"""Quantiles stored in a profile's summary (the thresholds use the exact ones)."""
MIN_RETURNS = 10
"""Fewer one-minute returns than this estimate no volatility and no beta."""
FULL_SESSION_SECONDS = 5 * 3600
"""A session observed this long (of 6.5 h) counts toward the volume curve."""


class DayStatistics(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One regular session of one symbol. Sizes in shares, durations in ns.

    ``order_sizes`` maps an aggressive sell order's size to how many there
    were; ``offer_sizes`` a displayed ask size to the ns it was displayed;
    ``spread_tenth_bps`` a quoted spread (0.1 bp) to ns; ``burst_ratios`` the
    red-burst rule's volume ratio (tenths) to the seconds it read so (one reading
    a second with prints, once the baseline is full); ``bucket_volumes``
    the volume of each 5-minute bucket from the open; ``observed_seconds``
    how much of the session the data covered; ``minute_mids`` the price (nano-dollars) in force at the end of
    each minute from the open, 0 before the first (empty in profiles stored before it was recorded).
    """

    symbol: str
    day: str
    order_sizes: dict[int, int] = {}
    offer_sizes: dict[int, int] = {}
    spread_tenth_bps: dict[int, int] = {}
    bucket_volumes: tuple[int, ...] = ()
    burst_ratios: dict[int, int] = {}
    volume: int = 0
    vwap: int = 0
    observed_seconds: int = 0
    minute_mids: tuple[int, ...] = ()


class SymbolProfile(msgspec.Struct, frozen=True, kw_only=True):
    """What is normal for one symbol, from the sessions in ``days``.

    Stored as JSON under ``orderflow:profile:{SYM}``; ``version`` changes
    when the layout does. ``source`` says where the sessions came from
    (``files``, ``rest``, ``stream``); ``built_utc`` when it was built. The
    summary fields are derived from ``sessions`` (kept, so a later profile
    merges them exactly):

    * ``order_size_quantiles`` / ``offer_size_quantiles``: ``[q, shares]``
      at :data:`QUANTILE_GRID`;
    * ``volume_curve``: the mean fraction of a session's volume in each
      5-minute bucket from the open;
    * ``daily_volume`` (shares), ``vwap`` (nano-dollars), ``spread_bps``
      (median time-weighted quoted spread);
    * ``minute_sigma_bps``: the standard deviation of the one-minute return (bps; 0: fewer than
      :data:`MIN_RETURNS` minutes), :meth:`sigma_bps` scales it to any window (× √(seconds / 60));
    * ``beta`` to ``beta_index`` from the one-minute returns of the days both have (0.0: not known).

    Profiles stored before these fields decode with their defaults.
    """

    symbol: str
    version: int
    source: str
    built_utc: str
    first_day: str
    last_day: str
    days: tuple[str, ...]
    orders: int
    order_size_quantiles: tuple[tuple[float, int], ...]
    offer_size_quantiles: tuple[tuple[float, int], ...]
    volume_curve: tuple[float, ...]
    daily_volume: int
    vwap: int
    spread_bps: float
    sessions: tuple[DayStatistics, ...]
    minute_sigma_bps: float = 0.0
    beta: float = 0.0
    beta_index: str = ""

    def sigma_bps(self, seconds: float) -> float:
        """The standard deviation (bps) of the return over ``seconds``, from the one-minute one (0.0: unknown)."""
        return self.minute_sigma_bps * math.sqrt(seconds / 60)


_profile_encoder = msgspec.json.Encoder()
_profile_decoder = msgspec.json.Decoder(SymbolProfile)


class ProfileError(ValueError):
    """A stored profile that cannot be read (wrong version, bad JSON)."""

    code = "profile_unreadable"


def encode_profile(profile: SymbolProfile) -> bytes:
    return _profile_encoder.encode(profile)


def decode_profile(payload: bytes | str) -> SymbolProfile:
    """A profile from its JSON; :class:`ProfileError` when unreadable or of another version."""
    try:
        profile = _profile_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise ProfileError(f"unreadable profile: {error}") from None
    if profile.version != PROFILE_VERSION:
        raise ProfileError(f"profile version {profile.version}, this orderflow reads version {PROFILE_VERSION}")
    return profile


def build_profile(
    symbol: str,
    sessions: list[DayStatistics],
    *,
    source: str,
    built_utc: str,
    profile_days: int,
    index: str = "",
    index_sessions: Sequence[DayStatistics] = (),
) -> SymbolProfile:
    """The profile of the last ``profile_days`` of ``sessions`` (any order; one per day, the latest kept); its beta
    to ``index`` from ``index_sessions`` of the same days when given."""
    by_day = {session.day: session for session in sessions if session.symbol == symbol}
    if not by_day:
        raise ValueError(f"no session of {symbol} to build a profile from")
    chosen = [by_day[day] for day in sorted(by_day)[-profile_days:]]
    orders = merge_counts([session.order_sizes for session in chosen])
    offers = merge_counts([session.offer_sizes for session in chosen])
    spreads = merge_counts([session.spread_tenth_bps for session in chosen])
    volume = sum(session.volume for session in chosen)
    return SymbolProfile(
        symbol=symbol,
        version=PROFILE_VERSION,
        source=source,
        built_utc=built_utc,
        first_day=chosen[0].day,
        last_day=chosen[-1].day,
        days=tuple(session.day for session in chosen),
        orders=sum(orders.values()),
        order_size_quantiles=tuple((q, weighted_quantile(orders, q)) for q in QUANTILE_GRID),
        offer_size_quantiles=tuple((q, weighted_quantile(offers, q)) for q in QUANTILE_GRID),
        volume_curve=mean_volume_curve(chosen),
        daily_volume=volume // len(chosen),
        vwap=sum(session.vwap * session.volume for session in chosen) // volume if volume else 0,
        spread_bps=weighted_quantile(spreads, 0.5) / 10,
        sessions=tuple(chosen),
        minute_sigma_bps=round(minute_sigma_bps(chosen), 4),
        beta=round(beta_to_index(chosen, list(index_sessions)), 4) if index else 0.0,
        beta_index=index,
    )


def mean_volume_curve(sessions: list[DayStatistics]) -> tuple[float, ...]:
    """Mean fraction of the session's volume per 5-minute bucket, over sessions observed
    at least :data:`FULL_SESSION_SECONDS` (empty when none was)."""
    full = [session for session in sessions if session.observed_seconds >= FULL_SESSION_SECONDS and session.volume]
    if not full:
        return ()
    width = max(len(session.bucket_volumes) for session in full)
    curve = [0.0] * width
    for session in full:
        for index, volume in enumerate(session.bucket_volumes):
            curve[index] += volume / session.volume / len(full)
    return tuple(round(value, 6) for value in curve)


def minute_returns(mids: tuple[int, ...]) -> list[tuple[int, float]]:
    """``(minute, return in bps)`` for each minute whose mid and the previous minute's are both known."""
    return [
        (minute, (mids[minute] - mids[minute - 1]) * 1e4 / mids[minute - 1])
        for minute in range(1, len(mids))
        if mids[minute] > 0 and mids[minute - 1] > 0
    ]


def minute_sigma_bps(sessions: Sequence[DayStatistics]) -> float:
    """The sample standard deviation (bps) of the one-minute returns of ``sessions`` pooled; 0.0 with fewer than
    :data:`MIN_RETURNS`. A sample: a session whose mids alternate 100.00 and 100.10 gives about 10.0."""
    returns = [value for session in sessions for _minute, value in minute_returns(session.minute_mids)]
    if len(returns) < MIN_RETURNS:
        return 0.0
    mean = sum(returns) / len(returns)
    return math.sqrt(sum((value - mean) ** 2 for value in returns) / (len(returns) - 1))


def beta_to_index(sessions: Sequence[DayStatistics], index_sessions: Sequence[DayStatistics]) -> float:
    """The beta of the one-minute returns of ``sessions`` to those of ``index_sessions`` over the minutes of the
    same day that both know: cov / var(index); 0.0 (not known) with fewer than :data:`MIN_RETURNS` pairs or an
    index that did not move."""
    index_by_day = {session.day: dict(minute_returns(session.minute_mids)) for session in index_sessions}
    pairs = [
        (value, index_returns[minute])
        for session in sessions
        if (index_returns := index_by_day.get(session.day))
        for minute, value in minute_returns(session.minute_mids)
        if minute in index_returns
    ]
    if len(pairs) < MIN_RETURNS:
        return 0.0
    stock_mean = sum(stock for stock, _index in pairs) / len(pairs)
    index_mean = sum(index for _stock, index in pairs) / len(pairs)
    covariance = sum((stock - stock_mean) * (index - index_mean) for stock, index in pairs)
    variance = sum((index - index_mean) ** 2 for _stock, index in pairs)
    return covariance / variance if variance > 0 else 0.0
