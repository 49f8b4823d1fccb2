"""The intraday volume curve: how a stock's volume normally spreads over its regular session.

A profile holds the curve as the mean fraction of a session's volume in each 5-minute bucket from the
open (:attr:`services.detector.profiles.SymbolProfile.volume_curve`); :class:`VolumeCurve` anchors it at
one day's open so the red-burst rule can scale its trailing baseline by what the time of day explains.
"""

from __future__ import annotations

from orderflow_client.timestamps import NANOSECONDS_PER_SECOND

BUCKET_SECONDS = 300
"""Width of one intraday volume bucket (5 minutes)."""
CURVE_FACTOR_BOUNDS = (1.0, 4.0)
"""The curve may raise a trailing baseline up to 4× and never lowers it: the time of day can explain
volume away, never invent a burst (a one-day curve is noisy)."""


class VolumeCurve:
    """The intraday volume curve of one session day, anchored at its open (``open_ns``, UTC ns).

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
        bucket_float, within = divmod(seconds_from_open, BUCKET_SECONDS)
        bucket = int(bucket_float)
        if bucket >= len(self.fractions):
            return self.cumulative[-1]
        return self.cumulative[bucket] + self.fractions[bucket] * within / BUCKET_SECONDS

    def factor(self, second: int, spike_seconds: int, baseline_seconds: int) -> float:
        """Expected spike density over baseline density at UTC ``second`` (1.0 … 4.0)."""
        if second == self._cache_second:
            return self._cache_factor
        now = second + 1 - self.open_ns / NANOSECONDS_PER_SECOND  # the spike window holds (second − spike, second]
        spike = (self.share(now) - self.share(now - spike_seconds)) / spike_seconds
        baseline = (
            self.share(now - spike_seconds) - self.share(now - spike_seconds - baseline_seconds)
        ) / baseline_seconds
        low, high = CURVE_FACTOR_BOUNDS
        value = min(high, max(low, spike / baseline)) if baseline > 0 and spike > 0 else 1.0
        self._cache_second, self._cache_factor = second, value
        return value
