"""Fault-injection soak: the whole live chain as real processes, faults at random moments from a seed, and every
alert and exit compared with an undisturbed offline run over the same input.

The chain: Polygon simulator (in this process) → ``orderflow ingest`` → a Redis of its own (append-only, fsync
always) → ``orderflow detect`` → ``orderflow risk-manager`` (the stand-in bot). Input: the dense symbols of
``bench.live_latency`` (a quote every 10 ms, a print every 20 ms, three 12,000-share sellers every 36 s: an exit
recommendation each time). Faults, one at a time, the next after an exponential pause (``--mean-interval``),
every kind once per round in an order drawn from the seed:

    detector_kill, ingest_kill, bot_kill   SIGKILL (of one detector or ingest, when there are several), restarted a
                                           second later
    redis_kill                             SIGKILL of Redis, restarted from its append-only file a second later
    master_failover                        (--cluster) SIGKILL of a master of the Redis Cluster: its replica is
                                           promoted; the old master then rejoins as a replica
    socket_drop                            the simulator cuts every WebSocket (ingest reconnects, reports, backfills)
    poison                                 a valid msgpack entry of the wrong type on a market stream
    slow_consumer                          the detector stopped (SIGSTOP) for 5 s, then continued

At the end the feed stops, everything catches up and stops; then the reference: each market stream, as it stands
in Redis (what ingest published, gaps and backfills included), through a fresh rules engine in one pass. Printed:
events, faults by kind, alerts and exits lost or extra against the reference (both must be 0), exits the bot
decided twice or never (0), entries dead-lettered, the peak RSS of each process, and per fault kind the time until
the detector had caught up again. The last line is the same as JSON.

    python -m bench.soak [--seconds 600] [--seed 7] [--dense 4] [--mean-interval 20]
    python -m bench.soak --cluster --detectors 3 --ingests 2     # scale-out: a local Redis Cluster (3 masters,
                                                                 # 3 replicas), detectors and ingests on leases

With ``--detectors``/``--ingests`` above one, the processes share the symbols through their leases (each ingest with
its own key: the simulator allows one connection per key); ``--cluster`` runs the chain on a local Redis Cluster
started with the test harness's ``tests/support/redis_cluster.py`` (``redis_kill`` becomes ``master_failover``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import redis

from bench.live_latency import KEY, timeline
from orderflow_client.bus.connection import Bus
from orderflow_client.bus.keys import Keys
from orderflow_client.bus.streams import BusEntry
from orderflow_client.errors import WireDecodeError
from orderflow_client.positions import PositionRegistry
from orderflow_client.wire import ExitRecommendation, OrderFlowAlert, decode, encode
from services.detector.engine import Engine
from services.detector.market_entries import Misplaced, market_events
from services.detector.rule_settings import RuleSettings
from services.tools.simulator import PolygonSimulator
from shared.config import OrderFlowConfig
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import RedisProcess, free_port, redis_server_binary

REPO = Path(__file__).resolve().parents[1]
FAULTS = (
    "detector_kill",
    "ingest_kill",
    "bot_kill",
    "redis_kill",
    "master_failover",
    "socket_drop",
    "poison",
    "slow_consumer",
)
SETTINGS = {"ORDER_FLOW_THRESHOLD_MODE": "absolute", "ORDER_FLOW_ALERT_WINDOW_SECONDS": "30"}


class Managed:
    """One orderflow command as a process that can be killed and started again; its peak RSS over every life."""

    def __init__(self, command: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.command, self.env, self.log_dir = command, env, log_dir
        self.process: subprocess.Popen | None = None
        self.peak_kb = 0
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(
            self.log_dir / f"stderr-{self.starts}.txt", "wb"
        ) as stderr:  # the console log, kept for a post-mortem
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", *self.command],
                cwd=REPO,
                env={**self.env, "ORDER_FLOW_LOG_DIR": str(self.log_dir), "ORDER_FLOW_METRICS_PORT": "0"},
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    def sample(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_kb = max(self.peak_kb, int(line.split()[1]))
        except OSError:
            pass

    def signal(self, number: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.sample()
            self.process.send_signal(number)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)

    def stop(self) -> int | None:
        self.signal(signal.SIGTERM)
        if self.process is None:
            return None
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return None


def _last_lines(process: Managed, count: int = 12) -> str:
    """The end of a process's last console log: why it exited as it did."""
    path = process.log_dir / f"stderr-{process.starts}.txt"
    return "\n".join(path.read_text(errors="replace").splitlines()[-count:]) if path.exists() else ""


def caught_up(client: redis.Redis, prefix: str, symbols: list[str]) -> bool:
    """The detector has read and acknowledged everything on every market stream: its group's last delivered id is
    the stream's last and nothing is pending. (Not XINFO's ``lag``: after Redis restarts from its append-only file
    a group's ``entries-read`` is unknown and ``lag`` with it.)"""
    try:
        for symbol in symbols:
            stream = f"{prefix}:md:{{{symbol}}}"
            last = client.xinfo_stream(stream)["last-generated-id"]
            groups = {group["name"]: group for group in client.xinfo_groups(stream)}
            group = groups.get(b"detector") or groups.get("detector")
            if group is None or group["pending"] or group["last-delivered-id"] != last:
                return False
        return True
    except redis.RedisError:
        return False


def reference(
    client: redis.Redis, prefix: str, symbols: list[str], config: OrderFlowConfig
) -> tuple[set[str], set[str], int, int]:
    """Alert and exit ids of one undisturbed pass of the rules over the market streams as they stand; the number of
    events and of entries a detector must dead-letter (skipped here as it skips them)."""
    engine = Engine(RuleSettings.from_config(config), config=config)
    alerts, exits = set(), set()
    events = poison = 0
    for symbol in symbols:
        stream = f"{prefix}:md:{{{symbol}}}"
        for entry_id, fields in client.xrange(stream):
            field, payload = next(iter(fields.items()))
            try:
                message = decode(payload)
            except WireDecodeError:
                poison += 1
                continue
            held = market_events(message, BusEntry(stream, entry_id, payload, field), symbol)
            if isinstance(held, Misplaced):  # as the detector judges
                poison += 1
                continue
            events += len(held)
            for event in held:
                for output in engine.process(event):
                    if isinstance(output, OrderFlowAlert):
                        alerts.add(output.id)
                    elif isinstance(output, ExitRecommendation):
                        exits.add(output.id)
    return alerts, exits, events, poison


def published(client: redis.Redis, stream: str) -> list[str]:
    return [decode(next(iter(fields.values()))).id for _entry_id, fields in client.xrange(stream)]


def decisions(log_dir: Path) -> Counter:
    """How many times the stand-in bot decided (or set aside) each recommendation id, from its JSONL log."""
    counted: Counter = Counter()
    for path in log_dir.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if (
                record.get("event") in ("order_flow.exit_signal_triggered", "order_flow.recommendation_ignored")
                and record.get("source", "risk_manager") == "risk_manager"
                and "id" in record
            ):
                counted[record["id"]] += 1
    return counted


async def soak(arguments: argparse.Namespace) -> dict:
    rng = random.Random(arguments.seed)
    default = [kind for kind in FAULTS if kind != ("redis_kill" if arguments.cluster else "master_failover")]
    kinds = [kind for kind in (arguments.faults or ",".join(default)).split(",") if kind]
    unknown = set(kinds) - set(default)
    if unknown or not kinds:
        raise SystemExit(f"--faults: unknown here {sorted(unknown)} (known: {', '.join(default)})")
    workdir = Path(tempfile.mkdtemp(prefix="orderflow-soak-"))
    server = cluster = None
    if arguments.cluster:
        cluster = await asyncio.to_thread(RedisCluster().start)
        url = cluster.url
        client: redis.Redis | redis.cluster.RedisCluster = redis.cluster.RedisCluster.from_url(url)
    else:
        server = RedisProcess(port=free_port(), binary=redis_server_binary(), append_only=True).start()
        url = server.url
        client = redis.Redis(host="127.0.0.1", port=server.port)
    prefix = f"soak-{uuid.uuid4().hex[:6]}"
    keys = Keys(prefix, cluster=arguments.cluster)
    symbols = [f"SOAK{index}" for index in range(arguments.dense)]
    api_keys = [KEY] + [f"{KEY}-{number}" for number in range(1, arguments.ingests)]
    simulator = await PolygonSimulator(
        timeline(arguments.seconds, symbols, []), api_key=KEY, other_keys=tuple(api_keys[1:]), loop_forever=False
    ).start()
    env = {
        **os.environ,
        "REDIS_URL": url,
        "ORDER_FLOW_KEY_PREFIX": prefix,
        "POLYGON_API_KEY": KEY,
        "ORDER_FLOW_POLYGON_FEED": f"127.0.0.1:{simulator.port}",
        "ORDER_FLOW_POLYGON_SECURE": "false",
        "ORDER_FLOW_POLYGON_REST_URL": f"http://127.0.0.1:{simulator.port}",
        "ORDER_FLOW_LOG_LEVEL": "INFO",
        "PYTHONPATH": str(REPO),
        **SETTINGS,
    }
    config = OrderFlowConfig(key_prefix=prefix, threshold_mode="absolute", alert_window_seconds=30)
    bus = await Bus.connect(url, prefix=prefix)
    registry = PositionRegistry(bus)
    for symbol in symbols:
        await registry.open(symbol, quantity=100, entry_price="50.05")
    await bus.close()
    processes: dict[str, Managed] = {}
    for number, api_key in enumerate(api_keys):
        name = "ingest" if arguments.ingests == 1 else f"ingest{number}"
        command = ["ingest"] if arguments.ingests == 1 else ["ingest", "--name", name]
        processes[name] = Managed(command, {**env, "POLYGON_API_KEY": api_key}, workdir / name)
    for number in range(arguments.detectors):
        name = "detector" if arguments.detectors == 1 else f"detector{number}"
        processes[name] = Managed(["detect", "--consumer", name], env, workdir / name)
    processes["bot"] = Managed(["risk-manager", "--name", "soak"], env, workdir / "bot")
    for process in processes.values():
        process.start()
    faults: list[tuple[str, float, float | None]] = []  # kind, at (s), seconds until caught up again

    async def sampler(done: asyncio.Event) -> None:
        while not done.is_set():
            for process in processes.values():
                process.sample()
            await asyncio.sleep(0.5)

    async def recovered(since: float) -> float | None:
        deadline = time.monotonic() + 60
        await asyncio.sleep(0.5)
        while time.monotonic() < deadline:
            if await asyncio.to_thread(caught_up, client, prefix, symbols):
                return time.monotonic() - since
            await asyncio.sleep(0.2)
        return None

    async def inject(kind: str) -> None:
        started = time.monotonic()
        if kind.endswith("_kill") and kind != "redis_kill":
            role = kind.removesuffix("_kill")
            process = processes[rng.choice(sorted(name for name in processes if name.startswith(role)))]
            await asyncio.to_thread(process.kill)
            await asyncio.sleep(1.0)
            process.start()
        elif kind == "redis_kill" and server is not None:
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(server.start)
        elif kind == "master_failover" and cluster is not None:
            victim = cluster.master_of(keys.market(rng.choice(symbols)))
            await asyncio.to_thread(cluster.kill_master, victim)
            await asyncio.to_thread(cluster.restart, victim)  # back, as a replica of the promoted one
        elif kind == "socket_drop":
            await simulator.drop_connections()
        elif kind == "poison":
            forged = ExitRecommendation(
                id="poison",
                symbol=symbols[0],
                trigger="large_sellers",
                ts_event=1,
                ts_recv=1,
                timestamp_utc="2026-01-01T00:00:00.000000000Z",
                alert_ids=(),
                reasoning="poison",
            )
            await asyncio.to_thread(client.xadd, f"{prefix}:md:{{{rng.choice(symbols)}}}", {"trade": encode(forged)})
        elif kind == "slow_consumer":
            detector = processes[rng.choice(sorted(name for name in processes if name.startswith("detector")))]
            detector.signal(signal.SIGSTOP)
            await asyncio.sleep(5.0)
            detector.signal(signal.SIGCONT)
        faults.append((kind, started, await recovered(started)))

    done = asyncio.Event()
    sampling = asyncio.ensure_future(sampler(done))
    began = time.monotonic()
    queue: list[str] = []
    try:
        await asyncio.sleep(8)  # everything connects; the simulator's market opens at 8 s
        while time.monotonic() - began < arguments.seconds:
            pause = rng.expovariate(1 / arguments.mean_interval)
            if time.monotonic() - began + pause >= arguments.seconds:
                break
            await asyncio.sleep(pause)
            if not queue:  # every kind once per round, in a seeded order: a short run still sees a mix
                queue = rng.sample(kinds, len(kinds))
            await inject(queue.pop())
        await asyncio.sleep(max(0.0, arguments.seconds + 8 - (time.monotonic() - began)))
        await simulator.stop()  # the feed ends: catch up, then stop
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not await asyncio.to_thread(caught_up, client, prefix, symbols):
            await asyncio.sleep(0.5)
        await asyncio.sleep(5)  # the bot reads the last recommendations
    finally:
        done.set()
        await sampling
        codes = {name: await asyncio.to_thread(process.stop) for name, process in processes.items()}
    expected_alerts, expected_exits, events, poison = reference(client, prefix, symbols, config)
    alerts, exits = published(client, keys.alerts), published(client, keys.exits)
    decided = decisions(workdir / "bot")
    dead = sum(client.xlen(f"{prefix}:md:{{{symbol}}}:dead") for symbol in symbols)
    client.close()
    if server is not None:
        server.stop()
    if cluster is not None:
        cluster.stop()
    recovery: dict[str, list[float]] = defaultdict(list)
    for kind, _at, seconds in faults:
        recovery[kind].append(-1.0 if seconds is None else seconds)
    return {
        "seconds": arguments.seconds,
        "seed": arguments.seed,
        "symbols": len(symbols),
        "redis": "cluster (3 masters, 3 replicas)" if arguments.cluster else "one server",
        "detectors": arguments.detectors,
        "ingests": arguments.ingests,
        "events": events,
        "faults": dict(Counter(kind for kind, _at, _seconds in faults)),
        "alerts": len(alerts),
        "exits": len(exits),
        "alerts_lost": sorted(expected_alerts - set(alerts)),
        "alerts_extra": sorted(set(alerts) - expected_alerts),
        "alerts_published_twice": len(alerts) - len(set(alerts)),
        "exits_lost": sorted(expected_exits - set(exits)),
        "exits_extra": sorted(set(exits) - expected_exits),
        "decided_twice": sorted(identifier for identifier, count in decided.items() if count > 1),
        "never_decided": sorted(set(exits) - set(decided)),
        "poison_written": poison,
        "dead_lettered": dead,
        "peak_rss_mb": {name: round(process.peak_kb / 1024, 1) for name, process in processes.items()},
        "starts": {name: process.starts for name, process in processes.items()},
        "recovery_seconds": {
            kind: {"median": round(statistics.median(values), 2), "max": round(max(values), 2)}
            for kind, values in recovery.items()
        },
        "exit_codes": codes,
        "workdir": str(workdir),
        "exit_errors": {name: _last_lines(processes[name]) for name, code in codes.items() if code != 0},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dense", type=int, default=4, help="symbols")
    parser.add_argument("--mean-interval", type=float, default=20.0, help="mean seconds between faults")
    parser.add_argument("--faults", default="", help="the kinds to inject, comma-separated (default: all that apply)")
    parser.add_argument("--detectors", type=int, default=1, help="detector processes (sharing symbols by leases)")
    parser.add_argument("--ingests", type=int, default=1, help="ingest processes, one simulated key each")
    parser.add_argument("--cluster", action="store_true", help="a local Redis Cluster instead of one server")
    result = asyncio.run(soak(parser.parse_args()))
    print(
        f"soak: {result['seconds']} s, seed {result['seed']}, {result['symbols']} symbols, "
        f"{result['events']:,} events on the streams; Redis: {result['redis']}, {result['detectors']} detector(s), "
        f"{result['ingests']} ingest(s)"
    )
    print(f"faults: {result['faults']}")
    print(
        f"alerts {result['alerts']}: lost {len(result['alerts_lost'])}, extra {len(result['alerts_extra'])}, "
        f"published twice {result['alerts_published_twice']}   (must be 0, 0, 0)"
    )
    print(
        f"exits {result['exits']}: lost {len(result['exits_lost'])}, extra {len(result['exits_extra'])}; "
        f"decided twice {len(result['decided_twice'])}, never decided {len(result['never_decided'])}   (must be 0)"
    )
    print(f"poison entries {result['poison_written']}, dead-lettered {result['dead_lettered']}")
    print(f"peak RSS (MB): {result['peak_rss_mb']}   process starts: {result['starts']}")
    print(f"caught up after a fault (s; -1: not within 60 s): {result['recovery_seconds']}")
    print(f"exit codes on SIGTERM: {result['exit_codes']}   (console logs in {result['workdir']})")
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
