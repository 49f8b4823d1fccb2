"""Red bursts: a sell-dominated spike of volume against its own baseline.

Volume is kept in one-second buckets of event time. At second *s* the spike
window holds seconds ``(s − spike, s]`` and the baseline the ``baseline``
seconds before it (``spike_window_seconds`` and ``baseline_window_seconds``,
defaults 60 s and 300 s). The ratio is the
spike volume over the baseline's average per spike-window:

    ratio = spike_volume / (baseline_volume × spike / baseline)

A burst needs a full baseline (``spike + baseline`` seconds observed since the
last reset), at least ``min_baseline_volume`` shares in it, the ratio at the
threshold, sells at least ``sell_ratio`` of the classified volume in the
spike window, and **breadth**: the ratio must reach the threshold even
without the spike window's largest single print (one block is not a burst of
selling; on the AlgoSeek AIG days this removed a third of the bursts). Only
prints that can be aggressive count (continuous trading: no auctions, odd
lots, late or average-price prints), in both windows alike.

With an intraday volume curve (adaptive thresholds, a profile with full
sessions) the baseline is scaled by what the stock normally trades in the
spike window relative to the baseline at this time of day
(:class:`services.detector.volume_curve.VolumeCurve`): ``ratio`` is then
spike volume / (baseline average × curve factor), so the normal ramp into
the close or the fade after the open is not a burst.

Episodes give one alert per severity: the first evaluation that qualifies
opens an episode (``warning``, or ``critical`` at ``critical_threshold``); a
warning episode that later reaches the critical threshold raises one
``critical`` alert; the episode ends when the ratio falls below
``END_FRACTION`` of the threshold (hysteresis).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from orderflow_client.wire import Severity
from services.detector.day_recorder import DayRecorder
from services.detector.volume_curve import VolumeCurve

END_FRACTION = 0.8
"""An episode ends when the ratio falls below this fraction of the threshold."""


@dataclass(frozen=True)
class BurstReading:
    """One evaluation. Volumes in shares."""

    second: int
    ratio: float
    sell_ratio: float
    spike_volume: int
    baseline_average: float
    sell_volume: int
    buy_volume: int
    curve_factor: float = 1.0


@dataclass(frozen=True)
class BurstSignal:
    """A red-burst alert to raise: ``severity`` and the episode it belongs to."""

    severity: Severity
    episode_second: int
    reading: BurstReading


class RedBursts:
    """Spike and baseline windows of one symbol."""

    def __init__(
        self,
        *,
        spike_seconds: int,
        baseline_seconds: int,
        min_baseline_volume: int,
        sell_ratio: float,
        critical_threshold: float,
    ) -> None:
        self.spike_seconds = spike_seconds
        self.baseline_seconds = baseline_seconds
        self.min_baseline_volume = min_baseline_volume
        self.sell_ratio = sell_ratio
        self.critical_threshold = critical_threshold
        self.curve: VolumeCurve | None = None
        self.recorders: tuple[DayRecorder, ...] = ()  # each gets one ratio reading a second
        self._recorded_second = -1
        self.reset(None)

    def reset(self, ts_event: int | None) -> None:
        """Forget everything (gap, halt, session change); history restarts at ``ts_event``."""
        self.spike_buckets: deque[list[int]] = deque()  # [second, volume, sell, buy, largest print] (shares)
        self.baseline_buckets: deque[list[int]] = deque()  # [second, volume]
        self.spike_volume = self.spike_sell = self.spike_buy = 0
        self.baseline_volume = 0
        self.history_start = None if ts_event is None else ts_event // NANOSECONDS_PER_SECOND
        self.episode_second: int | None = None
        self.episode_severity: Literal["", "warning", "critical"] = ""

    def _slide_windows(self, second: int) -> None:
        spike_start = second - self.spike_seconds + 1
        while self.spike_buckets and self.spike_buckets[0][0] < spike_start:
            moved_second, volume, sell, buy, _largest = self.spike_buckets.popleft()
            self.spike_volume -= volume
            self.spike_sell -= sell
            self.spike_buy -= buy
            self.baseline_buckets.append([moved_second, volume])
            self.baseline_volume += volume
        baseline_start = spike_start - self.baseline_seconds
        while self.baseline_buckets and self.baseline_buckets[0][0] < baseline_start:
            self.baseline_volume -= self.baseline_buckets.popleft()[1]

    def add(self, ts_event: int, size: int, side: str) -> None:
        """A print that counts (side ``buy``, ``sell`` or ``unknown``)."""
        second = ts_event // NANOSECONDS_PER_SECOND
        if self.history_start is None:
            self.history_start = second
        self._slide_windows(second)
        if self.spike_buckets and self.spike_buckets[-1][0] == second:
            bucket = self.spike_buckets[-1]
        elif self.spike_buckets and self.spike_buckets[-1][0] > second:
            bucket = self.spike_buckets[-1]  # a print slightly out of order joins the newest second
        else:
            bucket = [second, 0, 0, 0, 0]
            self.spike_buckets.append(bucket)
        bucket[1] += size
        if size > bucket[4]:
            bucket[4] = size
        self.spike_volume += size
        if side == "sell":
            bucket[2] += size
            self.spike_sell += size
        elif side == "buy":
            bucket[3] += size
            self.spike_buy += size

    def reading(self, ts_event: int) -> BurstReading | None:
        """The current ratio, or None while the baseline is not full or too thin."""
        second = ts_event // NANOSECONDS_PER_SECOND
        self._slide_windows(second)
        if self.history_start is None or second - self.history_start < self.spike_seconds + self.baseline_seconds:
            return None
        if self.baseline_volume < max(1, self.min_baseline_volume):
            return None
        factor = self._factor(second)
        average = self.baseline_volume * self.spike_seconds / self.baseline_seconds * factor
        classified = self.spike_sell + self.spike_buy
        return BurstReading(
            second=second,
            ratio=self.spike_volume / average,
            sell_ratio=self.spike_sell / classified if classified else 0.0,
            spike_volume=self.spike_volume,
            baseline_average=average,
            sell_volume=self.spike_sell,
            buy_volume=self.spike_buy,
            curve_factor=factor,
        )

    def _factor(self, second: int) -> float:
        curve = self.curve
        return 1.0 if curve is None else curve.factor(second, self.spike_seconds, self.baseline_seconds)

    def evaluate(self, ts_event: int, threshold: float) -> BurstSignal | None:
        """Apply the episode logic at ``ts_event`` with the session's threshold."""
        second = ts_event // NANOSECONDS_PER_SECOND
        if self.history_start is None or second - self.history_start < self.spike_seconds + self.baseline_seconds:
            return None
        self._slide_windows(second)
        if self.baseline_volume < max(1, self.min_baseline_volume):
            return None
        scale = self.baseline_seconds / (self.baseline_volume * self.spike_seconds * self._factor(second))
        ratio = self.spike_volume * scale
        if self.recorders and second != self._recorded_second:
            self._recorded_second = second
            for recorder in self.recorders:
                recorder.record_burst_ratio(ratio)
        if self.episode_second is None and ratio < threshold:
            return None  # the common case: nothing unusual, nothing allocated
        largest = max(bucket[4] for bucket in self.spike_buckets)
        broad = (self.spike_volume - largest) * scale
        if self.episode_second is None and broad < threshold:
            return None  # one print (a block) makes this spike: not a burst of selling
        reading = self.reading(ts_event)
        if reading is None:
            return None
        if self.episode_second is not None and reading.ratio < threshold * END_FRACTION:
            self.episode_second, self.episode_severity = None, ""
            return None
        pressing = reading.sell_ratio >= self.sell_ratio
        if self.episode_second is None:
            if reading.ratio >= threshold and pressing:
                self.episode_second = reading.second
                self.episode_severity = "critical" if reading.ratio >= self.critical_threshold else "warning"
                return BurstSignal(self.episode_severity, self.episode_second, reading)
            return None
        if self.episode_severity == "warning" and reading.ratio >= self.critical_threshold and pressing:
            self.episode_severity = "critical"
            return BurstSignal("critical", self.episode_second, reading)
        return None
