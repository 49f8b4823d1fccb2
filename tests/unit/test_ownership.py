"""Symbol ownership by leases (:mod:`shared.ownership`, :mod:`orderflow_client.bus.leases`) on the
embedded bus: rendezvous hashing's spread, two detectors settling into disjoint shares, a newcomer getting its
share, a lease renewed by its holder only, and a publish refused under a lease that is another's (fencing).
tests/integration/test_detector_leases.py runs detectors as processes on a real Redis."""

from __future__ import annotations

import uuid
from collections import Counter

from orderflow_client.bus.connection import Bus
from orderflow_client.bus.dedup import ALREADY_PUBLISHED, FENCED, PUBLISHED, PublishOnce
from orderflow_client.bus.leases import Leases, holder_of
from shared.ownership import SymbolOwnership, preferred

SYMBOLS = [f"S{number:03d}" for number in range(300)]


def test_rendezvous_hashing_spreads_the_symbols_and_moves_only_a_leavers():
    three = Counter(preferred(symbol, ["a", "b", "c"]) for symbol in SYMBOLS)
    assert set(three) == {"a", "b", "c"} and all(70 <= count <= 130 for count in three.values())
    for symbol in SYMBOLS:  # "c" leaves: its symbols move, the others stay where they were
        before, after = preferred(symbol, ["a", "b", "c"]), preferred(symbol, ["a", "b"])
        assert after == before or before == "c"


async def test_two_detectors_settle_into_disjoint_shares_and_a_lease_is_its_holders():
    bus = await Bus.connect(None, prefix=f"own-{uuid.uuid4().hex[:8]}")
    symbols = SYMBOLS[:40]
    first, second = SymbolOwnership(bus, "a", 5.0), SymbolOwnership(bus, "b", 5.0)
    assert await first.settle(symbols) == symbols  # alone: everything
    assert await second.settle(symbols) == []  # joined: all held by "a" for now
    kept = await first.settle(symbols)  # "a" sees "b" and hands over b's share
    taken = await second.settle(symbols)
    assert sorted(kept + taken) == symbols and not set(kept) & set(taken) and len(taken) >= 10
    assert all(preferred(symbol, ["a", "b"]) == "b" for symbol in taken)
    assert await first.settle(symbols) == kept and await second.settle(symbols) == taken  # settled: nothing moves
    assert first.holds(kept[0]) and not first.holds(taken[0])
    leases = Leases(bus)
    held = await leases.holders("detector", symbols)
    assert {holder_of(held[symbol]) for symbol in taken} == {"b"}
    # a renewal by a value not held changes nothing; a restarted "b" adopts its own lease
    assert await leases.renew("detector", {taken[0]: "a#999"}, ttl_ms=5000) == {taken[0]: False}
    assert await leases.acquire("detector", taken[0], "b", ttl_ms=5000) == held[taken[0]]
    await first.leave()
    assert sorted(await second.settle(symbols)) == symbols  # "a" left cleanly: "b" takes all at once
    await bus.close()


async def test_a_publish_under_a_lease_that_is_another_holders_is_refused():
    bus = await Bus.connect(None, prefix=f"fence-{uuid.uuid4().hex[:8]}")
    owner = SymbolOwnership(bus, "a", 5.0)
    await owner.settle(["AAPL"])
    fence = owner.fence("AAPL")
    assert fence is not None and fence[1].startswith("a#")
    once = PublishOnce(bus)
    assert await once.publish("x1", bus.keys.alerts, "alert", b"1", remember_seconds=60, fence=fence) == PUBLISHED
    assert (
        await once.publish("x1", bus.keys.alerts, "alert", b"1", remember_seconds=60, fence=fence) == ALREADY_PUBLISHED
    )
    await bus.client.set(fence[0], "b#99")  # the lease expired while "a" was paused, and "b" took it
    assert await once.publish("x2", bus.keys.alerts, "alert", b"2", remember_seconds=60, fence=fence) == FENCED
    assert await bus.client.xlen(bus.keys.alerts) == 1 and not await bus.client.exists(bus.keys.published("x2"))
    await bus.close()


async def test_a_second_live_process_under_the_same_name_is_refused_and_a_restart_is_not():
    """Two processes under one name would share its leases: the newcomer watches the name's heartbeat before its
    own first one, and is refused when the name beats meanwhile; a predecessor that died (silent) is a restart: the
    newcomer joins after the watch and adopts its leases. A refused newcomer's stop leaves the other's membership."""
    import asyncio

    import pytest

    from shared import ownership as ownership_module

    bus = await Bus.connect(None, prefix=f"name-{uuid.uuid4().hex[:8]}")
    alive = SymbolOwnership(bus, "d1", 5.0)
    assert await alive.settle(["AAPL"]) == ["AAPL"]
    stop = asyncio.Event()
    beating = asyncio.ensure_future(alive.keep(stop, every_seconds=0.3))
    newcomer = SymbolOwnership(bus, "d1", 5.0)
    with pytest.raises(ownership_module.NameInUseError, match="'d1'"):
        await newcomer.settle(["AAPL"])
    await newcomer.leave()  # refused: it never joined, so it takes nothing away from the live "d1"
    assert "d1" in await Leases(bus).members_seen("detector")
    stop.set()
    await beating  # "d1" dies without a word (no leave): its heartbeat goes silent
    restarted = SymbolOwnership(bus, "d1", 5.0)
    assert await restarted.settle(["AAPL"]) == ["AAPL"]  # after the watch: a restart, adopting its own lease
    assert restarted.fence("AAPL") == alive.fence("AAPL")
    assert restarted.took_over("AAPL")  # what came between the two is unknown: ingest bridges it like a hand-over
    await bus.close()


async def test_a_detector_given_its_own_symbols_keeps_them_whoever_else_is_alive():
    """Two detectors with their own --symbol lists on one bus: each takes and keeps its symbols, though rendezvous
    hashing over both names would prefer the other for some (which, not wanting them, would never take them: the
    symbol would go unowned for a lease time and be warmed up again)."""
    bus = await Bus.connect(None, prefix=f"own-{uuid.uuid4().hex[:8]}")
    first_symbols, second_symbols = SYMBOLS[:20], SYMBOLS[20:40]
    assert any(preferred(symbol, ["one", "two"]) == "two" for symbol in first_symbols)  # the case that went wrong
    first = SymbolOwnership(bus, "one", 5.0, exclusive=True)
    second = SymbolOwnership(bus, "two", 5.0, exclusive=True)
    for _ in range(3):
        assert await first.settle(first_symbols) == first_symbols
        assert await second.settle(second_symbols) == second_symbols
    await bus.close()
