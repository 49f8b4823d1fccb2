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
from services.detector.rule_settings import RuleSettings
from services.detector.service import DetectorService
from shared.config import OrderFlowConfig
from tests.integration.test_market_symbols_live import stock_large_seller
from tests.integration.test_selloff_handover import between, names_apart, publish, settle, spy_selloff
from tests.support.events import MS, T0, S

pytestmark = pytest.mark.redis

LATE_FROM, LATE_TO = 450, 455  # s after T0: SPY's events of these seconds arrive 15 s late (stale_data: halted)
RESUMED = 485  # s after T0: 30 s (resume_after_seconds) of valid events after the first valid one, at 455 s
HALTED_REASON = "monitoring of SPY is halted (its data failed the integrity checks): no market context."


def spy_halted() -> list[Quote | Trade]:
    """SPY flat at $500.00 until 300 s, then falling 0.25 bps a second (spy_selloff); late from 450 s to 455 s."""
    late = range(T0 + LATE_FROM * S, T0 + LATE_TO * S)
    return [
        msgspec.structs.replace(event, ts_arrival=event.ts_event + 15 * S) if event.ts_event in late else event
        for event in spy_selloff()
    ]


def one_engine(config: OrderFlowConfig, events: list[Quote | Trade]) -> Engine:
    engine = Engine(RuleSettings.from_config(config), config=config)
    engine.set_open_positions(["AAA"])
    return engine


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

        offline = one_engine(config, spy)
        merged = sorted([*spy, *(event for stock in aaa for event in stock)], key=lambda event: event.ts_event)
        produced = [output for event in merged for output in offline.process(event)]
        expected = [o for o in produced if isinstance(o, OrderFlowAlert) and o.symbol == "AAA"]
        assert [seller.id for seller in sellers] == [alert.id for alert in expected]
        assert contexts == [alert.context for alert in expected]  # as one engine that ran every event
        halted, resumed = [status for status in await statuses_of(bus, "SPY") if status.source == "detector"]
        assert (halted.state, halted.code, halted.ts_event) == ("monitoring_halted", "stale_data", T0 + LATE_FROM * S)
        assert (resumed.state, resumed.ts_event) == ("monitoring_resumed", T0 + RESUMED * S)
        assert tailing.engine.market.tail_halts["SPY"] == (halted.ts_event, resumed.ts_event)  # the owner's halt
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
        engine = one_engine(config, spy)
        tail = IndexTail(config, bus, engine)
        await publish(bus, between(spy, 0, 470))
        await tail.follow(["SPY"])

        def labels(*seconds: float) -> list[str]:  # the label of an alert at each of ``seconds`` after T0
            assert engine.market is not None
            contexts = [engine.market.context("AAA", T0 + int(second * S)) for second in seconds]
            return [context.reason if context.label == "unknown" else context.label for context in contexts]

        assert labels(440, 449.9, 450, 469.5) == ["market_wide", "market_wide", HALTED_REASON, HALTED_REASON]
        assert engine.market is not None and engine.market.tail_halts["SPY"] == (T0 + LATE_FROM * S, 0)
        assert tail.observed == 2 * (470 - 109) - 2 * (470 - LATE_FROM)  # 109 s to 469 s, less the halt's events
        await publish(bus, between(spy, 470, 520))
        assert await tail.poll() == 2 * (520 - 470)  # read, the events before the resumption rejected
        assert labels(460, 484.9, 485, 519.5) == [HALTED_REASON, HALTED_REASON, "market_wide", "market_wide"]
        assert engine.market.tail_halts["SPY"] == (T0 + LATE_FROM * S, T0 + RESUMED * S)
        await tail.follow([])
        assert "SPY" not in engine.market.tail_halts
