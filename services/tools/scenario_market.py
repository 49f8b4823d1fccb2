"""The synthetic stock the demo scenarios are built on: its NBBO, its prints and its ordinary background flow.

A :class:`SyntheticMarket` collects Polygon WebSocket event dicts (``t`` in ms) in generation order; the scenario
builders of :mod:`services.tools.scenarios` drive it second by second and add what makes each scenario special.
Every random draw comes from the market's own ``rng``, so the same seed gives the same events. The first print of
``quiet`` (seed 7), an off-exchange one (prices in dollars, ``t`` in ms)::

    {"ev": "T", "sym": "DEMO", "x": 4, "i": "1", "z": 3, "p": 50.004, "s": 200, "c": [],
     "t": 1795531500039, "q": 2, "trfi": 202, "trft": 1795531500038}
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

SYMBOL = "DEMO"
CENT = 0.01


@dataclass
class SyntheticMarket:
    """The evolving state of the synthetic stock: a $50 mid in cents, a one- or two-cent spread, the sizes shown."""

    rng: random.Random
    symbol: str = SYMBOL
    mid_cents: int = 5000
    spread_cents: int = 1
    bid_size: int = 800
    ask_size: int = 800
    events: list[tuple[int, int, dict]] = field(default_factory=list)  # (t_ms, order, event)
    trade_id: int = 0
    sequence: int = 0
    order: int = 0
    book_boost: int = 0  # shares added to both sides of every quote (two-sided scenario)

    @property
    def bid(self) -> float:
        return round((self.mid_cents - (self.spread_cents // 2 if self.spread_cents > 1 else 0)) * CENT, 2)

    @property
    def ask(self) -> float:
        return round((self.mid_cents + max(1, self.spread_cents - self.spread_cents // 2)) * CENT, 2)

    def add(self, t_ms: int, event: dict) -> None:
        self.order += 1
        self.events.append((t_ms, self.order, event))

    def post_quote(self, t_ms: int, bid_size: int | None = None, ask_size: int | None = None) -> None:
        """Post the NBBO in force (sizes in shares: the market's own unless given)."""
        self.sequence += 1
        self.add(
            t_ms,
            {
                "ev": "Q",
                "sym": self.symbol,
                "bx": self.rng.choice((12, 11, 10, 19)),
                "bp": self.bid,
                "bs": bid_size if bid_size is not None else self.bid_size,
                "ax": self.rng.choice((12, 11, 10, 19)),
                "ap": self.ask,
                "as": ask_size if ask_size is not None else self.ask_size,
                "c": [1],
                "i": [],
                "t": t_ms,
                "q": self.sequence,
                "z": 3,
            },
        )

    def print_trade(
        self,
        t_ms: int,
        price: float,
        size: int,
        conditions: list[int],
        *,
        exchange: int | None = None,
        trf: bool = False,
    ) -> None:
        """Print a trade of ``size`` shares at ``price`` dollars (``trf``: off-exchange, reported by a TRF)."""
        self.trade_id += 1
        self.sequence += 1
        event = {
            "ev": "T",
            "sym": self.symbol,
            "x": 4 if trf else (exchange or self.rng.choice((12, 11, 10, 19, 8))),
            "i": str(self.trade_id),
            "z": 3,
            "p": round(price, 4),
            "s": size,
            "c": conditions,
            "t": t_ms,
            "q": self.sequence,
        }
        if trf:
            event["trfi"] = 202
            event["trft"] = t_ms - 1
        self.add(t_ms, event)

    def background_second(
        self, second_start_ms: int, rate: float, sell_share: float = 0.5, *, quotes: bool = True
    ) -> None:
        """One second of ordinary flow at ``rate`` prints per second; quote moves
        and prints are generated in time order, so every print refers to the
        NBBO in force at its own time."""
        rng = self.rng
        moments = [(second_start_ms + rng.randrange(1000), 0) for _ in range(rng.randint(2, 5) if quotes else 0)]
        moments += [(second_start_ms + rng.randrange(1000), 1) for _ in range(_poisson(rng, rate))]
        for t, kind in sorted(moments):
            if kind == 0:
                self.move_quote(t)
            else:
                self.background_trade(t, sell_share)

    def move_quote(self, t_ms: int) -> None:
        rng = self.rng
        step = rng.random()
        if self.book_boost:
            pass  # large size on both sides pins the price
        elif step < 0.15:
            self.mid_cents += 1
        elif step < 0.30:
            self.mid_cents -= 1
        self.spread_cents = 1 if rng.random() < 0.8 or self.book_boost else 2
        self.bid_size = rng.choice((100, 200, 300, 500, 800, 1200, 2000, 3000)) + self.book_boost
        self.ask_size = rng.choice((100, 200, 300, 500, 800, 1200, 2000, 3000)) + self.book_boost
        self.post_quote(t_ms)

    def background_trade(self, t_ms: int, sell_share: float) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.2:
            size, conditions = rng.randint(1, 99), [37]
        else:
            size = rng.choice((100, 100, 100, 200, 200, 300, 400, 500, 1000))
            conditions = [14, 41] if rng.random() < 0.1 else []
        if rng.random() < 0.003:  # an average-price print: never a seller
            self.print_trade(t_ms, self.bid - 0.0037, 5000, [2], trf=True)
            return
        sell = rng.random() < sell_share
        if rng.random() < 0.15:  # midpoint / inside print off-exchange
            price = (self.bid + self.ask) / 2 + (-0.001 if sell else 0.001)
            self.print_trade(t_ms, price, size, conditions, trf=True)
        else:
            self.print_trade(t_ms, self.bid if sell else self.ask, size, conditions)


def _poisson(rng: random.Random, rate: float) -> int:
    # Knuth's method: fine for the small rates used here
    limit, product, count = math.exp(-rate), rng.random(), 0
    while product > limit:
        count += 1
        product *= rng.random()
    return count
