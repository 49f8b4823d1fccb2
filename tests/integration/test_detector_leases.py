"""Detectors sharing the symbols through leases, as real processes on a real Redis: with no symbol lists, three
detectors following the registry's 30 positions own each symbol exactly once; one SIGKILLed mid-stream has its
symbols taken over within the lease time and the alert and exit ids equal the undisturbed offline run (none lost,
none twice); one SIGSTOPped past its lease then SIGCONTed publishes nothing under the lease it lost (only under a
new one, once the symbols come back to it)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
import redis

from orderflow_client import logs
from orderflow_client.bus.connection import Bus
from orderflow_client.positions import PositionRegistry
from services.offline.analyze import analyze
from services.tools.scenarios import write_scenario
from shared.config import OrderFlowConfig
from tests.support.cli import OrderflowProcess, redis_environment, start_orderflow
from tests.support.jsonl import log_lines, read_jsonl
from tests.support.redis_server import free_port
from tests.support.streams import alert_ids, caught_up
from tests.support.waiting import wait_for

pytestmark = pytest.mark.redis
LEASE_SECONDS = 3
KINDS = ("large-sellers", "red-burst", "two-sided", "quiet", "large-sellers", "red-burst")


def market(folder: Path, count: int) -> tuple[list[str], list[Path]]:
    """``count`` symbols (``L00``…), each a scenario's session (alerts for most of them)."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols, files = [], []
    for number in range(count):
        symbol = f"L{number:02d}"
        path = folder / f"{symbol}.capture"
        write_scenario(KINDS[number % len(KINDS)], path, seed=number, symbol=symbol)
        symbols.append(symbol)
        files.append(path)
    return symbols, files


def offline_ids(files: list[Path], folder: Path) -> list[str]:
    analyze("capture", files, folder, OrderFlowConfig(threshold_mode="absolute"))
    return sorted(a["id"] for a in read_jsonl(folder / "alerts.jsonl")) + sorted(
        e["id"] for e in read_jsonl(folder / "exits.jsonl")
    )


def open_positions(url: str, prefix: str, symbols: list[str]) -> None:
    async def run() -> None:
        async with await Bus.connect(url, prefix=prefix) as bus:
            registry = PositionRegistry(bus)
            for symbol in symbols:
                await registry.open(symbol, quantity=100, entry_price="50.00")

    asyncio.run(run())


def owners(client: redis.Redis, prefix: str, symbols: list[str]) -> dict[str, str]:
    """Each symbol's lease holder now ("" when none)."""
    values = client.mget([f"{prefix}:lease:detector:{symbol}" for symbol in symbols])
    return {symbol: (value or b"").decode().rpartition("#")[0] for symbol, value in zip(symbols, values, strict=True)}


def alerts(client: redis.Redis, prefix: str) -> int:
    """How many alerts are on the stream."""
    return int(client.xlen(f"{prefix}:alerts")) if client.exists(f"{prefix}:alerts") else 0


def detector(name: str, env: dict[str, str], tmp_path: Path) -> OrderflowProcess:
    """A detector with its own name and log folder, following the registry."""
    logs = tmp_path / f"logs-{name}"
    own = {"ORDER_FLOW_LOG_DIR": str(logs), "ORDER_FLOW_METRICS_PORT": str(free_port())}
    return start_orderflow("detect", "--consumer", name, env={**env, **own})


def finish(
    replay: OrderflowProcess,
    detectors: dict[str, OrderflowProcess],
    client: redis.Redis,
    prefix: str,
    symbols: list[str],
    dead: str = "",
) -> list[str]:
    """The replay ends, the detectors catch up and stop cleanly (all but ``dead``): the alert and exit ids, sorted."""
    replay.expect_exit(0, timeout=180)
    wait_for(lambda: caught_up(client, prefix, symbols), 120, "the detectors to catch up")
    for name, process in detectors.items():
        if name != dead:
            process.send_signal(signal.SIGTERM)
            process.expect_exit(0, timeout=30)
    return sorted(alert_ids(client, f"{prefix}:alerts")) + sorted(alert_ids(client, f"{prefix}:exits"))


def stop_all(detectors: dict[str, OrderflowProcess], replay: OrderflowProcess | None) -> None:
    for process in [*detectors.values(), *([replay] if replay else [])]:
        process.stop_if_running()


def test_three_detectors_share_thirty_symbols_and_take_over_a_killed_one(redis_url, key_prefix, tmp_path):
    symbols, files = market(tmp_path / "market", 30)
    expected = offline_ids(files, tmp_path / "offline")
    env = redis_environment(redis_url, key_prefix, tmp_path, ORDER_FLOW_DETECTOR_LEASE_SECONDS=str(LEASE_SECONDS))
    open_positions(redis_url, key_prefix, symbols)
    client = redis.Redis.from_url(redis_url)
    detectors = {name: detector(name, env, tmp_path) for name in ("d1", "d2", "d3")}
    replay: OrderflowProcess | None = None
    try:
        wait_for(lambda: set(owners(client, key_prefix, symbols).values()) == {"d1", "d2", "d3"}, 30, "3 owners")
        shares = owners(client, key_prefix, symbols)
        assert all(shares[symbol] for symbol in symbols)  # every symbol owned, by exactly one (one lease each)
        replay = start_orderflow("replay", "--format", "capture", *map(str, files), "--speed", "40", env=env)
        wait_for(
            lambda: client.exists(f"{key_prefix}:alerts") and client.xlen(f"{key_prefix}:alerts") >= 3, 90, "alerts"
        )
        victim = max(("d1", "d2", "d3"), key=lambda name: list(shares.values()).count(name))
        orphans = [symbol for symbol, owner in shares.items() if owner == victim]
        detectors[victim].send_signal(signal.SIGKILL)
        detectors[victim].wait(timeout=10)
        killed_at = time.monotonic()
        wait_for(
            lambda: all(owners(client, key_prefix, orphans)[symbol] not in ("", victim) for symbol in orphans),
            LEASE_SECONDS + 10,
            "the killed detector's symbols taken over",
        )
        taken_over_seconds = time.monotonic() - killed_at
        live = finish(replay, detectors, client, key_prefix, symbols, dead=victim)
    finally:
        stop_all(detectors, replay)
        client.close()
    assert taken_over_seconds <= LEASE_SECONDS + 3  # the lease time, a refresh, a little slack
    assert len(expected) >= 30 and live == expected  # none lost, none twice


def test_a_paused_owner_publishes_nothing_under_the_lease_it_lost(redis_url, key_prefix, tmp_path):
    symbols, files = market(tmp_path / "market", 6)
    expected = offline_ids(files, tmp_path / "offline")
    env = redis_environment(redis_url, key_prefix, tmp_path, ORDER_FLOW_DETECTOR_LEASE_SECONDS=str(LEASE_SECONDS))
    open_positions(redis_url, key_prefix, symbols)
    client = redis.Redis.from_url(redis_url)
    detectors = {name: detector(name, env, tmp_path) for name in ("d1", "d2")}
    replay: OrderflowProcess | None = None
    try:
        wait_for(lambda: set(owners(client, key_prefix, symbols).values()) == {"d1", "d2"}, 30, "2 owners")
        shares = owners(client, key_prefix, symbols)
        lease_keys = [f"{key_prefix}:lease:detector:{symbol}" for symbol in symbols]
        leases_before = {symbol: value.decode() for symbol, value in zip(symbols, client.mget(lease_keys), strict=True)}
        replay = start_orderflow("replay", "--format", "capture", *map(str, files), "--speed", "40", env=env)
        wait_for(
            lambda: client.exists(f"{key_prefix}:alerts") and client.xlen(f"{key_prefix}:alerts") >= 2, 90, "alerts"
        )
        detectors["d1"].send_signal(signal.SIGSTOP)
        paused = [symbol for symbol, owner in shares.items() if owner == "d1"]
        wait_for(
            lambda: all(owners(client, key_prefix, paused)[symbol] == "d2" for symbol in paused),
            LEASE_SECONDS + 10,
            "d2 to take the paused detector's symbols",
        )
        time.sleep(1.0)  # d2 handles them for a while
        woke_ns = time.time_ns()
        detectors["d1"].send_signal(signal.SIGCONT)
        live = finish(replay, detectors, client, key_prefix, symbols)
    finally:
        stop_all(detectors, replay)
        client.close()
    assert live == expected  # none lost, none twice
    # after waking, d1 published nothing of the symbols it had lost until it held a new lease on them (a larger
    # token: once back, it is again their preferred owner, and d2 hands them back)
    d1 = log_lines(tmp_path / "logs-d1")
    after = [line for line in d1 if _ns(line["timestamp"]) >= woke_ns]
    assert any(line["event"] in ("order_flow.lease_lost", "order_flow.symbol_handed_over") for line in after)
    published = {logs.LARGE_SELLER_DETECTED, logs.RED_BURST_DETECTED, logs.EXIT_SIGNAL_TRIGGERED}
    for symbol in paused:
        retaken = [line for line in after if line["event"] == "order_flow.lease_taken" and line["symbol"] == symbol]
        until = _ns(retaken[0]["timestamp"]) if retaken else 2**63
        stale = [line for line in after if line["event"] in published and line.get("symbol") == symbol]
        assert all(_ns(line["timestamp"]) >= until for line in stale), symbol
        assert not retaken or retaken[0]["lease"] != leases_before[symbol]


def _ns(timestamp: str) -> int:
    """A log line's UTC ISO timestamp as ns since the epoch."""
    from datetime import datetime

    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1e9)
