"""The compose stack brought up for real (podman, through ../shared/tools/offline-compose.sh), each bring-up taken
down again (``down -v``) even when a check fails:

- the dry-run profile: every service running and not restarting, the dry-run ingest connected, alerts and an exit
  recommendation on the streams within a minute, Prometheus scraping both services with no alert firing;
- the dry run with ``--scale detector-dry-run=3``: three detectors, each alive under its own name and owning a
  disjoint share of the symbols (``orderflow cluster status --json``), alerts and the exit published, Prometheus
  scraping each of the three;
- the dry run on the cluster profile's Redis Cluster (3 masters, 3 replicas): alerts and the exit published on the
  cluster (the single Redis left empty), the cluster reporting ``cluster_state:ok``.

The image is built once for the module; each test copies the build context into a project folder of its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.paths import REPO

OFFLINE_COMPOSE = REPO.parent / "shared" / "tools" / "offline-compose.sh"
PASSWORD = "compose-test-password"
DASHBOARD_TOKEN = "compose-dashboard-token"
PASSWORDS = (
    f"POLYGON_API_KEY=\nREDIS_PASSWORD={PASSWORD}\nREDIS_INGEST_PASSWORD=compose-ingest-password\n"
    "REDIS_DETECTOR_PASSWORD=compose-detector-password\nREDIS_BOT_PASSWORD=compose-bot-password\n"
    f"REDIS_DASHBOARD_PASSWORD=compose-dashboard-password\nORDER_FLOW_DASHBOARD_TOKEN={DASHBOARD_TOKEN}\n"
)
CONTEXT = (
    "Dockerfile",
    ".dockerignore",
    "docker-compose.yml",
    "pyproject.toml",
    "README.md",
    "config",
    "shared",
    "services",
    "orderflow_client",
)
ONE_SHOTS = ("position-dry-run", "redis-cluster-create")  # each runs once and exits 0
# the scaled test's extra positions: with 24 symbols a detector left without any has a chance of 3 × (2/3)^24
EXTRA_SYMBOLS = tuple(f"SHR{letter}" for letter in "ABCDEFGHIJKLMNOPQRSTUVW")
OPEN_EACH = (
    'for symbol in "$@"; do orderflow positions open "$symbol" --quantity 100 --entry 10 --stop 9 || exit 1; done'
)


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


def _podman(*arguments: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        ["podman", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
        env={**os.environ, **(env or {})},
    ).stdout


def _json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _wait(condition: Callable[[], bool], seconds: float, every: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


@pytest.fixture(scope="module")
def build_context(tmp_path_factory) -> Path:
    """The build context copied once, the stand-ins set up and the image built once for every test here (compose
    would build it once per service, in parallel)."""
    _offline_compose()
    context = tmp_path_factory.mktemp("compose-context")
    for name in CONTEXT:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, context / name)
    _run("setup", cwd=context, timeout=1200)
    built = subprocess.run(
        ["podman", "build", "-q", "-t", "orderflow:latest", str(context)], capture_output=True, text=True, timeout=1200
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return context


def _teardown(project: Path) -> None:
    """``down -v``, after removing every container of the project first: podman-compose's down knows only the
    replicas of the compose file (not those of ``--scale``), and podman refuses to remove a container others need."""
    pod = f"pod_{project.name}"
    if subprocess.run(["podman", "pod", "exists", pod], capture_output=True, timeout=60).returncode == 0:
        _podman("pod", "rm", "-f", "-t", "5", pod, check=False)
    leftover = _podman("ps", "-aq", "--filter", f"label=com.docker.compose.project={project.name}", check=False)
    if leftover.split():
        _podman("rm", "-f", "-t", "5", *leftover.split(), check=False)
    _run("compose", "down", "-v", cwd=project, timeout=300, check=False)


@contextmanager
def _stack(build_context: Path, tmp_path: Path, name: str, env: str, *up: str) -> Iterator[Path]:
    """The stack up (``compose up -d *up``) as project ``name`` (never a user's "orderflow"), the profile chosen
    the one documented way (COMPOSE_PROFILES in .env); always taken down again."""
    project = tmp_path / name
    shutil.copytree(build_context, project)
    (project / ".env").write_text(env + PASSWORDS)
    try:
        try:
            _run("compose", "up", "-d", *up, cwd=project, timeout=600)
        except (AssertionError, subprocess.TimeoutExpired) as error:
            # podman itself fails a step now and then on these hosts (a `volume inspect` right after its own
            # `volume create` exiting 125, an `up` hanging): once more from a clean slate; a stack that cannot
            # come up fails the second time as well
            print(f"compose up failed, tried once more after a teardown: {str(error)[-800:]}")
            _teardown(project)
            _run("compose", "up", "-d", *up, cwd=project, timeout=600)
        yield project
    finally:
        _teardown(project)


def _containers(project: Path) -> dict[str, list[str]]:
    """Each container of the project: its status, exit code and restart count."""
    names = [n for n in _podman("ps", "-a", "--format", "{{.Names}}").split() if n.startswith(f"{project.name}_")]
    return {
        name: _podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}", name).split()
        for name in names
    }


def _assert_running_never_restarted(states: dict[str, list[str]]) -> None:
    for name, (status, exit_code, restarts) in states.items():
        if any(f"_{one_shot}_" in name for one_shot in ONE_SHOTS):
            # podman-compose starts a one-shot again when a service depending on it starts (the cluster's is then a
            # no-op of a few seconds): one found running is waited for, and must end with 0
            deadline = time.monotonic() + 60
            while status == "running" and time.monotonic() < deadline:
                time.sleep(1)
                status, exit_code = _podman(
                    "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name
                ).split()
            assert (status, exit_code) == ("exited", "0"), (name, status, exit_code)  # ran and ended
        else:
            assert (status, restarts) == ("running", "0"), (name, status, restarts)  # running, never restarted


def _redis_cli(container: str, *arguments: str) -> str:
    """redis-cli in one of the stack's Redis containers as the administrator (the password in the environment)."""
    return _podman(
        "exec", "-e", "REDISCLI_AUTH", container, "redis-cli", *arguments, check=False, env={"REDISCLI_AUTH": PASSWORD}
    ).strip()


def _as_administrator(container: str, redis_host: str, *command: str) -> subprocess.CompletedProcess:
    """A command run in one of the stack's orderflow containers with REDIS_URL naming Redis's administrator (the
    URL passed through the environment, not on a command line)."""
    return subprocess.run(
        ["podman", "exec", "-e", "REDIS_URL", container, *command],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "REDIS_URL": f"redis://:{PASSWORD}@{redis_host}:6379/0"},
    )


def _orderflow(container: str, redis_host: str, *arguments: str) -> str:
    """An operator's orderflow command (as Redis's administrator); its output."""
    done = _as_administrator(container, redis_host, "orderflow", *arguments)
    assert done.returncode == 0, (arguments, done.stdout[-2000:], done.stderr[-2000:])
    return done.stdout


def _outputs_published(redis: str, alerts: str, exits: str, *cli: str) -> Callable[[], bool]:
    def published() -> bool:
        lengths = [_redis_cli(redis, *cli, "XLEN", key) for key in (alerts, exits)]
        return all(length.isdigit() and int(length) >= 1 for length in lengths)

    return published


def _scrape_targets() -> list[tuple[str, str]]:
    try:
        active = _json("http://127.0.0.1:9090/api/v1/targets")["data"]["activeTargets"]
    except OSError:
        return []
    return sorted((target["labels"]["job"], target["health"]) for target in active)


def _dashboard_shows_the_exit(symbol: str) -> bool:
    """Whether the compose dashboard (token given) shows ``symbol``'s card with an exit recommendation."""
    try:
        snapshot = _json(f"http://127.0.0.1:8765/api/snapshot?token={DASHBOARD_TOKEN}")
    except (OSError, ValueError):
        return False
    return any(item.get("symbol") == symbol and item.get("kind") == "exit" for item in snapshot.get("log", [])) and any(
        card["symbol"] == symbol for card in snapshot["summary"]["cards"]
    )


@pytest.mark.compose
def test_the_dry_run_stack_comes_up_and_produces_alerts_end_to_end(build_context, tmp_path):
    with _stack(build_context, tmp_path, "orderflowstacktest", "COMPOSE_PROFILES=dry-run\n") as project:
        redis = f"{project.name}_redis_1"
        # the image start-up, then the scenario's sellers at 8–10 market minutes at 20x
        _wait(_outputs_published(redis, "orderflow:alerts", "orderflow:exits"), 180, every=3)
        states = _containers(project)
        assert _outputs_published(redis, "orderflow:alerts", "orderflow:exits")(), states
        # redis, simulator, ingest, detector, dashboard, prometheus; the position one-shot and the cluster one-shot
        assert len(states) == 8, states
        _assert_running_never_restarted(states)
        expected = [("orderflow-detector", "up"), ("orderflow-ingest", "up")]
        _wait(lambda: _scrape_targets() == expected, 60)
        assert _scrape_targets() == expected
        connected = _json(
            "http://127.0.0.1:9090/api/v1/query?query=orderflow_feed_connected{job=%22orderflow-ingest%22}"
        )
        # the dry-run ingest is connected
        assert [sample["value"][1] for sample in connected["data"]["result"]] == ["1"]
        firing = [a for a in _json("http://127.0.0.1:9090/api/v1/alerts")["data"]["alerts"] if a["state"] == "firing"]
        assert firing == []
        # the web dashboard, published on this machine, under its read-only Redis user: the token is required
        with pytest.raises(urllib.error.HTTPError, match="401"):
            _json("http://127.0.0.1:8765/api/snapshot")
        _wait(lambda: _dashboard_shows_the_exit("DEMO"), 60)
        assert _dashboard_shows_the_exit("DEMO")


@pytest.mark.compose
def test_three_detectors_share_the_symbols_and_are_each_scraped(build_context, tmp_path):
    env = "COMPOSE_PROFILES=dry-run\n"
    with _stack(build_context, tmp_path, "orderflowscaletest", env, "--scale", "detector-dry-run=3") as project:
        redis = f"{project.name}_redis_1"
        detectors = sorted(name for name in _containers(project) if "_detector-dry-run_" in name)
        assert len(detectors) == 3, detectors
        # more symbols than the dry run's DEMO, so that each detector gets a share of them
        opened = _as_administrator(detectors[0], "redis", "sh", "-c", OPEN_EACH, "open", *EXTRA_SYMBOLS)
        assert opened.returncode == 0, opened.stderr[-2000:]
        symbols = {"DEMO", *EXTRA_SYMBOLS}

        def status() -> dict:
            return json.loads(_orderflow(detectors[0], "redis", "cluster", "status", "--json"))

        def shared_out() -> bool:
            owners = [set(detector["symbols"]) for detector in status()["detectors"] if detector["alive"]]
            return len(owners) == 3 and all(owners) and set().union(*owners) == symbols

        _wait(_outputs_published(redis, "orderflow:alerts", "orderflow:exits"), 180, every=3)
        _wait(shared_out, 60)
        shares = status()
        alive = [detector for detector in shares["detectors"] if detector["alive"]]
        assert len(alive) == 3 and len({detector["name"] for detector in alive}) == 3, shares
        owned = [set(detector["symbols"]) for detector in alive]
        assert all(owned) and sum(map(len, owned)) == len(set().union(*owned)), shares  # each a share, disjoint
        assert set().union(*owned) == symbols and shares["unowned"] == [], shares
        states = _containers(project)
        assert _outputs_published(redis, "orderflow:alerts", "orderflow:exits")(), states
        _assert_running_never_restarted(states)
        # Prometheus finds each replica through DNS: three detector targets, one ingest
        expected = [("orderflow-detector", "up")] * 3 + [("orderflow-ingest", "up")]
        _wait(lambda: _scrape_targets() == expected, 60)
        assert _scrape_targets() == expected
        query = "orderflow_monitored_symbols{job=%22orderflow-detector%22}"
        scraped = _json(f"http://127.0.0.1:9090/api/v1/query?query={query}")["data"]["result"]
        assert len({sample["metric"]["instance"] for sample in scraped}) == 3, scraped  # a sample from each


@pytest.mark.compose
def test_the_dry_run_runs_on_the_cluster_profile(build_context, tmp_path):
    env = "COMPOSE_PROFILES=dry-run,cluster\nREDIS_HOST=redis-cluster\n"
    with _stack(build_context, tmp_path, "orderflowclustertest", env) as project:
        node = f"{project.name}_redis-node-1_1"
        published = _outputs_published(node, "orderflow:{outputs}:alerts", "orderflow:{outputs}:exits", "-c")
        _wait(published, 360, every=3)  # (a loaded 2-core host: 180 s once fell short)
        states = _containers(project)
        assert published(), (states, _podman("logs", f"{project.name}_redis-cluster-create_1", check=False))
        # redis, 6 nodes, simulator, ingest, detector, dashboard, prometheus, the two one-shots
        assert len(states) == 14, states
        _assert_running_never_restarted(states)
        info = _redis_cli(node, "CLUSTER", "INFO")
        assert "cluster_state:ok" in info and "cluster_size:3" in info and "cluster_known_nodes:6" in info, info
        roles = [line.split()[2] for line in _redis_cli(node, "CLUSTER", "NODES").splitlines()]
        assert sorted(role.split(",")[-1] for role in roles) == ["master"] * 3 + ["slave"] * 3, roles
        # the services are on the cluster (the bus says so), and nothing of theirs is in the single Redis
        detector = f"{project.name}_detector-dry-run_1"
        bus = json.loads(_orderflow(detector, "redis-cluster", "cluster", "status", "--json"))["bus"]
        assert bus.endswith("(cluster)"), bus
        assert _redis_cli(f"{project.name}_redis_1", "DBSIZE") == "0"
        expected = [("orderflow-detector", "up"), ("orderflow-ingest", "up")]
        _wait(lambda: _scrape_targets() == expected, 60)
        assert _scrape_targets() == expected
