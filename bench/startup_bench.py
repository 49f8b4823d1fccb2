"""Start-up, whole processes, beside the interpreter's own: how long until a command does its first piece of work.

* **floor** — ``python -c pass`` and ``python -c "import redis.asyncio, msgspec, structlog"`` (the libraries any
  orderflow process needs): no command can start faster;
* **analyze** — ``orderflow analyze`` of a 200-frame capture, to its exit: import, configuration, calendar,
  condition table, the rules over 200 frames, the report;
* **detect ready** — ``orderflow detect --symbol STARTUP`` against a real Redis, from launch until its consumer
  group has read and acknowledged the one event waiting on the stream (polled every 2 ms), then stopped.

Each measure ``--rounds`` times, alternately, wall-clock; the median and the range are printed.

    python -m bench.startup_bench [--rounds 5] [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

from orderflow_client.bus.connection import Bus
from orderflow_client.wire import Trade

REPO = Path(__file__).resolve().parents[1]


def environment(**settings: str) -> dict[str, str]:
    cleaned = {key: value for key, value in os.environ.items() if not key.startswith(("ORDER_FLOW_", "REDIS_URL"))}
    cleaned.pop("POLYGON_API_KEY", None)
    return {**cleaned, "PYTHONPATH": str(REPO), "ORDER_FLOW_METRICS_PORT": "0", **settings}


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def detect_ready(url: str, log_dir: str) -> float:
    """Seconds from launching ``orderflow detect`` until it has acknowledged the event waiting for it."""
    prefix = f"startup-{uuid.uuid4().hex[:8]}"
    symbol = "STARTUP"

    async def publish() -> None:
        async with await Bus.connect(url, prefix=prefix) as bus:
            now = time.time_ns()
            trade = Trade(symbol=symbol, ts_event=now, ts_recv=now, ts_arrival=now, price=10_000_000_000, size=100)
            await bus.publish([(bus.keys.market(symbol), trade)])

    asyncio.run(publish())
    client = redis.Redis.from_url(url)
    stream = f"{prefix}:md:{{{symbol}}}"
    env = environment(REDIS_URL=url, ORDER_FLOW_KEY_PREFIX=prefix, ORDER_FLOW_LOG_DIR=log_dir)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "detect", "--symbol", symbol],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            groups = {g["name"]: g for g in client.xinfo_groups(stream)}
            group = groups.get(b"detector")
            if group is not None and group["lag"] == 0 and group["pending"] == 0:
                return time.perf_counter() - started
            if process.poll() is not None:
                raise RuntimeError(f"orderflow detect exited with {process.returncode}")
            time.sleep(0.002)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
        client.close()


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} s (range {min(values):.3f} – {max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    arguments = parser.parse_args()
    python = sys.executable
    results: dict[str, list[float]] = {"bare": [], "libraries": [], "analyze": [], "detect": []}
    with tempfile.TemporaryDirectory() as scratch:
        full = Path(scratch) / "quiet.capture"
        subprocess.run(
            [python, "-m", "services.cli", "scenario", "quiet", "--out", str(full)],
            cwd=REPO,
            env=environment(),
            check=True,
            capture_output=True,
        )
        small = Path(scratch) / "small.capture"
        small.write_text("".join(full.read_text().splitlines(keepends=True)[:200]))
        env = environment()
        for _round in range(arguments.rounds):
            results["bare"].append(timed([python, "-c", "pass"], env))
            results["libraries"].append(timed([python, "-c", "import redis.asyncio, msgspec, structlog"], env))
            analyze = ["analyze", "--format", "capture", str(small), "--out", f"{scratch}/out"]
            results["analyze"].append(timed([python, "-m", "services.cli", *analyze], env))
            results["detect"].append(detect_ready(arguments.redis_url, f"{scratch}/logs"))
    print(f"floor, python -c pass:                         {summary(results['bare'])}")
    print(f"floor, importing redis.asyncio+msgspec+structlog: {summary(results['libraries'])}")
    print(f"orderflow analyze, 200 frames, to its exit:     {summary(results['analyze'])}   goal <= 0.3 s")
    print(f"orderflow detect, launch -> first event acked:  {summary(results['detect'])}   goal <= 0.3 s")


if __name__ == "__main__":
    main()
