"""``orderflow demo``: the main-job command, with and without Redis."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.cli import orderflow_environment, run_orderflow
from tests.support.redis_server import free_port


def _demo(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess:
    """``orderflow demo --speed 400`` in ``tmp_path``, no orderflow setting of the host; its log in tmp_path/logs."""
    env = orderflow_environment(
        COLUMNS="160", ORDER_FLOW_LOG_DIR=str(tmp_path / "logs"), ORDER_FLOW_METRICS_PORT=str(free_port()), **extra
    )
    return run_orderflow("demo", "--speed", "400", env=env, cwd=tmp_path, timeout=300)


def test_demo_runs_on_the_embedded_bus_with_no_infrastructure(tmp_path):
    done = _demo(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "embedded (in-process fakeredis)" in done.stdout
    assert done.stdout.count(" yes ") == 6 and " NO " not in done.stdout
    assert "EXIT  SELLERS" in done.stdout and "EXIT  BURST" in done.stdout
    assert " ET ALERT " in done.stdout  # times for people: New York, labelled
    log = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.jsonl"))
    assert log.count('"event":"order_flow.exit_signal_triggered"') == 2
    assert '"event":"order_flow.monitoring_halted"' in log


@pytest.mark.redis
def test_demo_uses_redis_when_configured(tmp_path, redis_url, key_prefix):
    done = _demo(tmp_path, REDIS_URL=redis_url, ORDER_FLOW_KEY_PREFIX=key_prefix)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "redis://127.0.0.1" in done.stdout and done.stdout.count(" yes ") == 6
    assert f"keys under {key_prefix}-demo:*" in done.stdout
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        # its synthetic exits went to the demo's own keys, never to the live stream a bot reads
        assert client.xlen(f"{key_prefix}-demo:exits") == 2
        assert client.xlen(f"{key_prefix}:exits") == 0 and not list(client.scan_iter(match=f"{key_prefix}:*"))
    finally:
        for key in client.scan_iter(match=f"{key_prefix}-demo:*"):
            client.delete(key)
        client.close()
