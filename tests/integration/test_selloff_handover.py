"""SPY's lease changing hands in the middle of its sell-off, on a real Redis, through the real detectors
(:class:`~services.detector.service.DetectorService`: leases, index tail, group, warm-up, take-over, recovery),
driven by hand (refresh, drain) so each step is exact. The episode is raised once: the published market_selloff
alerts and market exits are exactly those of one engine that ran every event (one each, same ids), and the new
owner's SPY sell share at the end equals that engine's (no print counted twice).

The new owner is either the detector that tailed SPY so far (its index state level with the processed history, or
ahead of it: it read entries the old owner had not handled) or a fresh one that never read SPY. The old owner stops
cleanly (its leases released) or dies mid-batch (its entries left pending, its lease expiring)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from orderflow_client.bus.connection import Bus
from orderflow_client.positions import PositionRegistry
from orderflow_client.wire import ExitRecommendation, OrderFlowAlert, Quote, Trade, decode
from services.detector.engine import Engine
from services.detector.rule_settings import RuleSettings
from services.detector.service import DetectorService
from shared.config import OrderFlowConfig
from shared.ownership import preferred
from tests.support.events import MS, T0, D, Feed, S
from tests.support.waiting import wait_for_async

pytestmark = pytest.mark.redis

LEASE_SECONDS = 2.0
FALL_STARTS = 300  # s after T0: SPY is flat at $500.00 until then, then falls 0.25 bps a second
MIDDLE = 500  # s after T0: the old owner handled SPY up to here (the episode started at about 420 s)
TAILED = 520  # s after T0: the entries up to here were published before the hand-over (the old owner left them)
END = 700  # s after T0: the last second published (after the hand-over); the fall holds to the end


def spy_path(bid_at: Callable[[int], int]) -> list[Quote | Trade]:
    """SPY each second from T0 to END: a quote a cent wide (bid ``bid_at(second)``), then 1,000 shares sold at the
    bid 200 ms into the second (the second's last event is a print)."""
    feed = Feed("SPY")
    events: list[Quote | Trade] = []
    for second in range(END + 1):
        bid, ts = bid_at(second), T0 + second * S
        events.append(feed.quote(ts, bid=bid, ask=bid + D // 100, bid_size=5_000, ask_size=5_000))
        events.append(feed.trade(ts + 200 * MS, bid, 1_000, side="sell"))
    return events


def spy_selloff() -> list[Quote | Trade]:
    """SPY flat at $500.00 until FALL_STARTS, then falling 0.25 bps a second to END."""
    return spy_path(lambda second: 500 * D - 500 * D * max(0, second - FALL_STARTS) // 40_000)


def between(events: list[Quote | Trade], start: int, end: int) -> list[Quote | Trade]:
    """The events of the seconds ``start`` ≤ s < ``end`` after T0."""
    return [event for event in events if T0 + start * S <= event.ts_event < T0 + end * S]


def names_apart() -> tuple[str, str]:
    """Two detector names, the first preferred for SPY and the second for AAA."""
    for number in range(100):
        members = [f"handover-{number}a", f"handover-{number}b"]
        if preferred("SPY", members) != preferred("AAA", members):
            return preferred("SPY", members), preferred("AAA", members)
    raise AssertionError("no pair of names splits the symbols")


async def publish(bus: Bus, events: list[Quote | Trade]) -> None:
    await bus.publish_market_events([(bus.keys.market(event.symbol), event) for event in events])


async def published(bus: Bus) -> tuple[list[OrderFlowAlert], list[ExitRecommendation]]:
    alerts = [decode(entry.payload) for entry in await bus.read_range(bus.keys.alerts)]
    exits = [decode(entry.payload) for entry in await bus.read_range(bus.keys.exits)]
    return alerts, exits  # type: ignore[return-value]


def owned(detector: DetectorService) -> list[str]:
    return sorted(detector.group_consumer.streams.values())


async def settle(*detectors: DetectorService, wanted: list[list[str]]) -> None:
    """Refresh the detectors in turn until each reads exactly its ``wanted`` symbols."""

    async def settled() -> bool:
        for detector in detectors:
            await detector.refresh()
        return [owned(detector) for detector in detectors] == wanted

    await wait_for_async(settled, timeout=10, what=f"the symbols settled as {wanted}")


@pytest.mark.parametrize(
    "handover", ["tail_level_clean_stop", "tail_ahead_clean_stop", "tail_ahead_died_mid_batch", "fresh_detector"]
)
async def test_a_selloff_continued_by_the_next_owner_of_spy_is_raised_once(handover, redis_url, key_prefix):
    config = OrderFlowConfig(key_prefix=key_prefix, threshold_mode="absolute", detector_lease_seconds=LEASE_SECONDS)
    spy = spy_selloff()
    index_owner, stock_owner = names_apart()
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        await PositionRegistry(bus).open("AAA", quantity=100, entry_price="50.00")
        old = DetectorService(config, bus, consumer=index_owner)
        if handover == "fresh_detector":
            await settle(old, wanted=[["AAA", "SPY"]])
        else:
            new = DetectorService(config, bus, consumer=stock_owner)
            await settle(old, new, wanted=[["SPY"], ["AAA"]])
            assert new.index_tail.tailed == ["SPY"]

        await publish(bus, between(spy, 0, MIDDLE))
        await old.drain()
        alerts, exits = await published(bus)
        assert [alert.alert_type for alert in alerts] == ["market_selloff"]  # the episode started before MIDDLE
        assert len(exits) == 1

        await publish(bus, between(spy, MIDDLE, TAILED))  # not handled by the old owner, unless the tail is level
        if handover == "tail_level_clean_stop":
            await old.drain()
            await old.leave()
        elif handover == "tail_ahead_died_mid_batch":  # delivered to it, never acknowledged: pending, then it dies
            delivered = await bus.read_group(config.consumer_group, index_owner, [bus.keys.market("SPY")], count=1000)
            assert delivered
        else:
            await old.leave()
        if handover == "fresh_detector":
            new = DetectorService(config, bus, consumer=stock_owner)
        else:
            await new.drain()  # its tail reads SPY up to TAILED: ahead of what the group processed, or level
            assert new.engine.market is not None
            assert new.engine.market.states["SPY"].last_print_ts == T0 + (TAILED - 1) * S + 200 * MS
        await settle(new, wanted=[["AAA", "SPY"]])  # after the lease expired, when the old owner died
        assert new.index_tail.tailed == []

        await publish(bus, between(spy, TAILED, END + 1))
        await new.drain()

        await assert_as_one_engine(bus, config, spy, new)
        assert (await published(bus))[0][0].ts_event < T0 + MIDDLE * S  # raised by the old owner


async def assert_as_one_engine(bus: Bus, config: OrderFlowConfig, spy: list[Quote | Trade], new: DetectorService):
    """The published alerts and exits are those of one engine that ran every SPY event (one market_selloff, one
    market exit) and ``new``'s SPY state ends as that engine's (each print counted once)."""
    offline = Engine(RuleSettings.from_config(config), config=config)
    offline.set_open_positions(["AAA"])
    expected = [output for event in spy for output in offline.process(event)]
    alerts, exits = await published(bus)
    assert [alert.id for alert in alerts] == [o.id for o in expected if isinstance(o, OrderFlowAlert)]
    assert [exit.id for exit in exits] == [o.id for o in expected if isinstance(o, ExitRecommendation)]
    assert len(alerts) == len(exits) == 1  # one episode: one market_selloff, one market exit

    last = spy[-1].ts_event
    assert new.engine.market is not None and offline.market is not None
    now, reference = new.engine.market.states["SPY"], offline.market.states["SPY"]
    assert now.volumes(last) == reference.volumes(last) == (300 * 1_000, 0)  # each print counted once
    assert now.return_bps(last) == reference.return_bps(last)


async def test_a_fresh_owner_warms_an_index_up_over_two_context_windows(redis_url, key_prefix):
    """SPY drops 35 bps in a second at 100 s and again at 660 s (a 300 s window, a 30 bps threshold): the fall
    holds until 400 s, so the second drop is the same episode. The old owner handled it to 650 s; a fresh detector
    warmed up over the consumer's 540 s would start SPY's path at 110 s, past the first drop, and raise the second
    as a new episode: the index's warm-up reaches two context windows and the staleness limit (660 s) back."""
    config = OrderFlowConfig(key_prefix=key_prefix, threshold_mode="absolute", detector_lease_seconds=LEASE_SECONDS)
    drop = 500 * D * 35 // 10_000
    spy = spy_path(lambda second: 500 * D - drop * ((second >= 101) + (second >= 660)))
    index_owner, stock_owner = names_apart()
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        await PositionRegistry(bus).open("AAA", quantity=100, entry_price="50.00")
        old = DetectorService(config, bus, consumer=index_owner)
        await settle(old, wanted=[["AAA", "SPY"]])
        await publish(bus, between(spy, 0, 651))
        await old.drain()
        first_alert = [alert.ts_event for alert in (await published(bus))[0]]
        assert first_alert == [T0 + 150 * S]  # once half the window was observed
        await old.leave()
        new = DetectorService(config, bus, consumer=stock_owner)
        await settle(new, wanted=[["AAA", "SPY"]])
        await publish(bus, between(spy, 651, END + 1))
        await new.drain()
        await assert_as_one_engine(bus, config, spy, new)
        assert new.stats.warmed_up_events == 2 * 651  # the whole stream: from 650 s back to 0 s (-10 s)


def test_an_index_state_is_kept_for_context_until_the_warm_up_feeds_it_and_then_starts_afresh():
    """``restart_index`` (the warm-up's first step) leaves the tail's state in place for other alerts' context while
    the history is read; the warm-up's first event replaces it, so the history fed again counts each print once."""
    config = OrderFlowConfig(threshold_mode="absolute")
    spy = between(spy_selloff(), 0, TAILED)
    engine = Engine(RuleSettings.from_config(config), config=config)
    for event in spy:  # a tail
        engine.observe_index(event)
    assert engine.market is not None
    tailed = engine.market.states["SPY"]
    assert engine.market.restart_index("AAA", 540 * S) == 540 * S  # a stock: its window, nothing forgotten
    assert engine.market.restart_index("SPY", 540 * S) == (2 * 300 + 60) * S
    assert engine.market.states["SPY"] is tailed
    for event in spy:  # the warm-up
        engine.process(event)
    rebuilt = engine.market.states["SPY"]
    assert rebuilt is not tailed and engine.market.restarting == set()
    last = spy[-1].ts_event
    assert tailed.volumes(last) == (300 * 1_000, 0) and rebuilt.volumes(last) == tailed.volumes(last)


async def test_a_detector_giving_spy_up_tails_it_again_counting_each_print_once(redis_url, key_prefix):
    """The other direction: the detector owning SPY mid-episode gives it up to a newcomer preferred for it and tails
    it again. The tail's start feeds the stream's last events again: into the state its rules built, the prints at
    that state's last timestamp were counted twice (301,000 shares sold in the window, not 300,000). Its state now
    starts afresh (minute mids kept) and equals one engine's that ran every event, at the hand-over and at the end,
    as do the contexts it gives over the staleness limit; the episode is still raised once. SPY falls from the start
    (0.25 bps a second), so a re-feed short of the staleness limit, or starting at a print (a trades-only path until
    the next quote), gives other returns."""
    config = OrderFlowConfig(key_prefix=key_prefix, threshold_mode="absolute", detector_lease_seconds=LEASE_SECONDS)
    spy = spy_path(lambda second: 500 * D - 500 * D * second // 40_000)
    newcomer_name, giver_name = names_apart()  # the newcomer is preferred for SPY, the giver for AAA
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        await PositionRegistry(bus).open("AAA", quantity=100, entry_price="50.00")
        giver = DetectorService(config, bus, consumer=giver_name)
        await settle(giver, wanted=[["AAA", "SPY"]])  # alone: it owns SPY too
        await publish(bus, between(spy, 0, MIDDLE))
        await giver.drain()
        assert [alert.alert_type for alert in (await published(bus))[0]] == ["market_selloff"]
        assert giver.engine.market is not None
        minutes = giver.engine.market.minutes["SPY"]

        newcomer = DetectorService(config, bus, consumer=newcomer_name)
        await settle(giver, newcomer, wanted=[["AAA"], ["SPY"]])
        assert giver.index_tail.tailed == ["SPY"]
        handed_over = T0 + (MIDDLE - 1) * S + 200 * MS  # the last print the giver processed, and its tail re-read
        state = giver.engine.market.states["SPY"]
        assert state.last_print_ts == handed_over
        assert state.volumes(handed_over) == (300 * 1_000, 0)  # was (301,000, 0): the last print twice
        assert giver.engine.market.minutes["SPY"] is minutes  # kept: σ and beta need the days' minutes
        assert_contexts_as_one_engine(config, between(spy, 0, MIDDLE), giver)

        await publish(bus, between(spy, MIDDLE, END + 1))
        await newcomer.drain()
        await giver.drain()
        await assert_as_one_engine(bus, config, spy, giver)
        assert_contexts_as_one_engine(config, spy, giver)


def assert_contexts_as_one_engine(config: OrderFlowConfig, spy: list[Quote | Trade], tail: DetectorService) -> None:
    """The contexts ``tail``'s SPY state gives an alert up to the staleness limit behind its last event, each
    second, are those of one engine that ran ``spy``."""
    offline = Engine(RuleSettings.from_config(config), config=config)
    for event in spy:
        offline.process(event)
    assert offline.market is not None and tail.engine.market is not None
    last = spy[-1].ts_event
    for ts in range(last - 60 * S, last + 1, S):
        assert tail.engine.market.context("AAA", ts) == offline.market.context("AAA", ts)
