"""The full journey as separate processes on a real Redis:
simulator → orderflow ingest → orderflow detect → a stand-in bot (orderflow risk-manager)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from services.tools.scenarios import write_scenario
from tests.support.paths import REPO
from tests.support.redis_server import free_port

pytestmark = pytest.mark.redis
KEY = "e2e-local-key-93b1"


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def log_lines(folder: Path) -> list[dict]:
    return [
        json.loads(line) for path in folder.glob("*.jsonl") for line in path.read_text().splitlines() if line.strip()
    ]


def test_the_full_journey(redis_url, key_prefix, tmp_path):
    capture = tmp_path / "sellers.capture"
    write_scenario("large-sellers", capture, symbol="SELLERS")
    port = free_port()
    logs = tmp_path / "logs"
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "ORDER_FLOW_KEY_PREFIX": key_prefix,
        "POLYGON_API_KEY": KEY,
        "ORDER_FLOW_POLYGON_FEED": f"127.0.0.1:{port}",
        "ORDER_FLOW_POLYGON_SECURE": "false",
        "ORDER_FLOW_POLYGON_REST_URL": f"http://127.0.0.1:{port}",
        "ORDER_FLOW_LOG_DIR": str(logs),
        "PYTHONPATH": str(REPO),
    }
    processes: dict[str, subprocess.Popen] = {}

    def start(name: str, *arguments: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", *arguments],
            cwd=REPO,
            env={**env, "ORDER_FLOW_METRICS_PORT": str(free_port())},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes[name] = process
        return process

    def stop(name: str) -> int:
        process = processes[name]
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=30)

    client = redis.Redis.from_url(redis_url)
    try:
        start(
            "simulator", "simulate-polygon", "--port", str(port), "--speed", "40", str(capture)
        )  # the key: POLYGON_API_KEY
        wait_for(lambda: _listening(port), 30, "the simulator")
        assert (
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "services.cli",
                    "positions",
                    "open",
                    "SELLERS",
                    "--quantity",
                    "500",
                    "--entry",
                    "50.10",
                    "--stop",
                    "48.00",
                ],
                cwd=REPO,
                env=env,
                timeout=60,
            ).returncode
            == 0
        )
        start("bot", "risk-manager", "--name", "e2e-bot")
        wait_for(lambda: _group_exists(client, f"{key_prefix}:exits", "riskmanager-e2e-bot"), 30, "the bot's group")
        assert stop("bot") == 0  # the bot is down while the selling happens

        start("ingest", "ingest")
        start("detect", "detect")
        wait_for(
            lambda: client.exists(f"{key_prefix}:exits") and client.xlen(f"{key_prefix}:exits") >= 1,
            90,
            "an exit recommendation",
        )
        assert client.xlen(f"{key_prefix}:alerts") >= 3

        start("bot", "risk-manager", "--name", "e2e-bot")  # back up: catches up from the durable stream
        wait_for(
            lambda: any(
                line.get("source") == "risk_manager" and line["event"] == "order_flow.exit_signal_triggered"
                for line in log_lines(logs)
            ),
            30,
            "the bot's decision",
        )

        processes["simulator"].send_signal(signal.SIGTERM)  # the feed dies
        processes["simulator"].wait(timeout=30)
        wait_for(
            lambda: any(line["event"] == "order_flow.symbol_unmonitored" for line in log_lines(logs)),
            30,
            "the bot to see the symbol unmonitored",
        )

        for name in ("bot", "detect", "ingest"):
            assert stop(name) == 0, processes[name].stderr.read()
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
        client.close()

    lines = log_lines(logs)
    decisions = [
        line
        for line in lines
        if line.get("source") == "risk_manager" and line["event"] == "order_flow.exit_signal_triggered"
    ]
    recommendations = [
        line
        for line in lines
        if line.get("source") == "detector" and line["event"] == "order_flow.exit_signal_triggered"
    ]
    assert len(decisions) == len(recommendations) >= 1  # none lost while the bot was down, none twice
    decision = decisions[0]
    assert decision["symbol"] == "SELLERS" and decision["decision"] in ("exit", "tighten_stop", "hold")
    assert any("order flow" in reason for reason in decision["reasons"])
    unmonitored = next(line for line in lines if line["event"] == "order_flow.symbol_unmonitored")
    assert unmonitored["symbols"] == ["SELLERS"] and unmonitored["state"] == "disconnected"
    everything = "".join(path.read_text() for path in logs.glob("*.jsonl"))
    assert KEY not in everything


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _group_exists(client: redis.Redis, stream: str, group: str) -> bool:
    try:
        return any(info["name"].decode() == group for info in client.xinfo_groups(stream))
    except redis.ResponseError:
        return False
