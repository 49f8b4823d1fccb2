"""Deterministic synthetic sessions in the capture format (Polygon frames).

``orderflow scenario NAME --out FILE`` writes one; the same name and seed
always give the same bytes. Every scenario is a liquid $50 stock in the
regular session (from 2026-11-24 09:45 New York) with a realistic
background: NBBO one or two cents wide with 100–3,000 shares a side, ~8
prints a second of 1–1,000 shares on both sides (odd lots flagged, some
intermarket sweeps, some off-exchange TRF prints, a few average-price
prints), a slow intraday volume swing, frames batched every 25 ms and
received 2–20 ms after the event. On that background:

=============== ==================================================================
``quiet``        20 minutes of normal flow, including two large offers that
                 flicker for under a second (cancelled quickly: not sellers).
                 **Expected: no alert, no exit**.
``large-sellers`` four aggressive sell orders swept through the bid within 3 ms
                 each, at 8:00, 8:40, 9:20 and 10:00 minutes: 12,000, 15,000,
                 25,000 and 11,000 shares. **Expected: large_seller alerts
                 from the tape at the print that crosses 10,000 shares:
                 warning, warning, warning (the third, escalating to
                 critical as it crosses 20,000), warning; one exit
                 recommendation (large_sellers) at the third seller.**
``red-burst``    at 7:00 the traded volume jumps to 5× the baseline rate for 90
                 s, 75% of it sells, in small orders. **Expected: one
                 red_burst warning (ratio crosses 3.0), one red_burst critical
                 (crosses 4.0) and one exit recommendation (red_burst); no
                 large_seller alert.**
``two-sided``    three times (at 4:00, 5:30, 7:00) 12,000+ shares rest on BOTH
                 the bid and the offer for 8 s. **Expected: 3 large_seller
                 alerts from the book, two_sided, warning; no exit** (two-sided
                 pressure is accumulation as much as distribution).
``stale-feed``   from 6:00 for 40 s every frame arrives 12 s after its events
                 (35 s for the last 10 s). **Expected: monitoring halted
                 (data_validation_error, codes stale_data / stale_data_failure),
                 resumed after 30 s of fresh data; no alert.**
``gap``          silence from 7:00 to 8:30, then flow at 2.5× the old rate.
                 **Expected: a gap reported; windows reset, so no red_burst
                 although the silence drags the old baseline down; no alert.**
=============== ==================================================================

One more, of an index (a market symbol: ``write_scenario("index-selloff", path, symbol="SPY")``), not among the
stock scenarios the demo plays (:data:`INDEX_SCENARIOS`):

================= ================================================================
``index-selloff``  20 minutes of a $500 index; from 10:00 to 15:00 the mid falls two
                   cents a second ($6.00, 120 bps) while 70% of the prints sell.
                   **Expected, as an index with a position open: one
                   market_selloff alert (source index) and one market-scope exit
                   naming the open positions; no large_seller alert.**
================= ================================================================

The expectations, as the tests check them: :data:`services.tools.scenario_expectations.EXPECTATIONS`; the
synthetic stock (NBBO, prints, background flow): :mod:`services.tools.scenario_market`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import msgspec

from orderflow_client.timestamps import NANOSECONDS_PER_MILLISECOND
from services.ingest.capture import format_line
from services.tools.scenario_market import CENT, SYMBOL, SyntheticMarket

START_MS = 1_795_531_500_000  # 2026-11-24 14:45:00 UTC = 09:45 New York
FRAME_MS = 25


def _volume_swing(second: int) -> float:
    """A slow intraday swing of the print rate (±15% over ~20 minutes)."""
    return 1.0 + 0.15 * math.sin(second / 190.0)


BASE_RATE = 8.0


Special = Callable[[SyntheticMarket, int], None]


def _flow(
    market: SyntheticMarket,
    seconds: Iterable[int],
    *,
    rate: Callable[[int], float] | None = None,
    sell_share: Callable[[int], float] | None = None,
    special: dict[int, Special] | None = None,
) -> None:
    """Generate second after second; a second listed in ``special`` is generated
    by its function (given the second's start in ms) instead of ordinary flow."""
    for second in seconds:
        start_ms = START_MS + second * 1000
        if special and second in special:
            special[second](market, start_ms)
            continue
        market.background_second(
            start_ms,
            (rate(second) if rate else BASE_RATE) * _volume_swing(second),
            sell_share(second) if sell_share else 0.5,
        )


def _sweep(shares: int) -> Special:
    """A second holding one aggressive sell order that walks down the bid
    within 3 ms (and no other prints, so nothing else joins the order)."""

    def second(market: SyntheticMarket, start_ms: int) -> None:
        rng = market.rng
        t_ms = start_ms + 500
        market.move_quote(start_ms + 100)  # the NBBO in force before the sweep
        price = market.bid
        left, offset = shares, 0
        while left > 0:
            child = min(left, rng.choice((1500, 2000, 2500, 3000, 4000)))
            market.print_trade(t_ms + offset, price, child, [14, 41])
            left -= child
            if rng.random() < 0.5:
                price = round(price - CENT, 2)
            offset = min(3, offset + rng.choice((0, 1)))
        market.mid_cents -= 2  # the book is lower after the sweep
        market.move_quote(t_ms + 6)

    return second


def _flicker(market: SyntheticMarket, start_ms: int) -> None:
    """A 15,000-share offer shown for under a second, then cancelled."""
    shown = start_ms + 123
    market.post_quote(shown, ask_size=15_000)
    market.background_second(start_ms, BASE_RATE, quotes=False)
    market.post_quote(shown + market.rng.randint(400, 860))


def _boosted(boost: int) -> Special:
    """A second whose quotes all rest ``boost`` more shares on both sides."""

    def second(market: SyntheticMarket, start_ms: int) -> None:
        market.book_boost = boost
        market.move_quote(start_ms)
        market.background_second(start_ms, BASE_RATE)

    return second


def _quiet(market: SyntheticMarket) -> None:
    _flow(market, range(0, 1200), special={300: _flicker, 840: _flicker})


def _large_sellers(market: SyntheticMarket) -> None:
    sweeps = {480: _sweep(12_000), 520: _sweep(15_000), 560: _sweep(25_000), 600: _sweep(11_000)}
    _flow(market, range(0, 720), special=sweeps)


def _red_burst(market: SyntheticMarket) -> None:
    def rate(second: int) -> float:
        return BASE_RATE * (5.0 if 420 <= second < 510 else 1.0)

    def sells(second: int) -> float:
        return 0.75 if 420 <= second < 510 else 0.5

    _flow(market, range(0, 720), rate=rate, sell_share=sells)


def _two_sided(market: SyntheticMarket) -> None:
    special: dict[int, Special] = {}
    for start in (240, 330, 420):  # over a minute apart: a return within a minute is the same seller
        for second in range(start, start + 8):
            special[second] = _boosted(12_000)
        special[start + 8] = _boosted(0)
    _flow(market, range(0, 600), special=special)


def _stale_feed(market: SyntheticMarket) -> None:
    _flow(market, range(0, 720))


def _gap(market: SyntheticMarket) -> None:
    def rate(second: int) -> float:
        return BASE_RATE * (2.5 if second >= 510 else 1.0)

    _flow(market, [*range(0, 420), *range(510, 840)], rate=rate)


def _index_selloff(market: SyntheticMarket) -> None:
    def sells(second: int) -> float:
        return 0.7 if 600 <= second < 900 else 0.5

    slide: dict[int, Special] = dict.fromkeys(range(600, 900), _sliding)
    _flow(market, range(0, 1200), sell_share=sells, special=slide)


def _sliding(market: SyntheticMarket, start_ms: int) -> None:
    """A second that opens two cents lower (the index sliding), then flow with 70% of the prints selling."""
    market.mid_cents -= 2
    market.post_quote(start_ms)
    market.background_second(start_ms, BASE_RATE * _volume_swing((start_ms - START_MS) // 1000), 0.7)


_BUILDERS: dict[str, Callable[[SyntheticMarket], None]] = {
    "quiet": _quiet,
    "large-sellers": _large_sellers,
    "red-burst": _red_burst,
    "two-sided": _two_sided,
    "stale-feed": _stale_feed,
    "gap": _gap,
}
SCENARIOS: tuple[str, ...] = tuple(_BUILDERS)
"""The stock scenarios (the demo plays each)."""
_INDEX_BUILDERS: dict[str, Callable[[SyntheticMarket], None]] = {"index-selloff": _index_selloff}
_INDEX_CENTS = 50_000  # an index's price ($500): its background's random walk is then a few bps in 5 minutes
INDEX_SCENARIOS: tuple[str, ...] = tuple(_INDEX_BUILDERS)
"""The scenarios of an index (a market symbol: SPY), for the market context and the market-wide sell-off."""


def _arrival_lag_ms(name: str, t_ms: int, rng: random.Random) -> int:
    lag = rng.randint(2, 20)
    if name == "stale-feed":
        second = (t_ms - START_MS) // 1000
        if 360 <= second < 390:
            lag += 12_000
        elif 390 <= second < 400:
            lag += 35_000
    return lag


def frames(name: str, seed: int = 7, symbol: str = SYMBOL) -> Iterator[tuple[int, bytes]]:
    """``(ts_recv_ns, frame)`` of a scenario, in receive order."""
    build = _BUILDERS.get(name) or _INDEX_BUILDERS.get(name)
    if build is None:
        raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join((*SCENARIOS, *INDEX_SCENARIOS))}")
    market = SyntheticMarket(rng=random.Random(f"{name}:{seed}"), symbol=symbol)
    if name in _INDEX_BUILDERS:
        market.mid_cents = _INDEX_CENTS
    market.post_quote(START_MS)
    build(market)
    market.events.sort(key=lambda item: (item[0], item[1]))
    lag_rng = random.Random(f"{name}:{seed}:lag")
    bucket: list[dict] = []
    bucket_index = 0
    encoder = msgspec.json.Encoder()
    for t_ms, _order, event in market.events:
        index = t_ms // FRAME_MS
        if bucket and index != bucket_index:
            yield _sealed_frame(name, bucket_index, bucket, lag_rng, encoder)
            bucket = []
        bucket_index = index
        bucket.append(event)
    if bucket:
        yield _sealed_frame(name, bucket_index, bucket, lag_rng, encoder)


def _sealed_frame(
    name: str, index: int, bucket: list[dict], rng: random.Random, encoder: msgspec.json.Encoder
) -> tuple[int, bytes]:
    frame_end_ms = (index + 1) * FRAME_MS
    receive_ms = frame_end_ms + _arrival_lag_ms(name, frame_end_ms, rng)
    return receive_ms * NANOSECONDS_PER_MILLISECOND, encoder.encode(bucket)


def write_scenario(name: str, path: Path, seed: int = 7, symbol: str = SYMBOL) -> int:
    """Write a scenario capture file; returns the number of frames."""
    count = 0
    with path.open("wb") as out:
        for ts_recv, frame in frames(name, seed, symbol):
            out.write(format_line(ts_recv, frame))
            count += 1
    return count
