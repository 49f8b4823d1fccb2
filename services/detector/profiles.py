"""Liquidity profiles: what is normal for *this* stock, so "large" means large for it.

A profile is built from whole regular sessions of one symbol. Each session is
summed up as :class:`DayStatistics` by a :class:`DayRecorder` that the rules
engine feeds with what it already computes (no second pass, no I/O):

* **aggressive sell order sizes** — the orders the tape rule rebuilds
  (:mod:`services.detector.tape`), counted by size in shares;
* **displayed offer sizes** — every ask level the source shows (NBBO: one),
  weighted by how long it was displayed (ns), so a busy quote stream does not
  outvote a quiet one;
* **volume per 5-minute bucket** from the open (prints that count toward
  bursts), the intraday volume curve;
* **quoted spread** in tenths of a basis point, time-weighted; the VWAP.

:func:`build_profile` merges the last ``profile_days`` sessions into a
:class:`SymbolProfile` (exact weighted quantiles, the mean curve) and
:func:`thresholds_for` turns a profile and the settings into the
:class:`Thresholds` the rules use:

* large order = the ``large_order_quantile`` (default 0.999) of aggressive
  sell order sizes, at least ``adaptive_min_large_order_size`` shares and
  ``adaptive_min_large_order_notional`` dollars: about one order in a
  thousand is a large seller, on a $14 stock or a $570 one;
* large resting offer = the ``offer_size_quantile`` (0.999) of displayed ask
  sizes, at least the large order: an offer displayed less than 0.1 % of the
  time;
* the volume curve: a red burst's spike window is compared with its
  trailing baseline *scaled by the curve* (what the stock normally trades at
  this time of day relative to the minutes before), so the ramp into the
  close is not a burst.

A sample profile summary (BAC, built from 2013-10-07)::

    {"symbol": "BAC", "days": ["2013-10-07"], "large_order_size": 97787,
     "offer_size": 194400, "daily_volume": 58989914, "spread_bps": 7.2, ...}
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import msgspec

from orderflow_client.timestamps import NANOSECONDS_PER_SECOND

PROFILE_VERSION = 1
BUCKET_SECONDS = 300
"""Width of one intraday volume bucket (5 minutes)."""
QUANTILE_GRID = (0.5, 0.9, 0.95, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9998, 0.9999)
"""Quantiles stored in a profile's summary (the thresholds use the exact ones)."""
FULL_SESSION_SECONDS = 5 * 3600
"""A session observed this long (of 6.5 h) counts toward the volume curve."""
CURVE_FACTOR_BOUNDS = (1.0, 4.0)
"""The curve may raise a trailing baseline up to 4× and never lowers it: the time of day can explain
volume away, never invent a burst (a one-day curve is noisy)."""
RATIO_RESOLUTION = 10
"""Burst ratio readings are kept in tenths."""


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


# --- recording one session ---------------------------------------------------------


class DayRecorder:
    """Sums up one regular session of one symbol while the rules run.

    The engine calls :meth:`order`, :meth:`quote`, :meth:`book`,
    :meth:`volume` and :meth:`burst_ratio`; :meth:`statistics` returns the
    session so far.
    """

    __slots__ = (
        "_offer_levels",
        "_offer_ts",
        "_spread",
        "_spread_ts",
        "buckets",
        "day",
        "first_ns",
        "last_ns",
        "notional",
        "offer_sizes",
        "open_ns",
        "order_sizes",
        "ratios",
        "spreads",
        "symbol",
        "volume_total",
    )

    def __init__(self, symbol: str, day: str, open_ns: int) -> None:
        self.symbol = symbol
        self.day = day
        self.open_ns = open_ns
        self.order_sizes: dict[int, int] = {}
        self.offer_sizes: dict[int, int] = {}
        self.spreads: dict[int, int] = {}
        self.ratios: dict[int, int] = {}
        self.buckets: list[int] = []
        self.volume_total = 0
        self.notional = 0
        self.first_ns = self.last_ns = 0
        self._offer_ts = 0
        self._offer_levels: tuple[tuple[int, int], ...] = ()
        self._spread_ts = 0
        self._spread = -1

    def _seen(self, ts: int) -> None:
        if not self.first_ns:
            self.first_ns = ts
        self.last_ns = ts

    def order(self, size: int) -> None:
        """A completed aggressive sell order of ``size`` shares."""
        self.order_sizes[size] = self.order_sizes.get(size, 0) + 1

    def quote(self, ts: int, bid: int, ask: int, ask_size: int) -> None:
        """An NBBO from ``ts`` on (nano-dollar prices, size in shares)."""
        self._offers(ts, ((ask, ask_size),) if ask > 0 else ())
        self._spread_from(ts, bid, ask)

    def book(self, ts: int, bids: tuple[tuple[int, int], ...], asks: tuple[tuple[int, int], ...]) -> None:
        """A depth book from ``ts`` on: every ask level counts toward the displayed sizes."""
        self._offers(ts, asks)
        self._spread_from(ts, bids[0][0] if bids else 0, asks[0][0] if asks else 0)

    def _offers(self, ts: int, levels: tuple[tuple[int, int], ...]) -> None:
        """The previous ask levels are credited with the time they were displayed."""
        if self._offer_ts:
            elapsed = ts - self._offer_ts
            if elapsed > 0:
                book = self.offer_sizes
                for _price, size in self._offer_levels:
                    book[size] = book.get(size, 0) + elapsed
        self._offer_ts = ts
        self._offer_levels = levels
        self._seen(ts)

    def _spread_from(self, ts: int, bid: int, ask: int) -> None:
        """The quoted spread from ``ts`` on (ignored while a side is empty or the market crossed)."""
        if self._spread >= 0 and ts > self._spread_ts:
            self.spreads[self._spread] = self.spreads.get(self._spread, 0) + ts - self._spread_ts
        self._spread_ts = ts
        self._spread = (ask - bid) * 200_000 // (ask + bid) if 0 < bid <= ask else -1

    def burst_ratio(self, ratio: float) -> None:
        """One second's red-burst volume ratio."""
        key = int(ratio * RATIO_RESOLUTION)
        self.ratios[key] = self.ratios.get(key, 0) + 1

    def volume(self, ts: int, price: int, size: int) -> None:
        """A print that counts toward volume."""
        bucket = max(0, (ts - self.open_ns) // (BUCKET_SECONDS * NANOSECONDS_PER_SECOND))
        buckets = self.buckets
        while len(buckets) <= bucket:
            buckets.append(0)
        buckets[bucket] += size
        self.volume_total += size
        self.notional += price * size
        self._seen(ts)

    @property
    def vwap(self) -> int:
        """Volume-weighted average price so far (nano-dollars; 0 before any print)."""
        return self.notional // self.volume_total if self.volume_total else 0

    def statistics(self) -> DayStatistics:
        return DayStatistics(
            symbol=self.symbol,
            day=self.day,
            order_sizes=dict(self.order_sizes),
            offer_sizes=dict(self.offer_sizes),
            spread_tenth_bps=dict(self.spreads),
            bucket_volumes=tuple(self.buckets),
            burst_ratios=dict(self.ratios),
            volume=self.volume_total,
            vwap=self.vwap,
            observed_seconds=max(0, (self.last_ns - self.first_ns) // NANOSECONDS_PER_SECOND),
        )


# --- building a profile --------------------------------------------------------------


def weighted_quantile(weights: dict[int, int], q: float) -> int:
    """The smallest value whose cumulative weight reaches ``q`` of the total (0 when empty).

    >>> weighted_quantile({100: 8, 500: 1, 9000: 1}, 0.9)
    500
    """
    total = sum(weights.values())
    if not total:
        return 0
    target = q * total
    running = 0
    for value in sorted(weights):
        running += weights[value]
        if running >= target:
            return value
    return max(weights)


def tail_quantile(weights: dict[int, int], q: float, confidence: float = 0.0) -> int:
    """The ``q`` quantile of a count-weighted sample, extrapolated when the sample is too small to hold it;
    with ``confidence`` (e.g. 0.95), the upper bound of that estimate at this one-sided confidence.

    With at least ``1 / (1 − q)`` observations (1,000 for 0.999) this is :func:`weighted_quantile`; its
    upper bound is the order statistic at rank ``n·q + z·√(n·q·(1 − q))`` (the binomial count of
    observations below the true quantile). With fewer, the empirical quantile is just the sample's
    maximum, and taking it as the threshold makes every new maximum an alert; the quantile is then read
    from a log-normal fitted to the sample (order sizes are roughly log-normal: on the shared days it
    predicts the 0.999 quantile within −2 % (AMZN) to +40 % (BAC) from the median and 0.99 quantile),
    never below the sample's maximum. Its upper bound adds ``z`` standard errors of the log-quantile
    ``m + z_q·s``: ``s·√(1/n + z_q²/(2(n − 1)))``.

    >>> tail_quantile({100: 990, 900: 9, 5000: 1}, 0.999), tail_quantile({100: 990, 900: 9, 5000: 1}, 0.999, 0.95)
    (900, 5000)
    >>> tail_quantile({100: 30, 200: 15, 400: 5}, 0.99), tail_quantile({100: 30, 200: 15, 400: 5}, 0.99, 0.95)
    (422, 522)
    """
    total = sum(weights.values())
    z_confidence = statistics.NormalDist().inv_cdf(confidence) if confidence else 0.0
    if total * (1 - q) >= 1 or total < 2:
        if not total:
            return 0
        rank = min(total, q * total + z_confidence * math.sqrt(total * q * (1 - q)))
        return weighted_quantile(weights, rank / total)
    mean = sum(math.log(value) * count for value, count in weights.items() if value > 0) / total
    variance = sum((math.log(value) - mean) ** 2 * count for value, count in weights.items() if value > 0) / (total - 1)
    z = statistics.NormalDist().inv_cdf(q)
    standard_error = math.sqrt(variance * (1 / total + z * z / (2 * (total - 1))))
    fitted = math.exp(mean + z * math.sqrt(variance) + z_confidence * standard_error)
    return max(max(weights), math.ceil(fitted))


def _merge(counters: list[dict[int, int]]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for counter in counters:
        for value, weight in counter.items():
            merged[value] = merged.get(value, 0) + weight
    return merged


def build_profile(
    symbol: str, sessions: list[DayStatistics], *, source: str, built_utc: str, profile_days: int
) -> SymbolProfile:
    """The profile of the last ``profile_days`` of ``sessions`` (any order; one per day, the latest kept)."""
    by_day = {session.day: session for session in sessions if session.symbol == symbol}
    if not by_day:
        raise ValueError(f"no session of {symbol} to build a profile from")
    chosen = [by_day[day] for day in sorted(by_day)[-profile_days:]]
    orders = _merge([session.order_sizes for session in chosen])
    offers = _merge([session.offer_sizes for session in chosen])
    spreads = _merge([session.spread_tenth_bps for session in chosen])
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
        volume_curve=volume_curve(chosen),
        daily_volume=volume // len(chosen),
        vwap=sum(session.vwap * session.volume for session in chosen) // volume if volume else 0,
        spread_bps=weighted_quantile(spreads, 0.5) / 10,
        sessions=tuple(chosen),
    )


def volume_curve(sessions: list[DayStatistics]) -> tuple[float, ...]:
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


# --- thresholds ------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """What the rules of one symbol judge against. Shares; ``source`` names where they came from:
    ``absolute`` (the settings), ``override`` (a per-symbol override), ``profile`` (history),
    ``session_start`` (the first minutes of this session)."""

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
    ratio readings.

    With ``confidence`` the order size, offer size and burst ratio are the upper bounds of their
    quantiles (see :func:`tail_quantile`), an offer displayed for ``offer_unit_ns`` counting as one
    observation.
    An empty ``offers`` leaves the offer threshold at the large order; fewer than ``1 / (1 − q)``
    ratio readings leave the burst ratio unknown (0)."""
    notional_floor = math.ceil(rules.min_notional_dollars * NANOSECONDS_PER_SECOND / vwap) if vwap else 0
    large = max(tail_quantile(orders, rules.large_order_quantile, confidence), rules.min_size, notional_floor)
    if confidence and offers:
        displays = {size: displayed / offer_unit_ns for size, displayed in offers.items()}
        offer = max(tail_quantile(displays, rules.offer_size_quantile, confidence), large)  # type: ignore[arg-type]
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
        _merge([s.order_sizes for s in sessions]),
        _merge([s.offer_sizes for s in sessions]),
        _merge([s.burst_ratios for s in sessions]),
        profile.vwap,
        source=source,
        days=days,
        curve=curve,
    )


class VolumeCurve:
    """The intraday volume curve of one session day, anchored at its open.

    :meth:`factor` is how much more volume per second the stock normally
    trades in the spike window ``(t − spike, t]`` than in the baseline before
    it: the trailing baseline times this factor is what the spike window
    should hold on a normal day. Bounded by :data:`CURVE_FACTOR_BOUNDS`.
    """

    __slots__ = ("_cache_factor", "_cache_second", "cumulative", "fractions", "open_ns")

    def __init__(self, fractions: tuple[float, ...], open_ns: int) -> None:
        self.open_ns = open_ns
        self.fractions = fractions
        running = 0.0
        self.cumulative = [0.0]
        for fraction in fractions:
            running += fraction
            self.cumulative.append(running)
        self._cache_second = -1
        self._cache_factor = 1.0

    def share(self, seconds_from_open: float) -> float:
        """Cumulative fraction of the day's volume at ``seconds_from_open``."""
        if seconds_from_open <= 0:
            return 0.0
        bucket, within = divmod(seconds_from_open, BUCKET_SECONDS)
        bucket = int(bucket)
        if bucket >= len(self.fractions):
            return self.cumulative[-1]
        return self.cumulative[bucket] + self.fractions[bucket] * within / BUCKET_SECONDS

    def factor(self, second: int, spike_seconds: int, baseline_seconds: int) -> float:
        """Expected spike density over baseline density at UTC ``second``."""
        if second == self._cache_second:
            return self._cache_factor
        now = (
            second + 1 - self.open_ns / NANOSECONDS_PER_SECOND
        )  # the spike window holds seconds (second - spike, second]
        spike = (self.share(now) - self.share(now - spike_seconds)) / spike_seconds
        baseline = (
            self.share(now - spike_seconds) - self.share(now - spike_seconds - baseline_seconds)
        ) / baseline_seconds
        low, high = CURVE_FACTOR_BOUNDS
        value = min(high, max(low, spike / baseline)) if baseline > 0 and spike > 0 else 1.0
        self._cache_second, self._cache_factor = second, value
        return value
