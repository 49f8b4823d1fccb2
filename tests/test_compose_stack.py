"""The compose stack brought up for real (podman, through ../shared/tools/offline-compose.sh), in the dry-run profile:
every service running and not restarting, the dry-run ingest connected, alerts and an exit recommendation on the
streams within a minute, Prometheus scraping both services with no alert firing; then down."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OFFLINE_COMPOSE = REPO.parent / "shared" / "tools" / "offline-compose.sh"
PASSWORD = "compose-test-password"


def _offline_compose() -> Path:
    if not OFFLINE_COMPOSE.exists() or os.geteuid() != 0:
        reason = f"{OFFLINE_COMPOSE} (podman, as root) is needed to bring the compose stack up"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return OFFLINE_COMPOSE


def _run(*arguments: str, cwd: Path, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["bash", str(OFFLINE_COMPOSE), *arguments], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, f"{arguments}: {done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _podman(*arguments: str, check: bool = True) -> str:
    return subprocess.run(["podman", *arguments], capture_output=True, text=True, timeout=120, check=check).stdout


def _json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.compose
def test_the_dry_run_stack_comes_up_and_produces_alerts_end_to_end(tmp_path):
    tool = _offline_compose()
    project = tmp_path / "orderflow"
    project.mkdir()
    for name in ("Dockerfile", ".dockerignore", "docker-compose.yml", "pyproject.toml", "README.md", "config", "shared", "services"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, project / name,
                                                               **({"ignore": shutil.ignore_patterns("__pycache__")} if source.is_dir() else {}))
    (project / ".env").write_text(f"COMPOSE_PROFILES=dry-run\nPOLYGON_API_KEY=\nREDIS_PASSWORD={PASSWORD}\n")
    _run("setup", cwd=project, timeout=1200)
    _run("compose", "--profile", "dry-run", "build", cwd=project, timeout=1200)
    try:
        _run("compose", "--profile", "dry-run", "up", "-d", cwd=project, timeout=600)
        redis = next(name for name in _podman("ps", "--format", "{{.Names}}").split() if "redis" in name)

        def stream_length(key: str) -> int:
            out = _podman("exec", redis, "redis-cli", "-a", PASSWORD, "--no-auth-warning", "XLEN", key, check=False).strip()
            return int(out) if out.isdigit() else 0

        deadline = time.monotonic() + 180  # the image start-up, then the scenario's sellers at 8–10 market minutes at 20x
        while time.monotonic() < deadline and (stream_length("orderflow:alerts") < 1 or stream_length("orderflow:exits") < 1):
            time.sleep(3)
        states = {line.split()[0]: line for line in _podman("ps", "-a", "--format", "{{.Names}} {{.Status}} {{.Restarts}}").splitlines()
                  if project.name in line.split()[0]}
        assert stream_length("orderflow:alerts") >= 1 and stream_length("orderflow:exits") >= 1, states
        for name, line in states.items():
            if "position-dry-run" in name:
                assert "Exited (0)" in line, line  # the one-shot registered the position and ended
            else:
                assert line.split()[1] == "Up" and line.split()[-1] == "0", line  # running, never restarted
        ingest = next(name for name in states if "ingest-dry-run" in name)
        assert '"order_flow.feed_connected"' in _podman("logs", ingest) or "connected" in _podman("logs", ingest)
        deadline = time.monotonic() + 60
        targets: dict = {}
        while time.monotonic() < deadline:
            try:
                targets = {t["labels"]["job"]: t["health"] for t in _json("http://127.0.0.1:9090/api/v1/targets")["data"]["activeTargets"]}
            except OSError:
                targets = {}
            if targets.get("orderflow-ingest") == targets.get("orderflow-detector") == "up":
                break
            time.sleep(2)
        assert targets == {"orderflow-ingest": "up", "orderflow-detector": "up"}, targets
        firing = [a for a in _json("http://127.0.0.1:9090/api/v1/alerts")["data"]["alerts"] if a["state"] == "firing"]
        assert firing == []
    finally:
        _run("compose", "--profile", "dry-run", "down", "-v", cwd=project, timeout=300, check=False)
    assert tool.exists()
