"""Bad settings and arguments: one clear line and exit 2 (3 for Redis), never a traceback or a silent zero."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from shared.config_loading import load_config
from tests.support.cli import orderflow_environment, run_orderflow
from tests.support.paths import shared_data
from tests.support.redis_server import free_port, redis_server_binary


def orderflow(*arguments: str, cwd: Path, timeout: float = 120, **environment: str) -> subprocess.CompletedProcess:
    """``orderflow <arguments>`` in ``cwd`` with no orderflow setting of the host, its log in ``cwd/logs``."""
    variables = {"ORDER_FLOW_METRICS_PORT": "0", "ORDER_FLOW_LOG_DIR": str(cwd / "logs"), **environment}
    return run_orderflow(*arguments, env=orderflow_environment(**variables), cwd=cwd, timeout=timeout)


def one_clear_line(done: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert done.returncode == code, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("REDIS_URL", "localhost:6379", ("REDIS_URL", "must start with redis://")),
        ("ORDER_FLOW_SYMBOL_OVERRIDES", "{bad", ("ORDER_FLOW_SYMBOL_OVERRIDES", "not valid JSON")),
        ("ORDER_FLOW_LARGE_ORDER_QUANTILE", "2", ("ORDER_FLOW_LARGE_ORDER_QUANTILE", "allowed range 0.9 to 0.99999")),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2_for_every_command(tmp_path, variable, value, words):
    for command in (["config", "show"], ["detect", "--symbol", "X"]):
        one_clear_line(orderflow(*command, cwd=tmp_path, **{variable: value}), 2, *words)


def test_an_unusable_log_folder_is_one_clear_line_and_exit_2(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    target = locked / "file-not-folder"
    target.write_text("x")  # a file where the log folder should be: unusable whoever runs the test (root included)
    done = orderflow("detect", "--symbol", "X", cwd=tmp_path, timeout=60, ORDER_FLOW_LOG_DIR=str(target / "order_flow"))
    one_clear_line(done, 2, "log folder unusable")


def test_an_empty_key_is_no_key_and_levels_take_any_case(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POLYGON_API_KEY", "")  # as .env.example ships it
    monkeypatch.setenv("REDIS_URL", " ")
    monkeypatch.setenv("ORDER_FLOW_LOG_LEVEL", "debug")
    config = load_config()
    assert config.polygon_api_key is None and config.redis_url is None and config.log_level == "DEBUG"


def test_a_file_read_as_the_wrong_format_is_an_error_not_zero_events(tmp_path):
    lobster = shared_data("lobster", "LOBSTER_SampleFile_AMZN_2012-06-21_1.zip")
    done = orderflow("analyze", "--format", "capture", str(lobster), "--out", str(tmp_path / "out"), cwd=tmp_path)
    one_clear_line(done, 2, "no event could be read as capture", "is --format right?")
    # without --format the format is told from the name
    detected = orderflow("analyze", str(lobster), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert detected.returncode == 0 and "AMZN" in detected.stdout, detected.stderr
    mixed = orderflow(
        "analyze",
        str(lobster),
        str(shared_data("algoseek", "aig", "20131007_quote.zip")),
        "--out",
        str(tmp_path / "x"),
        cwd=tmp_path,
    )
    one_clear_line(mixed, 2, "mix formats")


def test_algoseek_trades_without_their_quotes_warn_that_sides_fall_back_to_the_tick_test(tmp_path):
    done = orderflow(
        "analyze",
        str(shared_data("algoseek", "aig", "20131007_trade.zip")),
        "--out",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert done.returncode == 0 and "without its quotes" in done.stderr and "tick test" in done.stderr


def test_a_password_protected_redis_without_the_password_says_so_at_once(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--requirepass", "s3cret-pw"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        started = time.monotonic()
        missing = orderflow("positions", "list", cwd=tmp_path, REDIS_URL=f"redis://127.0.0.1:{port}/0")
        elapsed = time.monotonic() - started
        one_clear_line(missing, 3, "requires a password", "REDIS_URL")
        assert elapsed < 10  # no retrying what cannot succeed (it took ~25 s)
        wrong = orderflow("positions", "list", cwd=tmp_path, REDIS_URL=f"redis://:wrong-pw@127.0.0.1:{port}/0")
        one_clear_line(wrong, 3, "refused the password")
        assert "wrong-pw" not in wrong.stderr + wrong.stdout
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_stop_on_the_wrong_side_of_the_entry_is_refused(tmp_path):
    long = orderflow("positions", "open", "AAPL", "--quantity", "100", "--entry", "100", "--stop", "101", cwd=tmp_path)
    assert long.returncode == 2 and "must be below its" in long.stderr.replace("\n", " ")
    short = orderflow("positions", "open", "AAPL", "--quantity", "-100", "--entry", "100", "--stop", "99", cwd=tmp_path)
    assert short.returncode == 2 and "must be above its" in short.stderr.replace("\n", " ")
    fine = orderflow("positions", "open", "AAPL", "--quantity", "100", "--entry", "100", "--stop", "99", cwd=tmp_path)
    assert fine.returncode == 0, fine.stderr
