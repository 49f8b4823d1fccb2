"""The web dashboard's /healthz on a real Redis that goes away and comes back: 200 while Redis answers, 503 once it
has not answered for longer than the limit, 200 again when it is back."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp

from orderflow_client.bus.connection import Bus
from services.dashboard.server import DashboardOptions, start_dashboard
from tests.support.redis_server import RedisProcess, free_port, redis_server_binary


async def health(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with session.get(url + "healthz") as response:
        return response.status, await response.json()


async def wait_for_status(session: aiohttp.ClientSession, url: str, status: int, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    seen: list[tuple[int, dict[str, Any]]] = []
    while time.monotonic() < deadline:
        seen.append(await health(session, url))
        if seen[-1][0] == status:
            return seen[-1][1]
        await asyncio.sleep(0.2)
    raise AssertionError(f"/healthz never answered {status} in {seconds} s: {seen[-3:]}")


async def test_healthz_says_503_once_redis_is_gone_longer_than_the_limit_and_200_when_back():
    binary = redis_server_binary()
    assert binary, "no redis-server found"
    server = RedisProcess(port=free_port(), binary=binary).start()
    bus = await Bus.connect(server.url, prefix=f"health-{uuid.uuid4().hex[:8]}", retries=1)
    dashboard = await start_dashboard(bus, DashboardOptions(port=0, symbols=("AAPL",), unhealthy_after_seconds=3.0))
    try:
        async with aiohttp.ClientSession() as session:
            assert await health(session, dashboard.url) == (200, {"status": "ok", "redis": "ok", "pages": 0})
            gone = time.monotonic()
            server.stop()
            unreachable = await wait_for_status(session, dashboard.url, 503, 30.0)
            assert time.monotonic() - gone > 3.0
            assert unreachable["status"] == "unhealthy" and unreachable["redis"] == "unreachable"
            assert unreachable["redis_unreachable_seconds"] >= 3.0  # rounded to 0.1 s
            server.start()
            back = await wait_for_status(session, dashboard.url, 200, 30.0)
            assert back["redis"] == "ok"
    finally:
        await dashboard.stop()
        await bus.close()
        server.stop()
