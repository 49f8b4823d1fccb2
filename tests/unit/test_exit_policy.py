"""The bot owner's exit policy: every scope × action × choice with its exact decisions, the per-context override,
validation, and the tightened stop (never looser, on a valid tick); hypothesis: no decision for an unheld symbol,
never a lowered stop."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderflow_client.exit_policy import ExitPolicy, PolicyDecision, for_position, named_positions, position_id
from orderflow_client.prices import tick_size
from orderflow_client.wire import ExitRecommendation, MarketContext
from tests.support.events import D, recommendation

CHOICES = ("exit", "tighten_stops", "ignore")


def market(action: str = "exit", symbols: tuple[str, ...] = ("AAPL", "MSFT", "NVDA")) -> ExitRecommendation:
    """A market-scope recommendation as the detector sends it: SPY is sold, naming three open positions."""
    return msgspec.structs.replace(
        recommendation("market_selloff", number=5, symbol="SPY"),
        scope="market",
        symbols=symbols,
        action=action,
        expected_fall_bps=35.0,
        cost_bps=2.1,
        reasoning="SPY fell 42 bps in 300 s",
        context=MarketContext(label="market_wide", index="SPY", window_seconds=300, index_return_bps=-42.0),
    )


def single(action: str = "exit", label: str | None = None) -> ExitRecommendation:
    context = MarketContext(label=label) if label else None
    return msgspec.structs.replace(
        recommendation(number=3), action=action, expected_fall_bps=20.0, cost_bps=4.0, context=context
    )


def test_the_defaults_exit_a_symbol_tighten_on_the_market_and_ignore_a_watch():
    policy = ExitPolicy()
    assert (policy.symbol, policy.market, policy.watch, policy.tighten_to_pct) == (
        "exit",
        "tighten_stops",
        "ignore",
        0.5,
    )
    assert policy.decide(single(), {"AAPL", "MSFT"}) == [
        PolicyDecision(
            recommendation_id="AAPL:exit:large_sellers:3",
            position_id="AAPL:exit:large_sellers:3",
            symbol="AAPL",
            choice="exit",
            reason="exit: the stock's own sellers (expected fall 20.0 bps, cost 4.0 bps, context unknown): "
            "3 large sellers within 80 s",
            scope="symbol",
            action="exit",
        )
    ]
    decided = policy.decide(market(), {"AAPL", "NVDA", "TSLA"})
    assert [(d.symbol, d.choice, d.position_id) for d in decided] == [
        ("AAPL", "tighten_stops", "SPY:exit:market_selloff:5@AAPL"),
        ("NVDA", "tighten_stops", "SPY:exit:market_selloff:5@NVDA"),
    ]
    assert decided[0].reason == (
        "tighten_stops: the market is sold (SPY; expected fall 35.0 bps, cost 2.1 bps, context market_wide): "
        "SPY fell 42 bps in 300 s"
    )
    watched = policy.decide(market("watch"), {"MSFT"})
    assert [(d.symbol, d.choice, d.action) for d in watched] == [("MSFT", "ignore", "watch")]
    assert watched[0].reason.startswith("ignore: a market-scope watch (expected fall 35.0 bps")


@pytest.mark.parametrize("scope", ["symbol", "market"])
@pytest.mark.parametrize("action", ["exit", "watch"])
@pytest.mark.parametrize("choice", CHOICES)
def test_every_scope_action_and_choice(scope, action, choice):
    """The choice configured for the case is what each held position gets; the others' settings do not leak in."""
    others = next(other for other in CHOICES if other != choice)
    if action == "watch":
        policy = ExitPolicy(symbol=others, market=others, watch=choice)
    elif scope == "market":
        policy = ExitPolicy(symbol=others, market=choice, watch=others)
    else:
        policy = ExitPolicy(symbol=choice, market=others, watch=others)
    item = market(action) if scope == "market" else single(action)
    held = {"AAPL", "MSFT", "NVDA", "TSLA"}
    decided = policy.decide(item, held)
    expected = ["AAPL", "MSFT", "NVDA"] if scope == "market" else ["AAPL"]
    assert [(d.symbol, d.choice, d.scope, d.action) for d in decided] == [(s, choice, scope, action) for s in expected]
    assert all(d.reason.startswith(f"{choice}: ") and d.recommendation_id == item.id for d in decided)


def test_a_context_label_overrides_a_symbol_exit_but_not_a_watch_nor_the_market():
    policy = ExitPolicy(context={"market_wide": "tighten_stops", "stock_specific": "exit"})
    assert [d.choice for d in policy.decide(single(label="market_wide"), {"AAPL"})] == ["tighten_stops"]
    assert policy.decide(single(label="market_wide"), {"AAPL"})[0].reason.startswith(
        "tighten_stops: a market_wide exit"
    )
    assert [d.choice for d in policy.decide(single(label="mixed"), {"AAPL"})] == ["exit"]  # no override: symbol
    assert [d.choice for d in policy.decide(single("watch", label="market_wide"), {"AAPL"})] == ["ignore"]
    assert [
        d.choice for d in ExitPolicy(market="exit", context={"market_wide": "ignore"}).decide(market(), {"MSFT"})
    ] == ["exit"]


def test_nothing_for_a_symbol_not_held_and_each_named_position_once():
    assert ExitPolicy().decide(single(), {"MSFT"}) == []
    assert ExitPolicy().decide(market(), set()) == []
    assert ExitPolicy().decide(market(), {"SPY"}) == []  # the index itself is not named: only the positions are
    twice = market(symbols=("AAPL", "AAPL", "MSFT"))
    assert [d.symbol for d in ExitPolicy().decide(twice, {"AAPL", "MSFT"})] == ["AAPL", "MSFT"]
    assert named_positions(twice) == ("AAPL", "MSFT") and named_positions(single()) == ("AAPL",)


def test_a_market_recommendation_for_one_position_decides_only_it_under_the_same_key():
    """What the risk client hands on_exit for one position gives that position's decision, with the key the
    client marks it under."""
    delivered = for_position(market(), "MSFT")
    assert (delivered.id, delivered.symbol, delivered.symbols, delivered.scope) == (
        "SPY:exit:market_selloff:5",
        "MSFT",
        ("MSFT",),
        "market",
    )
    assert delivered.context is not None and delivered.context.index == "SPY"
    decided = ExitPolicy().decide(delivered, {"AAPL", "MSFT", "NVDA"})
    assert [(d.symbol, d.position_id) for d in decided] == [("MSFT", "SPY:exit:market_selloff:5@MSFT")]
    assert position_id("SPY:exit:market_selloff:5", "market", "MSFT") == decided[0].position_id
    assert position_id("AAPL:exit:red_burst:1", "symbol", "AAPL") == "AAPL:exit:red_burst:1"


@pytest.mark.parametrize(
    "settings",
    [
        {"symbol": "sell"},
        {"market": "tighten_stop"},
        {"watch": "exit_now"},
        {"tighten_to_pct": 0.0},
        {"tighten_to_pct": 25.0},
        {"context": {"market_wide": "hold"}},
        {"context": {"marketwide": "exit"}},
    ],
)
def test_a_policy_is_validated_when_made(settings):
    with pytest.raises(ValueError, match="ExitPolicy"):
        ExitPolicy(**settings)


def test_a_policy_is_immutable():
    policy = ExitPolicy(context={"market_wide": "tighten_stops"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.market = "exit"  # type: ignore[misc]
    with pytest.raises(TypeError):
        policy.context["mixed"] = "exit"  # type: ignore[index]


@pytest.mark.parametrize(
    ("price", "stop", "quantity", "percent", "expected"),
    [
        (187_430_000_000, 184 * D, 200, 0.5, 186_490_000_000),  # 0.5 % under $187.43 is 186.4928: down to the penny
        (187_430_000_000, 187 * D, 200, 0.5, 187 * D),  # the stop is already tighter: kept
        (187_430_000_000, 0, 200, 1.0, 185_550_000_000),  # no stop yet: 185.5557 → 185.55
        (50 * D, 45 * D, 100, 0.25, 49_870_000_000),  # 49.875 → 49.87
        (800_000_000, 0, 1000, 0.5, 796_000_000),  # $0.80: ticks of $0.0001
        (50 * D, 52 * D, -100, 0.5, 50_250_000_000),  # a short: over the ask, never higher than its stop
        (50 * D, 50_100_000_000, -100, 0.5, 50_100_000_000),  # a short's tighter stop is kept
    ],
)
def test_the_tightened_stop(price, stop, quantity, percent, expected):
    assert ExitPolicy(tighten_to_pct=percent).tightened_stop(price, stop, quantity) == expected


def test_a_stop_needs_a_price_and_a_position():
    with pytest.raises(ValueError, match="positive price"):
        ExitPolicy().tightened_stop(0, 10 * D, 100)
    with pytest.raises(ValueError, match="positive price"):
        ExitPolicy().tightened_stop(10 * D, 9 * D, 0)


symbols = st.sampled_from(["AAPL", "MSFT", "NVDA", "TSLA", "SPY", "AMZN"])


@given(
    scope=st.sampled_from(["symbol", "market"]),
    action=st.sampled_from(["exit", "watch"]),
    named=st.lists(symbols, max_size=6),
    held=st.sets(symbols),
    choices=st.tuples(*[st.sampled_from(CHOICES)] * 3),
)
def test_never_a_decision_for_a_symbol_not_held(scope, action, named, held, choices):
    item = msgspec.structs.replace(
        recommendation(symbol=named[0] if named and scope == "symbol" else "SPY"),
        scope=scope,
        symbols=tuple(named) if scope == "market" else (),
        action=action,
    )
    decided = ExitPolicy(*choices).decide(item, held)
    assert {d.symbol for d in decided} <= held
    assert len({d.position_id for d in decided}) == len(decided)  # one per position, each with a key of its own
    expected = [s for s in dict.fromkeys(named if scope == "market" else [item.symbol]) if s in held]
    assert [d.symbol for d in decided] == expected


@given(
    price=st.integers(min_value=1_000_000, max_value=5_000 * D),
    stop=st.integers(min_value=0, max_value=6_000 * D),
    quantity=st.integers(min_value=-10_000, max_value=10_000).filter(bool),
    hundredths=st.integers(min_value=1, max_value=2_000),
)
def test_never_a_lowered_stop_and_always_on_a_tick(price, stop, quantity, hundredths):
    new = ExitPolicy(tighten_to_pct=hundredths / 100).tightened_stop(price, stop, quantity)
    if quantity > 0:
        assert new >= stop  # a long's stop only ever moves up
        assert new == stop or (new < price and new % tick_size(new) == 0)
    else:
        assert stop == 0 or new <= stop  # a short's only ever down
        assert new == stop or (new > price and new % tick_size(new) == 0)


def test_what_a_choice_came_to_on_a_position():
    """carried_out: the decision a bot logs and records for the policy's choice on a long AAPL at $180, stop $184."""
    from orderflow_client.decisions import carried_out
    from orderflow_client.positions import Position

    held = Position(symbol="AAPL", quantity=200, entry_price=180 * D, stop_loss=184 * D)
    [tighten] = ExitPolicy().decide(market(), {"AAPL"})
    [out] = ExitPolicy().decide(single(), {"AAPL"})
    [ignored] = ExitPolicy().decide(single("watch"), {"AAPL"})
    last = 187_440_000_000
    tightened = carried_out(tighten, held, last, 186_490_000_000)
    assert (tightened.action, tightened.new_stop, tightened.reasons[:2]) == (
        "tighten_stop",
        186_490_000_000,
        ("tighten the stop to 186.49", tighten.reason),
    )
    assert tightened.reasons[2] == "unrealised P&L +1,488.00 USD (+4.13 %)"
    kept = carried_out(tighten, held, last, 184 * D)  # the stop was already as tight: kept, decision hold
    assert (kept.action, kept.new_stop, kept.reasons[0]) == ("hold", 0, "hold: the stop at 184.00 is already as tight")
    assert carried_out(out, held, last).action == "exit" and carried_out(out, held, last).reasons[0] == "exit AAPL"
    assert carried_out(ignored, held, last).reasons[0] == "ignore (watch)"


async def test_the_bid_a_stop_goes_under_is_the_newest_quote_or_book_else_the_last_print():
    import uuid

    from orderflow_client.bus.connection import Bus
    from orderflow_client.decisions import last_bid_price
    from orderflow_client.wire import BookUpdate, MarketEvents, Quote, Trade, encode

    bus = await Bus.connect(None, prefix=f"bid-{uuid.uuid4().hex[:8]}")
    stream = bus.keys.market("AAPL")
    assert await last_bid_price(bus, "AAPL") is None
    await bus.client.xadd(
        stream, {"e": encode(Trade(symbol="AAPL", ts_event=1, ts_recv=1, ts_arrival=1, price=187 * D, size=1))}
    )
    assert await last_bid_price(bus, "AAPL") == 187 * D  # no quote yet: the last print
    quote = Quote(
        symbol="AAPL", ts_event=2, ts_recv=2, ts_arrival=2, bid_price=186 * D, bid_size=1, ask_price=188 * D, ask_size=1
    )
    book = BookUpdate(
        symbol="AAPL", ts_event=3, ts_recv=3, ts_arrival=3, bids=((185 * D, 100),), asks=((189 * D, 100),)
    )
    await bus.client.xadd(stream, {"e": encode(MarketEvents(events=(quote, book)))})
    assert await last_bid_price(bus, "AAPL") == 185 * D  # the newest of the batch: the book's best bid
    await bus.client.xadd(
        stream, {"e": encode(Trade(symbol="AAPL", ts_event=4, ts_recv=4, ts_arrival=4, price=190 * D, size=1))}
    )
    assert await last_bid_price(bus, "AAPL") == 185 * D  # a later print does not replace the bid
    await bus.close()
