"""The config values the rules use, mapped once from :class:`~shared.config.OrderFlowConfig` into rule units.

Seconds become ns of event time, milliseconds ns, the adaptive settings a
:class:`~services.detector.threshold_fit.FitRules`; a symbol's
``symbol_overrides`` are laid over the global values here, so the rules never
read the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orderflow_client.timestamps import NANOSECONDS_PER_MILLISECOND, NANOSECONDS_PER_SECOND
from services.detector.integrity import IntegritySettings
from services.detector.threshold_fit import FitRules
from shared.config import OrderFlowConfig

EXTENDED_SESSIONS = ("pre_market", "after_hours")
"""The sessions with their own (extended-hours) thresholds."""


@dataclass(frozen=True)
class MarketSettings:
    """Market context, the market-wide sell-off and the exit cost rule, in rule units (ns, bps).

    ``market_symbols`` (the first is every symbol's index) and the ``sector_etfs`` values are the indexes;
    ``sector_etfs`` pairs a symbol with its own index. ``window_ns`` is ``context_window_seconds``; ``stale_ns``
    ``context_stale_seconds``; ``horizon_seconds`` ``exit_horizon_seconds``. See docs/market-context.md.
    """

    market_symbols: tuple[str, ...] = ()
    sector_etfs: tuple[tuple[str, str], ...] = ()
    window_ns: int = 300 * NANOSECONDS_PER_SECOND
    fall_bps: float = 10.0
    stale_ns: int = 60 * NANOSECONDS_PER_SECOND
    selloff_sigmas: float = 3.0
    selloff_min_bps: float = 30.0
    horizon_seconds: int = 300
    expected_fall_sigmas: float = 0.5
    cost_multiple: float = 1.0
    profile_days: int = 5

    @property
    def indexes(self) -> frozenset[str]:
        """Every index symbol: the market symbols and the sector ETFs."""
        return frozenset(self.market_symbols) | frozenset(etf for _symbol, etf in self.sector_etfs)

    def sector_etf(self, symbol: str) -> str:
        """``symbol``'s sector ETF ("" when it has none)."""
        return next((etf for named, etf in self.sector_etfs if named == symbol), "")

    @classmethod
    def from_config(cls, config: OrderFlowConfig) -> MarketSettings:
        return cls(
            market_symbols=tuple(config.market_symbols),
            sector_etfs=tuple(sorted(config.sector_etfs.items())),
            window_ns=config.context_window_seconds * NANOSECONDS_PER_SECOND,
            fall_bps=config.context_fall_bps,
            stale_ns=int(config.context_stale_seconds * NANOSECONDS_PER_SECOND),
            selloff_sigmas=config.market_selloff_sigmas,
            selloff_min_bps=config.market_selloff_min_bps,
            horizon_seconds=config.exit_horizon_seconds,
            expected_fall_sigmas=config.exit_expected_fall_sigmas,
            cost_multiple=config.exit_cost_multiple,
            profile_days=config.profile_days,
        )


@dataclass(frozen=True)
class RuleSettings:
    """The config values the rules use, in rule units (ns, shares).

    ``large_order_size`` and ``spike_threshold`` hold in the regular session, the ``extended_*`` values in
    pre-market and after-hours; ``extended_large_order_explicit`` says the extended size was set (a setting
    or a per-symbol override) rather than taken from the regular one. ``adaptive`` is
    ``threshold_mode == "adaptive"``; ``large_order_override`` says a per-symbol ``large_order_size`` wins
    over fitted sizes.
    """

    large_order_size: int
    extended_large_order_size: int
    spike_threshold: float
    extended_spike_threshold: float
    red_burst_threshold: float
    alert_window_ns: int
    spike_seconds: int
    baseline_seconds: int
    sell_ratio: float
    min_baseline_volume: int
    sweep_window_ns: int
    persistence_ns: int
    two_sided_ratio: float
    integrity: IntegritySettings
    adaptive: bool = False
    large_order_override: bool = False
    extended_large_order_explicit: bool = False
    fit: FitRules = field(default_factory=FitRules)
    profile_days: int = 5
    calibration_ns: int = 15 * 60 * NANOSECONDS_PER_SECOND
    offer_return_ns: int = 0
    calibration_confidence: float = 0.0
    market: MarketSettings | None = None
    """Market context and the exit cost rule (None: both off, exits as the rules raise them)."""

    @classmethod
    def from_config(cls, config: OrderFlowConfig, symbol: str | None = None) -> RuleSettings:
        """The settings of ``symbol`` (its ``symbol_overrides`` over the global values)."""
        override = config.symbol_overrides.get(symbol) if symbol else None
        large = (override and override.large_order_size) or config.large_order_size
        spike = (override and override.volume_spike_threshold) or config.volume_spike_threshold
        return cls(
            large_order_size=large,
            extended_large_order_size=(override and override.large_order_size)
            or config.extended_hours_large_order_size
            or large,
            spike_threshold=spike,
            extended_spike_threshold=(override and override.volume_spike_threshold)
            or config.extended_hours_volume_spike_threshold
            or spike,
            red_burst_threshold=(override and override.red_burst_threshold) or config.red_burst_threshold,
            alert_window_ns=config.alert_window_seconds * NANOSECONDS_PER_SECOND,
            spike_seconds=config.spike_window_seconds,
            baseline_seconds=config.baseline_window_seconds,
            sell_ratio=config.sell_ratio_threshold,
            min_baseline_volume=(
                override.min_baseline_volume
                if override and override.min_baseline_volume is not None
                else config.min_baseline_volume
            ),
            sweep_window_ns=config.sweep_window_ms * NANOSECONDS_PER_MILLISECOND,
            persistence_ns=int(config.book_persistence_seconds * NANOSECONDS_PER_SECOND),
            two_sided_ratio=config.two_sided_ratio,
            integrity=IntegritySettings(
                stale_warning_ns=int(config.stale_warning_seconds * NANOSECONDS_PER_SECOND),
                stale_failure_ns=int(config.stale_failure_seconds * NANOSECONDS_PER_SECOND),
                resume_after_ns=int(config.resume_after_seconds * NANOSECONDS_PER_SECOND),
                tolerance_ns=config.chronology_tolerance_ms * NANOSECONDS_PER_MILLISECOND,
                gap_silence_ns=int(config.gap_silence_seconds * NANOSECONDS_PER_SECOND),
            ),
            adaptive=config.threshold_mode == "adaptive",
            large_order_override=bool(override and override.large_order_size),
            extended_large_order_explicit=bool(
                (override and override.large_order_size) or config.extended_hours_large_order_size
            ),
            fit=FitRules(
                large_order_quantile=config.large_order_quantile,
                offer_size_quantile=config.offer_size_quantile,
                burst_ratio_quantile=config.burst_ratio_quantile,
                min_size=config.adaptive_min_large_order_size,
                min_notional_dollars=config.adaptive_min_large_order_notional,
                first_day_prior=config.first_day_thresholds == "prior",
            ),
            profile_days=config.profile_days,
            calibration_ns=int(config.calibration_minutes * 60 * NANOSECONDS_PER_SECOND),
            offer_return_ns=int(config.book_return_seconds * NANOSECONDS_PER_SECOND),
            calibration_confidence=config.calibration_confidence,
            market=MarketSettings.from_config(config),
        )

    def session_spike_threshold(self, session: str) -> float:
        """The red-burst ratio setting of ``session`` (the extended-hours one in pre-market and after-hours)."""
        return self.extended_spike_threshold if session in EXTENDED_SESSIONS else self.spike_threshold
