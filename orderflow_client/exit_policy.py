"""What a bot does with an exit recommendation, per scope and action: the bot owner's policy, as data.

    from orderflow_client.exit_policy import ExitPolicy

    policy = ExitPolicy()  # symbol scope: exit; market scope: tighten stops 0.5 % under the bid; watch: ignore
    for decision in policy.decide(recommendation, held_symbols={"AAPL", "MSFT"}):
        print(decision.symbol, decision.choice, decision.reason)
        # AAPL tighten_stops "market scope (SPY fell 42.0 bps, expected fall 35.0 bps > cost 2.1 bps): …"

A recommendation of ``scope == "symbol"`` is about its ``symbol``'s own selling; one of ``scope == "market"`` says
the market itself is being sold (its ``symbol`` is the index, e.g. SPY) and names in ``symbols`` every open
position it applies to. ``action == "exit"``: the detector expects a fall (``expected_fall_bps``) larger than the
cost of acting (``cost_bps``, half the spread); ``"watch"``: it does not. The policy turns that into one
:class:`PolicyDecision` per held position the recommendation names (none for a symbol the bot does not hold).
:func:`position_id` is where a bot's handled mark and decision record for that position are kept.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, get_args

import msgspec

from orderflow_client.prices import round_to_tick
from orderflow_client.wire import ContextLabel, ExitAction, ExitRecommendation, ExitScope

Choice = Literal["exit", "tighten_stops", "ignore"]
"""``exit``: sell the position now; ``tighten_stops``: move its stop up to ``tighten_to_pct`` under the bid (never
lower); ``ignore``: log and record the decision, change nothing."""
CHOICES: tuple[str, ...] = get_args(Choice)
CONTEXT_LABELS: tuple[str, ...] = get_args(ContextLabel)
MAX_TIGHTEN_PERCENT = 20.0


def position_id(recommendation_id: str, scope: ExitScope, symbol: str) -> str:
    """Where one bot's mark and decision for one position of a recommendation are kept: the recommendation's id for
    a symbol-scope one (one position), ``<id>@<symbol>`` for a market-scope one (one per position it names), e.g.
    ``SPY:exit:market_selloff:1718900000000000000@AAPL``."""
    return recommendation_id if scope == "symbol" else f"{recommendation_id}@{symbol}"


def named_positions(recommendation: ExitRecommendation) -> tuple[str, ...]:
    """The positions a recommendation is about: each of its ``symbols`` (market scope, once each), else its
    ``symbol``."""
    if recommendation.scope == "market":
        return tuple(dict.fromkeys(recommendation.symbols))
    return (recommendation.symbol,)


def for_position(recommendation: ExitRecommendation, symbol: str) -> ExitRecommendation:
    """A market-scope recommendation as the risk client hands it to ``on_exit`` for one position it names:
    ``symbol`` is that position and ``symbols`` only it; the id, scope, action, numbers and context (whose
    ``index`` names the index) are unchanged. Its signature was checked on the original: it does not verify again."""
    return msgspec.structs.replace(recommendation, symbol=symbol, symbols=(symbol,))


@dataclass(frozen=True)
class PolicyDecision:
    """What the policy chose for one held position named by a recommendation, and why."""

    recommendation_id: str
    position_id: str
    """:func:`position_id`: the key of this position's handled mark and decision record."""
    symbol: str
    choice: Choice
    reason: str
    scope: ExitScope
    action: ExitAction


@dataclass(frozen=True)
class ExitPolicy:
    """Per scope and action what the bot does; validated when made, immutable.

    ``symbol`` (default ``exit``): a stock's own sellers and an expected fall larger than the cost of selling —
    the case orderflow was built for. ``market`` (default ``tighten_stops``): the market is sold, not the stock;
    selling every position on an index move turns a common, often brief, fall into certain costs on each, while a
    tighter stop lets the bot's own stop sell only the positions that keep falling. ``watch`` (default ``ignore``):
    the expected fall does not pay for acting; logged and recorded, never sold. ``tighten_to_pct``: the stop moves
    to this many percent under the current bid (0.5 by default; 0.01 % resolution), rounded down to a valid tick,
    never lower than the stop already there. ``context``: a symbol-scope exit's choice by its context label, e.g.
    ``{"market_wide": "tighten_stops"}`` treats a stock that falls with the market like the market scope (none by
    default: the detector's ``action`` already weighed the fall against the cost).
    """

    symbol: Choice = "exit"
    market: Choice = "tighten_stops"
    watch: Choice = "ignore"
    tighten_to_pct: float = 0.5
    context: Mapping[ContextLabel, Choice] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("symbol", "market", "watch"):
            if getattr(self, name) not in CHOICES:
                raise ValueError(f"ExitPolicy.{name} must be one of {', '.join(CHOICES)}, not {getattr(self, name)!r}")
        for label, choice in self.context.items():
            if label not in CONTEXT_LABELS or choice not in CHOICES:
                raise ValueError(
                    f"ExitPolicy.context maps a label ({', '.join(CONTEXT_LABELS)}) to a choice ({', '.join(CHOICES)}),"
                    f" not {label!r} to {choice!r}"
                )
        if not 0.01 <= self.tighten_to_pct <= MAX_TIGHTEN_PERCENT:
            raise ValueError(
                f"ExitPolicy.tighten_to_pct must be 0.01..{MAX_TIGHTEN_PERCENT} %, not {self.tighten_to_pct}"
            )
        object.__setattr__(self, "context", MappingProxyType(dict(self.context)))

    def choose(self, recommendation: ExitRecommendation) -> tuple[Choice, str]:
        """The choice for every position the recommendation names, and its reason (the headline first)."""
        label = recommendation.context.label if recommendation.context is not None else "unknown"
        numbers = (
            f"expected fall {recommendation.expected_fall_bps:.1f} bps, cost {recommendation.cost_bps:.1f} bps, "
            f"context {label}"
        )
        if recommendation.action == "watch":
            return self.watch, f"{self.watch}: a {recommendation.scope}-scope watch ({numbers}): the fall does not pay"
        if recommendation.scope == "market":
            index = recommendation.context.index if recommendation.context is not None else ""
            return self.market, f"{self.market}: the market is sold ({f'{index}; ' if index else ''}{numbers})"
        if label in self.context:
            choice = self.context[label]
            return choice, f"{choice}: a {label} exit ({numbers})"
        return self.symbol, f"{self.symbol}: the stock's own sellers ({numbers})"

    def decide(self, recommendation: ExitRecommendation, held_symbols: Collection[str]) -> list[PolicyDecision]:
        """One decision per held position the recommendation names, in its order: its ``symbol`` (symbol scope) or
        each of its ``symbols`` (market scope); none for a symbol the bot does not hold. Pure."""
        choice, reason = self.choose(recommendation)
        return [
            PolicyDecision(
                recommendation_id=recommendation.id,
                position_id=position_id(recommendation.id, recommendation.scope, symbol),
                symbol=symbol,
                choice=choice,
                reason=f"{reason}: {recommendation.reasoning}" if recommendation.reasoning else reason,
                scope=recommendation.scope,
                action=recommendation.action,
            )
            for symbol in named_positions(recommendation)
            if symbol in held_symbols
        ]

    def tightened_stop(self, price: int, stop: int, quantity: int) -> int:
        """The stop ``tighten_stops`` sets (nano-dollars): ``tighten_to_pct`` under ``price`` (the bid) for a long,
        over it (the ask) for a short, on a valid tick, and never looser than ``stop`` (0: none). E.g. bid $187.43,
        0.5 %, stop $184.00 → ``186490000000`` ($186.49)."""
        if price <= 0 or quantity == 0:
            raise ValueError(f"a stop needs a positive price and a position, not {price} and {quantity} shares")
        offset = price * round(self.tighten_to_pct * 100) // 10_000
        if quantity > 0:
            return max(stop, round_to_tick(price - offset, down=True))
        candidate = round_to_tick(price + offset, down=False)
        return min(stop, candidate) if stop > 0 else candidate
