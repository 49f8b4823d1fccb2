"""``orderflow cluster status`` on a real Redis: two detectors (:class:`~shared.ownership.SymbolOwnership`
in this process) split six open positions; one leaves and its symbols show as unowned; a member whose heartbeat is
older than the lease shows as dead; Redis unreachable exits 3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orderflow_client.bus.connection import Bus
from orderflow_client.positions import PositionRegistry
from shared.ownership import KIND, SymbolOwnership
from tests.support.cli import orderflow_environment, redis_environment, run_orderflow
from tests.support.redis_server import free_port

SYMBOLS = ["AAPL", "AMD", "MSFT", "NVDA", "QQQ", "TSLA"]
LEASE_SECONDS = 60.0  # long enough that the command's start-up never ages a heartbeat past it


def cluster_status(redis_url: str, prefix: str, tmp_path: Path) -> dict[str, Any]:
    """The ``--json`` document of ``orderflow cluster status`` against ``redis_url`` under ``prefix``."""
    environment = redis_environment(redis_url, prefix, tmp_path, ORDER_FLOW_DETECTOR_LEASE_SECONDS=str(LEASE_SECONDS))
    done = run_orderflow("cluster", "status", "--json", env=environment)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


@pytest.mark.redis
async def test_two_detectors_split_the_symbols_and_a_leavers_symbols_show_unowned(redis_url, key_prefix, tmp_path):
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        registry = PositionRegistry(bus)
        for symbol in SYMBOLS:
            await registry.open(symbol, quantity=100, entry_price="100.00")
        first, second = SymbolOwnership(bus, "d1", LEASE_SECONDS), SymbolOwnership(bus, "d2", LEASE_SECONDS)
        for _round in range(3):
            owned_by_first = await first.settle(SYMBOLS)
            owned_by_second = await second.settle(SYMBOLS)
        assert owned_by_first and owned_by_second  # both own some (which ones is rendezvous hashing's choice)

        status = cluster_status(redis_url, key_prefix, tmp_path)
        assert status["lease_seconds"] == LEASE_SECONDS and status["bus"].startswith("redis://")
        detectors = {detector["name"]: detector for detector in status["detectors"]}
        assert sorted(detectors) == ["d1", "d2"]
        assert all(d["alive"] and 0 <= d["heartbeat_age_seconds"] <= LEASE_SECONDS for d in detectors.values())
        first_symbols, second_symbols = set(detectors["d1"]["symbols"]), set(detectors["d2"]["symbols"])
        assert not first_symbols & second_symbols and first_symbols | second_symbols == set(SYMBOLS)
        assert (first_symbols, second_symbols) == (set(owned_by_first), set(owned_by_second))
        assert status["unowned"] == []

        await first.leave()  # leases released, out of the members; d2 does not settle again
        seconds, microseconds = await bus.client.time()
        heard_ms = seconds * 1000 + microseconds // 1000 - 120_000  # a member silent for two minutes
        await bus.client.zadd(bus.keys.members(KIND), {"d3": heard_ms})

        status = cluster_status(redis_url, key_prefix, tmp_path)
        detectors = {detector["name"]: detector for detector in status["detectors"]}
        assert sorted(detectors) == ["d2", "d3"]
        assert detectors["d2"]["alive"] and detectors["d2"]["symbols"] == sorted(owned_by_second)
        assert not detectors["d3"]["alive"] and detectors["d3"]["heartbeat_age_seconds"] >= 120
        assert detectors["d3"]["symbols"] == []
        assert status["unowned"] == sorted(owned_by_first)

        environment = redis_environment(
            redis_url, key_prefix, tmp_path, ORDER_FLOW_DETECTOR_LEASE_SECONDS=str(LEASE_SECONDS), COLUMNS="200"
        )
        table = run_orderflow("cluster", "status", env=environment)
        assert table.returncode == 0, table.stdout + table.stderr
        assert "d2" in table.stdout and "dead" in table.stdout
        assert f"unowned: {', '.join(sorted(owned_by_first))}" in table.stdout
        assert f"bus: {status['bus']}" in table.stdout


def test_cluster_status_exits_3_when_redis_is_unreachable(tmp_path):
    environment = orderflow_environment(
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", ORDER_FLOW_LOG_DIR=str(tmp_path)
    )
    done = run_orderflow("cluster", "status", env=environment, timeout=120)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "redis unavailable" in done.stderr and done.stdout == ""
