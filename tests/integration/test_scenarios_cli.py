"""``orderflow scenario``: writes a demo scenario's capture and lists them, run as a user would."""

from __future__ import annotations

from tests.support.cli import orderflow_environment, run_orderflow


def test_cli_writes_and_lists(tmp_path):
    out = tmp_path / "q.capture"
    done = run_orderflow("scenario", "two-sided", "--out", str(out), env=orderflow_environment())
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 100_000
    listed = run_orderflow("scenario", "--list", env=orderflow_environment(COLUMNS="200"))
    assert "two-sided" in listed.stdout and "large_sellers" in listed.stdout
