"""Exit recommendations from alerts.

* ≥ 3 one-sided large-seller alerts within ``alert_window_ns`` (default 120 s)
  → one recommendation per episode; the episode ends when a whole window
  passes without a large-seller alert (a steady stream of sellers is one
  episode, not a recommendation every time the oldest alert ages out). Two-sided book alerts (large size on
  both sides: accumulation as much as distribution) do not count, nor does an escalation (a seller already
  counted, now critical).
* a ``critical`` red burst (ratio ≥ ``red_burst_threshold``) → one
  recommendation for that burst episode.

An index's sell-off (:class:`SelloffRule`): its fall over the context window past the threshold (``b``), or its own
exit rule firing (``a``) while it has fallen at least ``context_fall_bps`` over the window, starts an episode, which
ends once neither has held for a whole window; one market_selloff alert per episode, ``critical`` when (a) fired
within the window and (b) holds, or the fall is at least twice the threshold. A flat or rising index's exit rule
starts nothing.

Alerts leaving the window are reported so the service logs
``order_flow.alert_window_expired``. What a recommendation says (id, reasoning,
evidence) is built in :mod:`services.detector.alert_builders`.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, NamedTuple

from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from orderflow_client.wire import EvidenceValue, ExitRecommendation, OrderFlowAlert, Severity
from services.detector.alert_builders import (
    large_sellers_exit,
    market_selloff_alert,
    market_selloff_exit,
    red_burst_exit,
)
from services.detector.rule_settings import MarketSettings
from shared.sessions import SessionClock

if TYPE_CHECKING:
    from services.detector.engine import SymbolEngine
    from services.detector.market_watch import MarketWatch
    from services.detector.outputs import Output

LARGE_SELLER_COUNT = 3


class ExitRule:
    """Exit logic for one symbol."""

    def __init__(self, alert_window_ns: int) -> None:
        self.alert_window_ns = alert_window_ns
        self.recent: deque[OrderFlowAlert] = deque()
        self.seller_episode = False

    def expire(self, ts_event: int) -> list[OrderFlowAlert]:
        """Alerts older than the window at ``ts_event`` (removed)."""
        expired: list[OrderFlowAlert] = []
        while self.recent and ts_event - self.recent[0].ts_event > self.alert_window_ns:
            expired.append(self.recent.popleft())
        if not self.recent:
            self.seller_episode = False
        return expired

    def on_alert(self, alert: OrderFlowAlert) -> ExitRecommendation | None:
        """The recommendation ``alert`` completes, if any (the alert is counted toward the window)."""
        if alert.alert_type == "red_burst":
            if alert.severity == "critical":
                return red_burst_exit(alert)
            return None
        if alert.two_sided or "escalates" in alert.evidence:
            return None  # two-sided size is not one-sided pressure; an escalation is a seller already counted
        self.recent.append(alert)
        if len(self.recent) >= LARGE_SELLER_COUNT and not self.seller_episode:
            self.seller_episode = True
            return large_sellers_exit(alert, list(self.recent), self.alert_window_ns)
        return None

    def reset(self) -> None:
        self.recent.clear()
        self.seller_episode = False


class SelloffStart(NamedTuple):
    """A new sell-off episode of an index: it started at ``ts`` (ns); ``exit_rule`` (a) and ``fall`` (b) say
    which held within the window, ``severity`` what the alert says."""

    ts: int
    exit_rule: bool
    fall: bool
    severity: Severity


class SelloffRule:
    """The episodes of one index's sell-off (module doc); ``window_ns`` the context window (ns)."""

    __slots__ = ("episode_start", "last_exit_rule", "last_true", "window_ns")

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self.last_true = -1  # ns: when (a) or (b) last held; -1 never
        self.last_exit_rule = -1  # ns: when the index's exit rule last fired
        self.episode_start = 0

    def observe(
        self, ts: int, *, exit_rule: bool, fall_bps: float, threshold_bps: float, context_fall_bps: float = 0.0
    ) -> SelloffStart | None:
        """At ``ts``: whether the exit rule fired now, and the index's fall (bps, positive = down) against its
        threshold (bps). A new episode when the fall reaches the threshold (b), or the exit rule fires while the
        index has fallen at least ``context_fall_bps`` (a), and none was running."""
        if exit_rule:
            self.last_exit_rule = ts
        falling = fall_bps >= threshold_bps
        if not (falling or (exit_rule and fall_bps >= context_fall_bps)):
            return None
        running = self.last_true >= 0 and ts - self.last_true <= self.window_ns
        self.last_true = ts
        if running:
            return None
        self.episode_start = ts
        recent_rule = self.last_exit_rule >= 0 and ts - self.last_exit_rule <= self.window_ns
        both = recent_rule and falling
        severity: Severity = "critical" if both or fall_bps >= 2 * threshold_bps else "warning"
        return SelloffStart(ts, recent_rule, falling, severity)


class MarketSelloffs:
    """Every index's :class:`SelloffRule`, its fall threshold for the day, and what an episode raises: a
    market_selloff alert and its market-scope exit recommendation (costed, naming the open positions)."""

    def __init__(self, settings: MarketSettings, sessions: SessionClock) -> None:
        self.settings = settings
        self.sessions = sessions
        self.rules: dict[str, SelloffRule] = {}

    def fall_threshold(self, watch: MarketWatch, engine: SymbolEngine, ts: int) -> tuple[float, float]:
        """The index's sell-off fall (bps) at ``ts`` and its σ over the window (bps; 0.0 without a history):
        max(market_selloff_min_bps, market_selloff_sigmas × σ), fixed for the trading day (unless a profile is
        adopted during it: its sessions then give σ)."""
        settings = self.settings
        window_minutes = settings.window_ns / NANOSECONDS_PER_SECOND / 60
        sigma = watch.costs.profile_sigma(engine, watch.day(ts)[0]) * math.sqrt(window_minutes)
        return max(settings.selloff_min_bps, settings.selloff_sigmas * sigma), sigma

    def check(
        self,
        watch: MarketWatch,
        engine: SymbolEngine,
        ts: int,
        ts_recv: int,
        rule_exit: ExitRecommendation | None,
        outputs: list[Output],
    ) -> None:
        """The index's sell-off rule at ``ts`` (ns): its exit rule fired (``rule_exit``) or an event moved it (the
        fall is judged at each event that moves the index; a rise or a fall short of the minimum returns at once)."""
        symbol = engine.symbol
        state = watch.states[symbol]
        window_ns = self.settings.window_ns
        if rule_exit is None:  # an index event: judged only when it moved the index (its state is then at ts)
            changes = state.changes
            if state.last_ts != ts or not changes:
                return
            first = state.doubled_at(ts - window_ns)
            if (first - changes[-1][1]) * 10_000 < self.settings.selloff_min_bps * first:
                return  # no fall of the minimum: the condition is false whatever the day's threshold
        covered = bool(state.changes) and 2 * state.covered_ns(ts) >= window_ns
        if rule_exit is None and not covered:
            return
        rule = self.rules.get(symbol)
        if rule is None:
            rule = self.rules[symbol] = SelloffRule(window_ns)
        threshold, sigma = self.fall_threshold(watch, engine, ts)
        index_return = state.return_bps(ts) if covered else 0.0
        start = rule.observe(
            ts,
            exit_rule=rule_exit is not None,
            fall_bps=-index_return,
            threshold_bps=threshold,
            context_fall_bps=self.settings.fall_bps,
        )
        if start is None:
            return
        evidence: dict[str, EvidenceValue] = {
            "index_return_bps": round(index_return, 2),
            "threshold_bps": round(threshold, 2),
            "window_sigma_bps": round(sigma, 2),
            "window_seconds": window_ns // NANOSECONDS_PER_SECOND,
            "fall": start.fall,
            "exit_rule": start.exit_rule,
        }
        if rule_exit is not None:
            evidence["index_exit"] = rule_exit.id
        context = watch.context(symbol, ts)
        alert = market_selloff_alert(
            symbol,
            episode_start=start.ts,
            ts=ts,
            ts_recv=ts_recv,
            severity=start.severity,
            session=engine.session or self.sessions.session(ts),
            price=state.doubled_at(ts) // 2,
            sell_share=state.sell_share(ts),
            sell_volume=state.volumes(ts)[0],
            evidence=evidence,
            context=context,
        )
        outputs.append(alert)
        recommendation = market_selloff_exit(alert, watch.positions_of(symbol))
        outputs.append(watch.costs.costed(engine, recommendation, context, watch.engines))
