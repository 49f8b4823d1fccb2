"""A halt of an index's monitoring seen by the detectors that only tail it, on a real Redis through the real
detectors (the set-up of tests/integration/test_selloff_handover.py).

The owner of SPY halts its monitoring when SPY's data fails the integrity checks (here: prints and quotes arriving
15 s after their event time) and labels its stocks' context ``unknown`` until it resumes; it says so only on the
status stream, which a detector's Redis user cannot read. A tailing detector runs the same checks on the same
events: its alerts' context is ``unknown`` from the halt to the resumption (event time, whatever it read since), the
events the checks reject do not move its index state (nor the owner's), and its contexts are those of one engine that
ran every event."""

from __future__ import annotations

import msgspec
import pytest

from orderflow_client.bus.connection import Bus
from orderflow_client.positions import PositionRegistry
from orderflow_client.wire import FeedStatus, MarketContext, OrderFlowAlert, Quote, Trade, decode
from services.detector.engine import Engine
from services.detector.index_reader import IndexTail
from services.detector.outputs import Output
from services.detector.rule_settings import RuleSettings
from services.detector.service import DetectorService
from shared.config import OrderFlowConfig
from tests.integration.test_market_symbols_live import stock_large_seller
from tests.integration.test_selloff_handover import END, between, names_apart, publish, settle, spy_path, spy_selloff
from tests.support.events import MS, T0, D, S

pytestmark = pytest.mark.redis

LATE_FROM, LATE_TO = 450, 455  # s after T0: SPY's events of these seconds arrive 15 s late (stale_data: halted)
RESUMED = 485  # s after T0: 30 s (resume_after_seconds) of valid events after the first valid one, at 455 s
HALTED_REASON = "monitoring of SPY is halted (its data failed the integrity checks): no market context."


def late(events: list[Quote | Trade], *spans: tuple[int, int]) -> list[Quote | Trade]:
    """``events``, those of the seconds ``start`` ≤ s < ``end`` after T0 of each span arriving 15 s late."""
    return [
        msgspec.structs.replace(event, ts_arrival=event.ts_event + 15 * S)
        if any(T0 + start * S <= event.ts_event < T0 + end * S for start, end in spans)
        else event
        for event in events
    ]


def spy_halted() -> list[Quote | Trade]:
    """SPY flat at $500.00 until 300 s, then falling 0.25 bps a second (spy_selloff); late from 450 s to 455 s."""
    return late(spy_selloff(), (LATE_FROM, LATE_TO))


def new_engine(config: OrderFlowConfig) -> Engine:
    """An engine with AAA held, no event run yet."""
    engine = Engine(RuleSettings.from_config(config), config=config)
    engine.set_open_positions(["AAA"])
    return engine


def one_engine(config: OrderFlowConfig, events: list[Quote | Trade]) -> tuple[Engine, list[Output]]:
    """One engine (AAA held) that ran every event of ``events`` in event order, and its outputs."""
    engine = new_engine(config)
    merged = sorted(events, key=lambda event: event.ts_event)
    return engine, [output for event in merged for output in engine.process(event)]


def labels(engine: Engine, *seconds: float) -> list[str]:
    """The context's label of an AAA alert at each of ``seconds`` after T0 (an unknown one: its reason)."""
    assert engine.market is not None
    contexts = [engine.market.context("AAA", T0 + int(second * S)) for second in seconds]
    return [context.reason if context.label == "unknown" else context.label for context in contexts]


async def statuses_of(bus: Bus, symbol: str) -> list[FeedStatus]:
    """The statuses about ``symbol`` on the status stream (read here as the administrator)."""
    statuses = [decode(entry.payload) for entry in await bus.read_range(bus.keys.status)]
    return [status for status in statuses if isinstance(status, FeedStatus) and symbol in status.symbols]


async def test_a_tailing_detectors_alerts_have_no_market_context_while_the_owner_halts_spy(redis_url, key_prefix):
    """AAA sells 12,000 shares before the halt (410.5 s), during it (475.5 s) and after it (560.5 s); the detector
    tailing SPY handles the second after reading SPY up to 500 s, past the resumption: still unknown, as of the
    alert."""
    config = OrderFlowConfig(key_prefix=key_prefix, threshold_mode="absolute", detector_lease_seconds=2.0)
    spy = between(spy_halted(), 0, 562)
    sales = [T0 + 410 * S + 500 * MS, T0 + 475 * S + 500 * MS, T0 + 560 * S + 500 * MS]
    spy_read_to = [412, 500, 562]  # s after T0: SPY published (and tailed) before each sale's batch
    aaa = [stock_large_seller("AAA", at) for at in sales]
    index_owner, stock_owner = names_apart()
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        await PositionRegistry(bus).open("AAA", quantity=100, entry_price="50.00")
        owner = DetectorService(config, bus, consumer=index_owner)
        tailing = DetectorService(config, bus, consumer=stock_owner)
        await settle(owner, tailing, wanted=[["SPY"], ["AAA"]])
        assert tailing.index_tail.tailed == ["SPY"]
        start = 0
        for stock, end in zip(aaa, spy_read_to, strict=True):
            await publish(bus, between(spy, start, end))
            await owner.drain()
            await publish(bus, stock)
            await tailing.drain()
            start = end

        alerts = [decode(entry.payload) for entry in await bus.read_range(bus.keys.alerts)]
        sellers: list[OrderFlowAlert] = [alert for alert in alerts if alert.symbol == "AAA"]  # type: ignore[union-attr]
        assert [seller.ts_event for seller in sellers] == sales
        contexts = [seller.context for seller in sellers]
        assert all(context is not None for context in contexts)
        assert [(c.label, c.index) for c in contexts] == [  # type: ignore[union-attr]
            ("market_wide", "SPY"),
            ("unknown", "SPY"),
            ("market_wide", "SPY"),
        ]
        assert contexts[1] == MarketContext(label="unknown", index="SPY", reason=HALTED_REASON)

        offline, produced = one_engine(config, [*spy, *(event for stock in aaa for event in stock)])
        expected = [o for o in produced if isinstance(o, OrderFlowAlert) and o.symbol == "AAA"]
        assert [seller.id for seller in sellers] == [alert.id for alert in expected]
        assert contexts == [alert.context for alert in expected]  # as one engine that ran every event
        halted, resumed = [status for status in await statuses_of(bus, "SPY") if status.source == "detector"]
        assert (halted.state, halted.code, halted.ts_event) == ("monitoring_halted", "stale_data", T0 + LATE_FROM * S)
        assert (resumed.state, resumed.ts_event) == ("monitoring_resumed", T0 + RESUMED * S)
        assert tailing.engine.market.tail_halts["SPY"] == [(halted.ts_event, resumed.ts_event)]  # the owner's halt
        assert offline.market is not None and tailing.engine.market is not None
        last = T0 + 561 * S + 200 * MS  # the tail's state: the owner's, without the events the checks rejected
        assert tailing.engine.market.states["SPY"].volumes(last) == offline.market.states["SPY"].volumes(last)
        assert tailing.engine.market.states["SPY"].volumes(last) == ((300 - 35) * 1_000, 0)


async def test_a_tail_started_during_a_halt_finds_it_in_the_stream_and_its_end_later(redis_url, key_prefix):
    """A detector starting (or giving SPY up) mid-halt: the re-feed of the stream's last events finds the halt; the
    tail's next reads find its end; the contexts are as of each moment asked about."""
    config = OrderFlowConfig(key_prefix=key_prefix, threshold_mode="absolute")
    spy = spy_halted()
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        engine = new_engine(config)
        tail = IndexTail(config, bus, engine)
        await publish(bus, between(spy, 0, 470))
        await tail.follow(["SPY"])

        assert labels(engine, 440, 449.9, 450, 469.5) == ["market_wide", "market_wide", HALTED_REASON, HALTED_REASON]
        assert engine.market is not None and engine.market.tail_halts["SPY"] == [(T0 + LATE_FROM * S, 0)]
        assert tail.observed == 2 * (470 - 109) - 2 * (470 - LATE_FROM)  # 109 s to 469 s, less the halt's events
        await publish(bus, between(spy, 470, 520))
        assert await tail.poll() == 2 * (520 - 470)  # read, the events before the resumption rejected
        assert labels(engine, 460, 484.9, 485, 519.5) == [HALTED_REASON, HALTED_REASON, "market_wide", "market_wide"]
        assert engine.market.tail_halts["SPY"] == [(T0 + LATE_FROM * S, T0 + RESUMED * S)]
        await tail.follow([])
        assert "SPY" not in engine.market.tail_halts


async def test_every_halt_the_tail_found_is_kept_for_an_alert_handled_after_the_next_one_began(redis_url, key_prefix):
    """SPY late from 540 s to 545 s (halted from 540 s, resumed at 575 s) and again from 590 s (halted from 590 s);
    the tail reads it to 600 s before a lagging stock's alert at 565.5 s is handled: unknown, as for one engine that
    ran every event (the last halt only: market_wide)."""
    config = OrderFlowConfig(key_prefix=key_prefix, threshold_mode="absolute")
    spy = late(spy_selloff(), (540, 545), (590, 595))
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        engine = new_engine(config)
        tail = IndexTail(config, bus, engine)
        await publish(bus, between(spy, 0, 530))
        await tail.follow(["SPY"])
        await publish(bus, between(spy, 530, 600))
        assert await tail.poll() == 2 * (600 - 530)
        assert engine.market is not None
        assert engine.market.tail_halts["SPY"] == [(T0 + 540 * S, T0 + 575 * S), (T0 + 590 * S, 0)]
        assert labels(engine, 539.5, 540, 565.5, 574.9, 575, 589.9, 590, 599.5) == [
            "market_wide",
            HALTED_REASON,
            HALTED_REASON,
            HALTED_REASON,
            "market_wide",
            "market_wide",
            HALTED_REASON,
            HALTED_REASON,
        ]
        at = T0 + 565 * S + 500 * MS
        _offline, produced = one_engine(config, [*between(spy, 0, 600), *stock_large_seller("AAA", at)])
        [alert] = [output for output in produced if isinstance(output, OrderFlowAlert) and output.symbol == "AAA"]
        assert alert.ts_event == at and alert.context == engine.market.context("AAA", at)


def test_the_halts_kept_reach_as_far_back_as_the_index_state_keeps():
    """A halt that ended the state's reach (window + staleness limit: 360 s) or more before the last halt or
    resumption found is forgotten; the others are kept, oldest first."""
    engine = new_engine(OrderFlowConfig(threshold_mode="absolute"))
    market = engine.market
    assert market is not None and market.keep_ns == 360 * S
    for start, end in [(100, 130), (200, 230), (500, 530)]:
        market.tail_halted("SPY", T0 + start * S, True)
        market.tail_halted("SPY", T0 + end * S, False)
    assert market.tail_halts["SPY"] == [(T0 + 200 * S, T0 + 230 * S), (T0 + 500 * S, T0 + 530 * S)]
    market.tail_halted("SPY", T0 + 590 * S, True)
    assert market.tail_halts["SPY"] == [(T0 + 500 * S, T0 + 530 * S), (T0 + 590 * S, 0)]
    market.tail_halted("SPY", T0 + 595 * S, True)  # halted already: the halt in progress goes on from 590 s
    assert market.tail_halts["SPY"][-1] == (T0 + 590 * S, 0)


XLK_HALTED = "monitoring of XLK is halted (its data failed the integrity checks): no market context."


def xlk_flat() -> list[Quote | Trade]:
    """XLK, AAA's sector ETF, flat at $200.00 each second to END (SPY's pattern: a quote, then a print at the bid)."""
    return [msgspec.structs.replace(event, symbol="XLK") for event in spy_path(lambda second: 200 * D)]


async def test_a_sector_etf_tailed_again_mid_halt_stays_its_stocks_index(redis_url, key_prefix):
    """AAA's index is XLK (sector_etfs), whose events arrive 15 s late from 100 s on; SPY falls from 300 s. The
    tail of XLK is started again at 470 s (as after giving its lease up): its re-feed, 109 s to 469 s, fails the
    checks throughout, so no event rebuilds XLK's state. AAA's context stays XLK's (unknown: halted), not SPY's
    (market_wide); so does that of a detector starting then, which never had a state of XLK."""
    config = OrderFlowConfig(key_prefix=key_prefix, threshold_mode="absolute", sector_etfs={"AAA": "XLK"})
    spy, xlk = spy_selloff(), late(xlk_flat(), (100, END + 1))
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        engine = new_engine(config)
        tail = IndexTail(config, bus, engine)
        await publish(bus, [*between(spy, 0, 100), *between(xlk, 0, 100)])
        await tail.follow(["SPY", "XLK"])
        await publish(bus, [*between(spy, 100, 470), *between(xlk, 100, 470)])
        while await tail.poll():
            pass
        assert engine.market is not None and engine.market.tail_halts["XLK"] == [(T0 + 100 * S, 0)]
        assert labels(engine, 465) == [XLK_HALTED]

        await tail.follow(["SPY"])
        await tail.follow(["SPY", "XLK"])
        assert engine.market.tail_halts["XLK"] == [(T0 + 109 * S, 0)]  # found again at the re-feed's first event
        assert not engine.market.states["XLK"].changes  # started afresh, nothing fed since: kept, empty
        assert labels(engine, 465) == [XLK_HALTED]
        assert engine.market.context("AAA", T0 + 465 * S).index == "XLK"

        fresh = new_engine(config)
        await IndexTail(config, bus, fresh).follow(["SPY", "XLK"])
        assert fresh.market is not None and "XLK" not in fresh.market.states
        assert labels(fresh, 465) == [XLK_HALTED]  # its halt is XLK's data too


def test_a_sector_etf_restarted_with_nothing_fed_or_all_rejected_stays_its_stocks_index():
    """A restart of XLK's state is this detector's, not a lack of XLK's data: a tail whose re-feed brings nothing
    (its stream emptied) leaves AAA's context unknown (no data of XLK), and the owner's warm-up whose first event
    fails the checks, unknown (XLK halted); SPY's (market_wide) before the fix."""
    config = OrderFlowConfig(threshold_mode="absolute", sector_etfs={"AAA": "XLK"})
    spy, xlk = between(spy_selloff(), 0, 470), between(xlk_flat(), 0, 470)
    owner, _outputs = one_engine(config, [*spy, *xlk])
    assert owner.market is not None and labels(owner, 465) == ["stock_specific"]
    owner.market.restart_index("XLK", 540 * S)
    owner.process(late(between(xlk_flat(), 470, 471), (470, 471))[0])  # the warm-up's first event: 15 s late
    assert owner.symbols["XLK"].integrity.halted and not owner.market.states["XLK"].changes
    assert labels(owner, 465) == [XLK_HALTED]

    giver, _outputs = one_engine(config, [*spy, *xlk])
    assert giver.market is not None
    giver.symbols.pop("XLK")  # its lease given up (DetectorService.refresh)
    giver.market.tail_index("XLK")  # and its tail's re-feed: nothing
    context = giver.market.context("AAA", T0 + 465 * S)
    assert (context.label, context.index) == ("unknown", "XLK")
    assert context.reason == "no data of the index XLK: the market's part cannot be told."
