"""Logging: JSONL per UTC day with the documented event names; secrets never written."""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import pytest

from orderflow_client import logs
from shared.config_loading import load_config


@pytest.fixture
def log_dir(tmp_path: Path):
    directory = tmp_path / "logs" / "order_flow"
    yield directory
    logging.getLogger().handlers.clear()


def _lines(directory: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(directory.glob("*.jsonl")) for line in path.read_text().splitlines()]


def test_events_are_jsonl_with_utc_timestamps_and_spec_names(log_dir):
    logs.configure_logging(service="detector", log_dir=log_dir, console=False)
    log = logs.get_logger()
    log.warning(logs.LARGE_SELLER_DETECTED, symbol="AAPL", order_size=12_000, latency_ms=1.5)
    log.warning(logs.EXIT_SIGNAL_TRIGGERED, symbol="AAPL")
    files = list(log_dir.glob("*.jsonl"))
    assert len(files) == 1
    assert files[0].name == time.strftime("%Y-%m-%d", time.gmtime()) + ".jsonl"
    raw = files[0].read_text()
    # the documented grep queries match compact JSON
    assert '"event":"order_flow.exit_signal_triggered"' in raw
    first, _second = _lines(log_dir)
    assert first["event"] == "order_flow.large_seller_detected"
    assert first["latency_ms"] == 1.5 and first["service"] == "detector" and first["level"] == "warning"
    assert first["timestamp"].endswith("Z") and "T" in first["timestamp"]


def test_a_new_utc_day_opens_a_new_file(log_dir):
    handler = logs.DailyJsonlFileHandler(log_dir)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for created, message in ((1_700_000_000.0, "day one"), (1_700_000_000.0 + 86_400, "day two")):
        record = logging.LogRecord("t", logging.INFO, __file__, 1, message, None, None)
        record.created = created
        handler.emit(record)
    handler.close()
    assert (log_dir / "2023-11-14.jsonl").read_text() == "day one\n"
    assert (log_dir / "2023-11-15.jsonl").read_text() == "day two\n"


def test_secrets_appear_nowhere(log_dir, clean_environment, monkeypatch):
    key = "pk_live_Zq81SECRETkey"
    password = "redis_pw_SECRET_42"
    monkeypatch.setenv("POLYGON_API_KEY", key)
    monkeypatch.setenv("REDIS_URL", f"redis://bot:{password}@127.0.0.1:6379/0")
    config = load_config()
    console = io.StringIO()
    logs.configure_logging(service="ingest", log_dir=log_dir, secrets=config.secret_values(), console_stream=console)
    log = logs.get_logger()
    try:
        raise RuntimeError(f"auth failed for key {key} at wss://socket.polygon.io")
    except RuntimeError:
        log.exception("order_flow.feed_auth_failed")
    log.info(
        "connecting",
        url=config.redis_url.get_secret_value(),
        rest=f"https://api.polygon.io/v3/trades/AAPL?apiKey={key}",
    )
    log.info(
        "config dump", config=config.model_dump(mode="python") | {"raw_key": key, "nested": [key, {"k": password}]}
    )
    logging.getLogger("websockets.client").warning('> TEXT \'{"action":"auth","params":"%s"}\'', key)
    written = "".join(path.read_text() for path in log_dir.glob("*.jsonl"))
    shown = console.getvalue()
    for output in (written, shown):
        assert key not in output
        assert password not in output
        assert "***" in output
    assert "auth failed for key ***" in written  # the message survives, masked
    assert "redis://bot:***@127.0.0.1:6379/0" in written


def test_url_and_query_masking_without_registration():
    assert logs.mask_text("redis://u:p4ss@host:1/0 and rediss://:x@h") == "redis://u:***@host:1/0 and rediss://:***@h"
    assert logs.mask_text("GET /v3/trades?apiKey=abc&limit=5") == "GET /v3/trades?apiKey=***&limit=5"


def test_people_read_new_york_time_labelled():
    from orderflow_client.timestamps import ns_to_new_york

    assert ns_to_new_york(1_795_553_991_000_000_000) == "15:59:51 ET"  # 2026-11-24, EST (UTC-5)
    assert ns_to_new_york(1_381_175_999_250_000_000, milliseconds=True) == "15:59:59.250 ET"  # 2013-10-07, EDT (UTC-4)


def test_console_lines_are_short_and_in_new_york_time(tmp_path):
    import io

    from orderflow_client.logs import CONSOLE_WIDTH, configure_logging, get_logger

    stream = io.StringIO()
    configure_logging(service="detector", log_dir=tmp_path / "logs", level="INFO", console_stream=stream)
    get_logger("x").warning(
        "order_flow.large_seller_detected",
        symbol="DEMO",
        order_size=12000,
        price_level="49.62",
        source="tape",
        severity="warning",
        latency_ms=30.3,
        alert_ids=["a"] * 50,
        evidence={"threshold": 10000, "threshold_source": "absolute", "vwap": "49.63"},
    )
    get_logger("x").info("order_flow.detector_started", consumer="c", symbols=["S"] * 100)
    first, second = stream.getvalue().splitlines()
    assert first.endswith("large seller DEMO 12,000 @ 49.62 (tape, warning; threshold 10,000 absolute) 30.3 ms")
    assert " ET warning " in first and len(second) <= CONSOLE_WIDTH and second.endswith("…")
    written = "".join(path.read_text() for path in (tmp_path / "logs").glob("*.jsonl"))
    assert '"vwap":"49.63"' in written and written.count('"a"') == 50  # the files keep every field
