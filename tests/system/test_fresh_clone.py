"""The README's two commands on a new clone: no .venv, nothing installed for it, no Redis URL, no API key."""

from __future__ import annotations

import os
import subprocess

from tests.support.paths import REPO


def test_both_readme_commands_work_on_a_new_clone(tmp_path):
    clone = tmp_path / "orderflow"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    assert not (clone / ".venv").exists()
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ORDER_FLOW_", "VIRTUAL_ENV", "PYTHONPATH"))
        and name not in ("POLYGON_API_KEY", "REDIS_URL")
    }
    environment["ORDER_FLOW_METRICS_PORT"] = "0"
    main = subprocess.run(
        ["bash", "scripts/run.sh", "demo", "--speed", "400", "--scenario", "large-sellers"],
        cwd=clone,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert main.returncode == 0, main.stdout[-2000:] + main.stderr[-2000:]
    assert "documented" in main.stdout and "embedded" in main.stdout  # exit 0: every scenario as documented
    tests = subprocess.run(
        [
            "bash",
            "scripts/test.sh",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/unit/test_prices.py",
            "tests/unit/test_config.py",
        ],
        cwd=clone,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout.splitlines()[-1] and "failed" not in tests.stdout.splitlines()[-1]
