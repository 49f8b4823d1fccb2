"""The full journey as separate processes on a real Redis:
simulator → orderflow ingest → orderflow detect → a stand-in bot (orderflow risk-manager)."""

from __future__ import annotations

import signal
import socket

import pytest
import redis

from services.tools.scenarios import write_scenario
from tests.support.cli import OrderflowProcess, orderflow_environment, run_orderflow, start_orderflow
from tests.support.jsonl import log_lines
from tests.support.redis_server import free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.redis
KEY = "e2e-local-key-93b1"


def test_the_full_journey(redis_url, key_prefix, tmp_path):
    capture = tmp_path / "sellers.capture"
    write_scenario("large-sellers", capture, symbol="SELLERS")
    port = free_port()
    logs = tmp_path / "logs"
    env = orderflow_environment(
        REDIS_URL=redis_url,
        ORDER_FLOW_KEY_PREFIX=key_prefix,
        POLYGON_API_KEY=KEY,
        ORDER_FLOW_POLYGON_FEED=f"127.0.0.1:{port}",
        ORDER_FLOW_POLYGON_SECURE="false",
        ORDER_FLOW_POLYGON_REST_URL=f"http://127.0.0.1:{port}",
        ORDER_FLOW_LOG_DIR=str(logs),
    )
    processes: dict[str, OrderflowProcess] = {}

    def start(name: str, *arguments: str) -> OrderflowProcess:
        process = start_orderflow(*arguments, env={**env, "ORDER_FLOW_METRICS_PORT": str(free_port())})
        processes[name] = process
        return process

    def stop(name: str) -> None:
        """SIGTERM, then exit 0 within 30 s (else its console output and the log in the failure)."""
        processes[name].send_signal(signal.SIGTERM)
        processes[name].expect_exit(0, timeout=30)

    client = redis.Redis.from_url(redis_url)
    try:
        start(
            "simulator", "simulate-polygon", "--port", str(port), "--speed", "40", str(capture)
        )  # the key: POLYGON_API_KEY
        wait_for(lambda: _listening(port), 30, "the simulator")
        opened = run_orderflow(
            "positions", "open", "SELLERS", "--quantity", "500", "--entry", "50.10", "--stop", "48.00", env=env
        )
        assert opened.returncode == 0, opened.stdout + opened.stderr
        start("bot", "risk-manager", "--name", "e2e-bot")
        wait_for(lambda: _group_exists(client, f"{key_prefix}:exits", "riskmanager-e2e-bot"), 30, "the bot's group")
        stop("bot")  # the bot is down while the selling happens

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
            stop(name)
    finally:
        for process in processes.values():
            process.stop_if_running()
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
    assert decision["symbol"] == "SELLERS" and decision["decision"] == "exit"  # the default policy: its own sellers
    assert any(recommendations[0]["reasoning"] in reason for reason in decision["reasons"])  # it cites the order flow
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
