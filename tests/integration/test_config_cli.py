"""The ``orderflow config`` commands and every command's ``--help``, run as a user would (a spawned ``orderflow``)."""

from __future__ import annotations

import json

from tests.support.cli import orderflow_environment, run_orderflow


def _environment(**variables: str) -> dict[str, str]:
    """No orderflow setting of the host; a wide console (Rich wraps at COLUMNS)."""
    return orderflow_environment(COLUMNS="200", **variables)


def test_cli_config_show_works_with_no_environment(tmp_path):
    result = run_orderflow("config", "show", "--json", env=_environment(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["large_order_size"] == {
        "variable": "ORDER_FLOW_LARGE_ORDER_SIZE",
        "value": "10000",
        "origin": "default",
    }
    assert shown["redis_url"]["value"] == "(unset: embedded bus)"


def test_cli_masks_secrets_and_reports_origins(tmp_path):
    env = _environment(
        POLYGON_API_KEY="pk_SECRET_987",
        REDIS_URL="redis://u:pw_SECRET_654@h:6379/0",
        ORDER_FLOW_LARGE_ORDER_SIZE="25000",
    )
    result = run_orderflow("config", "show", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "pk_SECRET_987" not in result.stdout + result.stderr
    assert "pw_SECRET_654" not in result.stdout + result.stderr
    assert "25000" in result.stdout and "environment" in result.stdout


def test_cli_invalid_threshold_fails_fast(tmp_path):
    env = _environment(ORDER_FLOW_VOLUME_SPIKE_THRESHOLD="20", REDIS_URL="redis://127.0.0.1:1/0")
    result = run_orderflow("config", "show", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "ORDER_FLOW_VOLUME_SPIKE_THRESHOLD=20 (environment) is invalid: allowed range 1.5 to 10.0" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_schema_check_detects_staleness(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.schema.json").write_text("{}")
    result = run_orderflow("config", "schema", "--check", env=_environment(), cwd=tmp_path)
    assert result.returncode == 1
    assert "stale" in result.stderr
    assert run_orderflow("config", "schema", "--write", env=_environment(), cwd=tmp_path).returncode == 0
    assert run_orderflow("config", "schema", "--check", env=_environment(), cwd=tmp_path).returncode == 0


def test_cli_help_everywhere(tmp_path):
    commands = (
        [],
        ["config"],
        ["config", "show"],
        ["config", "schema"],
        ["config", "redis-users"],
        ["version"],
        ["scenario"],
        ["replay"],
        ["analyze"],
        ["detect"],
        ["demo"],
        ["ingest"],
        ["simulate-polygon"],
        ["positions"],
        ["positions", "open"],
        ["positions", "close"],
        ["positions", "list"],
        ["cluster"],
        ["cluster", "status"],
        ["risk-manager"],
        ["watch"],
    )
    for arguments in commands:
        result = run_orderflow(*arguments, "--help", env=_environment(), cwd=tmp_path)
        assert result.returncode == 0, (arguments, result.stderr)
        assert "Usage" in result.stdout
