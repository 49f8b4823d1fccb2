"""Total detector throughput with 1, 2 and 3 detector processes sharing the symbols through leases, on one Redis
node (127.0.0.1:6379) and on a local Redis Cluster.

One run for each mode (single | cluster) and each count K of processes:

1. The market, published to the bus first (pre-loaded streams) under a key prefix of the run's own (deleted
   afterwards): ``--symbols`` symbols, the six scenarios of :mod:`services.tools.scenarios` in turn, named as
   ``bench.detector_bench`` names them (``QUIET0``, ``LARGES0``, …), each symbol's session repeated ``--sessions``
   times back to back (shifted in time) so that the drain lasts several times the seconds the leases take to settle.
2. The ceiling, measured in the same run just before the detectors start: the same entries read, decoded and
   acknowledged by this one process without rules (``bench.detector_bench.bare_read``, through its own group).
3. An open position per symbol in the registry, then K ``orderflow detect --consumer d<k>`` processes started at
   once (as ``tests.support.cli`` starts ``orderflow``; absolute thresholds, no metrics port, a log folder each),
   following the registry: they share the symbols through leases (:mod:`shared.ownership`). Stopped with SIGTERM.

Columns (times in seconds since the processes were started):

- ``seconds``: until group ``detector`` has lag 0 and nothing pending on every stream (``done``);
- ``leased``: until every symbol is leased; ``settled``: until every symbol is leased to its final owner (the
  rendezvous-preferred one among d1…dK; before that the first detector up takes them all, then hands some over);
- ``acked@settle``: the share of entries acknowledged before ``settled`` (work before the clock starts);
- ``events/s``: all the events / (done − settled); ``after settle``: the events left at ``settled`` (by that share)
  / (done − settled), the fairer figure; ``x1``: ``after settle`` over the 1-process row's;
- ``CPU s``: CPU seconds between settled and done of the detector processes and of Redis (every node; the shared
  single node also serves anyone else using it); ``idle``: the share of the machine's CPU time left idle then (other
  work on the host shows as little idle with little detector CPU); ``ev/det CPU s``: events per detector CPU second;
- ceiling: events/s of the bare read; ``split``: each detector's share of the events (their ``detector_stopped`` log
  lines; the total must equal ``events``: none handled twice).

The cluster (3 masters, 3 replicas on 127.0.0.1) is started by ``tests.support.redis_cluster.running_cluster``: the
benchmark borrows the test harness to start it. A full run takes about 3 minutes.

    python -m bench.detector_scaling_bench [--symbols 24] [--sessions 8] [--processes 1,2,3] [--modes single,cluster]

Sample output (2 CPUs, other workloads using about one of them; each line wrapped here after ``x1``):

    cpus: 2 (2 usable), load average 2.23 2.47 1.72; 24 symbols x 8 sessions
    mode    procs    events seconds leased settled acked@settle events/s after settle   x1
        CPU s: det redis idle ev/det CPU s  ceiling: bare read, 1 process  split
    single      1 2,010,176   13.04   0.63    0.63         0.0%  162,019      162,019 1.00
        11.15  0.70   0%      180,285               854,820 events/s  100%
    single      2 2,010,176   13.65   1.40    3.16        12.3%  191,687      168,090 1.04
        9.39  0.61   0%      187,723               734,625 events/s  69%/31%
    single      3 2,010,176   16.34   1.81    4.59        15.4%  171,106      144,697 0.89
        10.71  0.60   0%      158,722               963,657 events/s  43%/22%/35%
    ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import redis
from redis.cluster import RedisCluster

from bench.detector_bench import bare_read, scenario_events
from orderflow_client.bus.connection import Bus
from orderflow_client.bus.keys import Keys
from orderflow_client.bus.leases import holder_of
from orderflow_client.bus.streams import as_text
from orderflow_client.positions import PositionRegistry
from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from orderflow_client.wire import Trade
from services.ingest.replay import replay
from services.tools.scenarios import SCENARIOS
from shared.ownership import KIND, preferred
from tests.support.cli import OrderflowProcess, orderflow_environment, start_orderflow
from tests.support.jsonl import log_lines
from tests.support.redis_cluster import running_cluster

SINGLE_NODE_URL = "redis://127.0.0.1:6379/0"
GROUP = "detector"  # the detectors' consumer group (ORDER_FLOW_CONSUMER_GROUP's default)
POLL_SECONDS = 0.05  # how often this process looks at the leases and the group
TIMEOUT_SECONDS = 300.0  # a run that has not drained by then fails
STOPPED = "order_flow.detector_stopped"  # a detector's last log line, with the events it handled
TIME_FIELDS = ("ts_event", "ts_recv", "ts_arrival")
StreamClient = redis.Redis | RedisCluster


@dataclass
class Timeline:
    """What one run of the detectors showed: times in seconds since the processes were started, CPU in seconds
    used between ``settled`` and ``done``."""

    leased: float  # every symbol leased (to whichever detector)
    settled: float  # every symbol leased to its final owner
    done: float  # every stream read and acknowledged to its end by group ``detector``
    acknowledged_at_settle: int  # entries the group had acknowledged at ``settled``
    detector_cpu: float  # all the detector processes
    redis_cpu: float  # every Redis node (the shared single node also serves whoever else uses it)
    host_idle: float  # share of the machine's CPU time left idle (all processes, this host's other work too)
    processed: list[int]  # events each detector says it handled (``order_flow.detector_stopped``)


@dataclass
class Row:
    """One (mode, processes) measurement."""

    mode: str
    processes: int
    events: int
    entries: int
    ceiling: float  # events/s of the bare read
    seen: Timeline

    @property
    def events_per_second(self) -> float:
        """All the events over the time from settled to done."""
        return self.events / (self.seen.done - self.seen.settled)

    @property
    def events_after_settle(self) -> float:
        """The events left at settle, by the share of entries not yet acknowledged then."""
        return self.events * (1 - self.seen.acknowledged_at_settle / self.entries)


# --- the market ------------------------------------------------------------------------
def market_symbols(count: int) -> list[tuple[str, str]]:
    """``(scenario, symbol)`` pairs named as detector_bench names them: ``[("quiet", "QUIET0"), ...]``."""
    pairs = []
    for index in range(count):
        name = SCENARIOS[index % len(SCENARIOS)]
        pairs.append((name, f"{name.replace('-', '')[:6].upper()}{index // len(SCENARIOS)}"))
    return pairs


def repeated_sessions(events: list, sessions: int) -> Iterator:
    """``events`` (one scenario's session), then again ``sessions - 1`` times, each copy shifted in time to begin
    a second after the previous one ends (every ``ts_*`` field moved by the same offset, in ns) and its trades given
    ids of their own (``"812"`` → ``"812.3"`` in the fourth copy: ingest drops a print whose id it has seen)."""
    stamps = [getattr(event, field) for event in events for field in TIME_FIELDS if hasattr(event, field)]
    span = max(stamps) - min(stamps) + NANOSECONDS_PER_SECOND
    for session in range(sessions):
        offset = session * span
        for event in events:
            if session == 0:
                yield event
                continue
            changes: dict[str, object] = {
                field: getattr(event, field) + offset for field in TIME_FIELDS if hasattr(event, field)
            }
            if isinstance(event, Trade) and event.trade_id:
                changes["trade_id"] = f"{event.trade_id}.{session}"
            yield msgspec.structs.replace(event, **changes)


async def prepare(url: str, prefix: str, symbols: int, sessions: int, cache: dict[str, list]) -> tuple[int, float]:
    """Publish the market under ``prefix``, measure the bare read of it, open a position per symbol; returns
    (events published, ceiling in events/s). ``cache`` keeps each symbol's session across runs."""
    published = 0
    async with await Bus.connect(url, prefix=prefix, stream_max_length=10_000_000) as bus:
        for name, symbol in market_symbols(symbols):
            if symbol not in cache:
                cache[symbol] = scenario_events(name, symbol)
            summary = await replay(bus, repeated_sessions(cache[symbol], sessions))
            published += summary.published
        streams = [bus.keys.market(symbol) for _name, symbol in market_symbols(symbols)]
        ceiling = await bare_read(bus, streams)
        registry = PositionRegistry(bus)
        for _name, symbol in market_symbols(symbols):
            await registry.open(symbol, quantity=100, entry_price="50.00")
    return published, ceiling


# --- watching the detectors ---------------------------------------------------------------
def group_progress(client: StreamClient, streams: list[str]) -> tuple[int, list[str]]:
    """(entries group ``detector`` has acknowledged on ``streams``, the streams it has not yet read and acknowledged
    to the end), in one pipeline; a stream whose group does not exist yet counts as not done."""
    pipeline = client.pipeline(transaction=False)
    for stream in streams:
        pipeline.xinfo_groups(stream)
    acknowledged, unfinished = 0, []
    for stream, groups in zip(streams, pipeline.execute(raise_on_error=False), strict=True):
        info = {} if isinstance(groups, Exception) else {as_text(group["name"]): group for group in groups}
        group = info.get(GROUP)
        if group is None:
            unfinished.append(stream)
            continue
        acknowledged += (group.get("entries-read") or 0) - group["pending"]
        if group["lag"] != 0 or group["pending"] != 0:
            unfinished.append(stream)
    return acknowledged, unfinished


def lease_holders(client: StreamClient, keys: Keys, symbols: list[str]) -> list[str]:
    """Each symbol's detector lease holder now (``""``: none), e.g. ``["d2", "d1", ""]``; one MGET (one slot)."""
    values = client.mget([keys.lease(KIND, symbol) for symbol in symbols])
    return [holder_of(as_text(value or b"")) for value in values]


def stop(detectors: list[OrderflowProcess]) -> None:
    """SIGTERM every detector; each must exit 0 (AssertionError with its output otherwise)."""
    for detector in detectors:
        if detector.poll() is None:
            detector.send_signal(signal.SIGTERM)
    for detector in detectors:
        detector.expect_exit(0, timeout=30)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a running process has used (``/proc/<pid>/stat`` fields 14 and 15, in ticks)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # after "pid (command)": field 3 is fields[0]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def host_cpu_seconds() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine since boot, every CPU summed (``/proc/stat``'s ``cpu`` line:
    user nice system idle iowait irq softirq steal …, in ticks; idle counts idle and iowait)."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:9]]
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK"), idle / os.sysconf("SC_CLK_TCK")


def redis_cpu_seconds(client: StreamClient) -> float:
    """User + system CPU seconds of the Redis server, or of every node of the cluster (``INFO cpu``)."""
    if isinstance(client, RedisCluster):
        nodes = list(client.info("cpu", target_nodes=RedisCluster.ALL_NODES).values())
    else:
        nodes = [client.info("cpu")]
    return sum(float(node["used_cpu_user"]) + float(node["used_cpu_sys"]) for node in nodes)


def detector_environment(url: str, prefix: str, log_folder: Path) -> dict[str, str]:
    return orderflow_environment(
        REDIS_URL=url,
        ORDER_FLOW_KEY_PREFIX=prefix,
        ORDER_FLOW_THRESHOLD_MODE="absolute",
        ORDER_FLOW_METRICS_PORT="0",
        ORDER_FLOW_LOG_DIR=str(log_folder),
    )


def run_detectors(url: str, client: StreamClient, keys: Keys, symbols: list[str], count: int) -> Timeline:
    """Start ``count`` detectors at once, watch until group ``detector`` has drained every stream, stop them."""
    names = [f"d{number}" for number in range(1, count + 1)]
    final_owners = [preferred(symbol, names) for symbol in symbols]
    streams = [keys.market(symbol) for symbol in symbols]
    leased = settled = None
    acknowledged_at_settle, cpu_at_settle = 0, (0.0, 0.0, 0.0, 0.0)
    with tempfile.TemporaryDirectory(prefix="detector-scaling-") as folder:
        detectors: list[OrderflowProcess] = []
        try:
            started = time.perf_counter()
            for name in names:
                environment = detector_environment(url, keys.prefix, Path(folder) / name)
                detectors.append(start_orderflow("detect", "--consumer", name, env=environment))

            def cpu() -> tuple[float, float, float, float]:
                detectors_cpu = sum(process_cpu_seconds(detector.pid) for detector in detectors)
                busy, idle = host_cpu_seconds()
                return detectors_cpu, redis_cpu_seconds(client), busy, idle

            unfinished = streams
            while unfinished:
                now = time.perf_counter() - started
                for detector in detectors:
                    if detector.poll() is not None:
                        raise RuntimeError(f"a detector ended early\n{detector.report()}")
                if settled is None:
                    holders = lease_holders(client, keys, symbols)
                    leased = now if leased is None and all(holders) else leased
                    if holders == final_owners:
                        settled, cpu_at_settle = now, cpu()
                        acknowledged_at_settle, _ = group_progress(client, streams)
                _acknowledged, unfinished = group_progress(client, unfinished)
                if now > TIMEOUT_SECONDS:
                    raise RuntimeError(f"not drained after {TIMEOUT_SECONDS:.0f} s: {len(unfinished)} streams left")
                time.sleep(POLL_SECONDS if unfinished else 0)
            done, cpu_at_done = time.perf_counter() - started, cpu()
            stop(detectors)
        finally:
            for detector in detectors:
                detector.stop_if_running()
        processed = [  # each detector's own count, from the line it logs when it stops
            sum(line.get("events", 0) for line in log_lines(Path(folder) / name) if line.get("event") == STOPPED)
            for name in names
        ]
    if leased is None or settled is None:
        raise RuntimeError("drained before the leases settled: raise --sessions")
    detector_cpu, redis_cpu, busy, idle = (now - then for now, then in zip(cpu_at_done, cpu_at_settle, strict=True))
    host_idle = idle / (busy + idle)
    return Timeline(leased, settled, done, acknowledged_at_settle, detector_cpu, redis_cpu, host_idle, processed)


def delete_prefix(client: StreamClient, prefix: str) -> None:
    for key in list(client.scan_iter(match=f"{prefix}:*", count=1000)):
        client.delete(key)


def measure(mode: str, url: str, symbols: int, sessions: int, count: int, cache: dict[str, list]) -> Row:
    """One run (see the module docstring)."""
    prefix = f"bench-scaling-{uuid.uuid4().hex[:8]}"
    cluster = mode == "cluster"
    client: StreamClient = RedisCluster.from_url(url) if cluster else redis.Redis.from_url(url)
    keys = Keys(prefix, cluster=cluster)
    names = [symbol for _name, symbol in market_symbols(symbols)]
    try:
        events, ceiling = asyncio.run(prepare(url, prefix, symbols, sessions, cache))
        entries = sum(int(client.xlen(keys.market(symbol))) for symbol in names)
        seen = run_detectors(url, client, keys, names, count)
    finally:
        delete_prefix(client, prefix)
        client.close()
    return Row(mode, count, events, entries, ceiling, seen)


HEADER = (
    f"{'mode':7} {'procs':>5} {'events':>9} {'seconds':>7} {'leased':>6} {'settled':>7} {'acked@settle':>12} "
    f"{'events/s':>8} {'after settle':>12} {'x1':>4} {'CPU s: det':>10} {'redis':>5} {'idle':>4} "
    f"{'ev/det CPU s':>12}  {'ceiling: bare read, 1 process':>29}  split"
)


def render(row: Row, single_process: Row | None) -> str:
    """One line under :data:`HEADER`; ``x1``: ``after settle`` over the 1-process row's."""
    seen = row.seen
    after_settle = row.events_after_settle / (seen.done - seen.settled)
    scaling = "-"
    if single_process is not None:
        base = single_process.events_after_settle / (single_process.seen.done - single_process.seen.settled)
        scaling = f"{after_settle / base:.2f}"
    line = (
        f"{row.mode:7} {row.processes:5d} {row.events:9,} {seen.done:7.2f} {seen.leased:6.2f} {seen.settled:7.2f} "
        f"{seen.acknowledged_at_settle / row.entries:12.1%} {row.events_per_second:8,.0f} {after_settle:12,.0f} "
        f"{scaling:>4} {seen.detector_cpu:10.2f} {seen.redis_cpu:5.2f} {seen.host_idle:4.0%} "
        f"{row.events_after_settle / seen.detector_cpu:12,.0f}  {row.ceiling:>20,.0f} events/s"
    )
    split = "/".join(f"{count / row.events:.0%}" for count in seen.processed)
    line += f"  {split}" if sum(seen.processed) == row.events else f"  {split} of {sum(seen.processed):,} processed!"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=24, help="symbols of the market (the six scenarios in turn)")
    parser.add_argument("--sessions", type=int, default=8, help="each symbol's session, repeated back to back")
    parser.add_argument("--processes", default="1,2,3", help="counts of detector processes, comma-separated")
    parser.add_argument("--modes", default="single,cluster", help="single (127.0.0.1:6379) and/or cluster")
    arguments = parser.parse_args()
    counts = [int(count) for count in arguments.processes.split(",")]
    modes = arguments.modes.split(",")
    if unknown := set(modes) - {"single", "cluster"}:
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")

    usable = len(os.sched_getaffinity(0))
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"cpus: {os.cpu_count()} ({usable} usable), load average {load}; "
        f"{arguments.symbols} symbols x {arguments.sessions} sessions"
    )
    print(HEADER, flush=True)
    cache: dict[str, list] = {}
    for mode in modes:
        with running_cluster() if mode == "cluster" else contextlib.nullcontext() as cluster:
            url = cluster.url if cluster is not None else SINGLE_NODE_URL
            single_process: Row | None = None
            for count in counts:
                row = measure(mode, url, arguments.symbols, arguments.sessions, count, cache)
                single_process = row if count == 1 else single_process
                print(render(row, single_process), flush=True)


if __name__ == "__main__":
    main()
