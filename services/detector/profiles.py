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
* **quoted spread** in tenths of a basis point, time-weighted; the VWAP.

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

import msgspec

from services.detector.quantiles import merge_counts, weighted_quantile

PROFILE_VERSION = 1
QUANTILE_GRID = (0.5, 0.9, 0.95, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9998, 0.9999)
"""Quantiles stored in a profile's summary (the thresholds use the exact ones)."""
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
    how much of the session the data covered.
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
      (median time-weighted quoted spread).
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
    symbol: str, sessions: list[DayStatistics], *, source: str, built_utc: str, profile_days: int
) -> SymbolProfile:
    """The profile of the last ``profile_days`` of ``sessions`` (any order; one per day, the latest kept)."""
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
