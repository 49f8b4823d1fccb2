"""The bus's ``read_after`` with ``block_ms`` on a real single Redis: one XREAD BLOCK for every stream (the
cluster's poll is checked in tests/integration/test_cluster.py)."""

from __future__ import annotations

import pytest

from orderflow_client.bus.connection import Bus
from tests.support.blocking_reads import check_blocking_read_after

pytestmark = pytest.mark.redis


async def test_a_blocking_read_after_waits_wakes_and_returns_what_is_there_on_one_server(redis_url, key_prefix):
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    try:
        assert not bus.keys.cluster
        await check_blocking_read_after(bus, [bus.keys.market(symbol) for symbol in ("AAPL", "MSFT", "TSLA")])
    finally:
        await bus.close()
