"""The exit cost rule: act on an exit recommendation only when the fall it expects outweighs the cost of acting now.

Pure. For an exit recommendation raised at ``T`` about a symbol (or, ``market`` scope, about the index):

* ``cost_bps`` = half the quoted spread of the NBBO in force at ``T``, in bps of its mid:
  ``(ask − bid) / (ask + bid) × 1e4``; a market-scope exit's: the mean over the named positions with a two-sided
  quote (each in the evidence as ``cost_bps:<symbol>``); 0.0 with no two-sided quote (not known, counts as 0);
* ``expected_fall_bps`` = ``exit_expected_fall_sigmas`` × σ over ``exit_horizon_seconds``, σ (the index's for a
  market-scope exit) from the profile's one-minute volatility (the sessions before ``T``'s day) × √(horizon / 60);
  without it from the session's own minute mids so far (any threshold mode); not estimated (``sigma_source``
  ``none``) with fewer than ten one-minute returns;
* ``action`` = ``exit`` when ``exit_cost_multiple`` is 0, or σ is not estimated (the rules fired and nothing says
  the cost outweighs it), or ``expected_fall_bps ≥ exit_cost_multiple × cost_bps``; else ``watch``
  (``exit_expected_fall_sigmas`` = 0: no fall expected, ``watch`` unless the cost is 0 or the multiple is 0).

A sample: AIG quoted 49.99 × 50.01 (cost 2.0 bps), one-minute σ 4.0 bps, horizon 300 s, 0.5 σ: the expected
fall is 0.5 × 4.0 × √5 = 4.47 bps ≥ 1 × 2.0 → ``exit``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, NamedTuple

import msgspec

from orderflow_client.wire import ExitAction, ExitRecommendation, MarketContext
from services.detector.profiles import DayStatistics, minute_sigma_bps
from services.detector.rule_settings import MarketSettings
from shared.sessions import SessionClock

if TYPE_CHECKING:
    from services.detector.engine import SymbolEngine
    from services.detector.market_context import MinuteMids

BASIS_POINTS = 10_000


def half_spread_bps(bid: int, ask: int) -> float:
    """Half the quoted spread in bps of the mid (nano-dollar prices); 0.0 unless ``0 < bid ≤ ask``.
    ``half_spread_bps(49_990_000_000, 50_010_000_000) == 2.0``."""
    if not 0 < bid <= ask:
        return 0.0
    return (ask - bid) * BASIS_POINTS / (ask + bid)


class ExitCost(NamedTuple):
    """What the cost rule decided: bps, the action, and where σ came from (``profile``, ``session``, ``none``)."""

    expected_fall_bps: float
    cost_bps: float
    action: ExitAction
    sigma_source: str
    minute_sigma_bps: float


def decide(
    minute_sigma_bps: float,
    sigma_source: str,
    cost_bps: float,
    *,
    horizon_seconds: int,
    expected_fall_sigmas: float,
    cost_multiple: float,
) -> ExitCost:
    """The rule (module doc): ``minute_sigma_bps`` the one-minute σ (0.0: unknown)."""
    expected = expected_fall_sigmas * minute_sigma_bps * math.sqrt(horizon_seconds / 60)
    if minute_sigma_bps <= 0.0:
        expected, sigma_source = 0.0, "none"
    exits = cost_multiple == 0 or sigma_source == "none" or expected >= cost_multiple * cost_bps
    return ExitCost(
        round(expected, 4), round(cost_bps, 4), "exit" if exits else "watch", sigma_source, minute_sigma_bps
    )


def with_cost(
    recommendation: ExitRecommendation,
    cost: ExitCost,
    *,
    cost_multiple: float,
    horizon_seconds: int,
    context: MarketContext | None,
) -> ExitRecommendation:
    """``recommendation`` with the rule's numbers, its reasoning saying them, and ``context``."""
    if cost.sigma_source == "none":
        why = "expected fall not estimated (no volatility yet): exit"
    elif cost_multiple == 0:
        why = f"expected fall {cost.expected_fall_bps:.1f} bps over {horizon_seconds} s; cost rule off: exit"
    else:
        relation = "≥" if cost.action == "exit" else "<"
        why = (
            f"expected fall {cost.expected_fall_bps:.1f} bps over {horizon_seconds} s {relation} "
            f"{cost_multiple:g} × cost {cost.cost_bps:.1f} bps (half the spread): {cost.action}"
        )
    evidence = {
        **recommendation.evidence,
        "expected_fall_bps": cost.expected_fall_bps,
        "cost_bps": cost.cost_bps,
        "cost_multiple": cost_multiple,
        "horizon_seconds": horizon_seconds,
        "minute_sigma_bps": round(cost.minute_sigma_bps, 4),
        "sigma_source": cost.sigma_source,
    }
    return msgspec.structs.replace(
        recommendation,
        action=cost.action,
        expected_fall_bps=cost.expected_fall_bps,
        cost_bps=cost.cost_bps,
        reasoning=f"{recommendation.reasoning} {why[0].upper()}{why[1:]}.",
        evidence=evidence,
        context=context,
    )


def past_sessions(sessions: Iterable[DayStatistics], day: str, profile_days: int) -> list[DayStatistics]:
    """The last ``profile_days`` of ``sessions`` before ``day`` (ISO), oldest first: a profile's, walk-forward."""
    return sorted((session for session in sessions if session.day < day), key=lambda session: session.day)[
        -profile_days:
    ]


class ExitCosts:
    """The cost rule applied to exit recommendations: σ from the symbol's sessions before the day (cached per symbol
    and day, recomputed when those sessions change: a profile adopted) or from the session's minute mids so far
    (``minutes``, recorded in any threshold mode); the cost from the NBBO in force (a market-scope exit: the mean of
    the named positions' that have a two-sided quote)."""

    def __init__(self, settings: MarketSettings, sessions: SessionClock, minutes: dict[str, MinuteMids]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.minutes = minutes
        self._sigmas: dict[tuple[str, str], tuple[tuple[int, ...], list[DayStatistics], float]] = {}

    def profile_sigma(self, engine: SymbolEngine, day: str) -> float:
        """The one-minute σ (bps) of ``engine``'s last ``profile_days`` sessions before ``day`` (0.0: unknown)."""
        history = past_sessions(engine.lifecycle.history.values(), day, self.settings.profile_days)
        fingerprint = tuple(map(id, history))
        key = (engine.symbol, day)
        cached = self._sigmas.get(key)
        if cached is None or cached[0] != fingerprint:  # the sessions are kept: their ids stay theirs
            cached = self._sigmas[key] = (fingerprint, history, minute_sigma_bps(history))
        return cached[2]

    def minute_sigma(self, engine: SymbolEngine, ts: int) -> tuple[float, str]:
        """The one-minute σ (bps) of ``engine``'s symbol at ``ts`` (ns) and where it came from."""
        day = self.sessions.day_of(ts)[0]
        sigma = self.profile_sigma(engine, day)
        if sigma > 0:
            return sigma, "profile"
        minutes = self.minutes.get(engine.symbol)
        session = minutes.session(day) if minutes is not None else None
        return (minute_sigma_bps((session,)) if session is not None else 0.0), "session"

    def costed(
        self,
        engine: SymbolEngine,
        recommendation: ExitRecommendation,
        context: MarketContext | None,
        engines: Mapping[str, SymbolEngine] | None = None,
    ) -> ExitRecommendation:
        """``recommendation`` (of ``engine``'s symbol) with the cost rule's numbers and action, and ``context``.
        A market-scope one (``engines``: every symbol's) is costed on the positions it names."""
        settings = self.settings
        sigma, source = self.minute_sigma(engine, recommendation.ts_event)
        spreads: dict[str, float] = {}
        if recommendation.scope == "market":
            for position in recommendation.symbols:
                held = (engines or {}).get(position)
                if held is not None and 0 < held.nbbo.bid <= held.nbbo.ask:
                    spreads[position] = half_spread_bps(held.nbbo.bid, held.nbbo.ask)
            cost_bps = sum(spreads.values()) / len(spreads) if spreads else 0.0
        else:
            cost_bps = half_spread_bps(engine.nbbo.bid, engine.nbbo.ask)
        cost = decide(
            sigma,
            source,
            cost_bps,
            horizon_seconds=settings.horizon_seconds,
            expected_fall_sigmas=settings.expected_fall_sigmas,
            cost_multiple=settings.cost_multiple,
        )
        costed = with_cost(
            recommendation,
            cost,
            cost_multiple=settings.cost_multiple,
            horizon_seconds=settings.horizon_seconds,
            context=context,
        )
        if not spreads:
            return costed
        each = {f"cost_bps:{position}": round(spread, 4) for position, spread in spreads.items()}
        return msgspec.structs.replace(costed, evidence={**costed.evidence, **each})
