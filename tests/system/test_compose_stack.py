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

from tests.support.paths import REPO

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
    done = subprocess.run(
        ["bash", str(OFFLINE_COMPOSE), *arguments], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
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
    project = tmp_path / "orderflowstacktest"  # the compose project (and container) names: never a user's "orderflow"
    project.mkdir()
    for name in (
        "Dockerfile",
        ".dockerignore",
        "docker-compose.yml",
        "pyproject.toml",
        "README.md",
        "config",
        "shared",
        "services",
        "orderflow_client",
    ):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(
            source, project / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if source.is_dir() else {})
        )
    # the profile is chosen the one documented way: COMPOSE_PROFILES in .env
    (project / ".env").write_text(
        f"COMPOSE_PROFILES=dry-run\nPOLYGON_API_KEY=\nREDIS_PASSWORD={PASSWORD}\n"
        "REDIS_INGEST_PASSWORD=compose-ingest-password\nREDIS_DETECTOR_PASSWORD=compose-detector-password\n"
        "REDIS_BOT_PASSWORD=compose-bot-password\n"
    )
    _run("setup", cwd=project, timeout=1200)
    # one image serves every orderflow service: build it once (compose would build it once per service, in parallel)
    built = subprocess.run(
        ["podman", "build", "-q", "-t", "orderflow:latest", str(project)], capture_output=True, text=True, timeout=1200
    )
    assert built.returncode == 0, built.stderr[-3000:]
    try:
        _run("compose", "up", "-d", cwd=project, timeout=600)
        redis = next(name for name in _podman("ps", "--format", "{{.Names}}").split() if "redis" in name)

        def stream_length(key: str) -> int:
            out = _podman(
                "exec", redis, "redis-cli", "-a", PASSWORD, "--no-auth-warning", "XLEN", key, check=False
            ).strip()
            return int(out) if out.isdigit() else 0

        deadline = (
            time.monotonic() + 180
        )  # the image start-up, then the scenario's sellers at 8–10 market minutes at 20x
        while time.monotonic() < deadline and (
            stream_length("orderflow:alerts") < 1 or stream_length("orderflow:exits") < 1
        ):
            time.sleep(3)
        containers = [
            name
            for name in _podman("ps", "-a", "--format", "{{.Names}}").split()
            if name.startswith(f"{project.name}_")
        ]
        states = {
            name: _podman(
                "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}", name
            ).split()
            for name in containers
        }
        assert stream_length("orderflow:alerts") >= 1 and stream_length("orderflow:exits") >= 1, states
        assert len(states) == 6, states  # redis, simulator, ingest, detector, the position one-shot, prometheus
        for name, (status, exit_code, restarts) in states.items():
            if "position-dry-run" in name:
                assert (status, exit_code) == ("exited", "0"), name  # the one-shot registered the position and ended
            else:
                assert (status, restarts) == ("running", "0"), (name, status, restarts)  # running, never restarted
        deadline = time.monotonic() + 60
        targets: dict = {}
        while time.monotonic() < deadline:
            try:
                targets = {
                    t["labels"]["job"]: t["health"]
                    for t in _json("http://127.0.0.1:9090/api/v1/targets")["data"]["activeTargets"]
                }
            except OSError:
                targets = {}
            if targets.get("orderflow-ingest") == targets.get("orderflow-detector") == "up":
                break
            time.sleep(2)
        assert targets == {"orderflow-ingest": "up", "orderflow-detector": "up"}, targets
        connected = _json(
            "http://127.0.0.1:9090/api/v1/query?query=orderflow_feed_connected{job=%22orderflow-ingest%22}"
        )
        assert [sample["value"][1] for sample in connected["data"]["result"]] == [
            "1"
        ]  # the dry-run ingest is connected
        firing = [a for a in _json("http://127.0.0.1:9090/api/v1/alerts")["data"]["alerts"] if a["state"] == "firing"]
        assert firing == []
    finally:
        _run("compose", "down", "-v", cwd=project, timeout=300, check=False)
    assert tool.exists()
