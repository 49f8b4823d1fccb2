"""Deployment: the compose file (validated statically: no Docker engine runs here),
the image, the Prometheus config and rules, and a real Prometheus scraping a
real detector on loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from shared.acl import ROLES
from shared.config import OrderFlowConfig, environment_name
from tests.support.cli import orderflow_environment, start_orderflow
from tests.support.paths import REPO, program
from tests.support.redis_server import free_port

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _tool(name: str) -> str:
    return program(name, "prometheus" if name == "promtool" else None)


def test_compose_file_is_valid(tmp_path):
    for name in ("docker-compose.yml", "Dockerfile", "config"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    for profiles, redis_host in (
        ("live", "redis"),
        ("dry-run", "redis"),
        ("dry-run,cluster", "redis-cluster"),
        ("live,grafana", "redis"),
    ):
        done = subprocess.run(
            [_tool("docker-compose"), "config", "-q"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, "COMPOSE_PROFILES": profiles, "REDIS_HOST": redis_host},
            timeout=60,
        )
        assert done.returncode == 0, done.stderr


def test_compose_services_health_networks_and_persistence():
    services = COMPOSE["services"]
    assert {
        "redis",
        "ingest",
        "detector",
        "prometheus",
        "simulator",
        "ingest-dry-run",
        "detector-dry-run",
        "position-dry-run",
    } <= set(services)
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no health check"
        assert service.get("restart", "unless-stopped") == (
            "no" if name in ("position-dry-run", "admin", "redis-cluster-create") else "unless-stopped"
        )
    redis = services["redis"]
    assert "ports" not in redis  # not published to the host by default
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "--aclfile /tmp/users.acl" in command
    assert "./config/redis-users.acl:/etc/redis/redis-users.acl:ro" in redis["volumes"]
    # secrets never on a command line `ps` shows: only each password's hash reaches sed, redis-cli gets REDISCLI_AUTH
    assert (
        "requirepass" not in command
        and command.count("$$(sha ") == len(ROLES) + 1
        and "printf '%s' \"$$1\" | sha256sum" in command
    )
    assert "REDISCLI_AUTH" in redis["healthcheck"]["test"][1] and " -a " not in redis["healthcheck"]["test"][1]
    assert all("--api-key" not in " ".join(service.get("command") or []) for service in services.values())
    assert services["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]
    assert services["ingest"]["profiles"] == services["detector"]["profiles"] == ["live"]
    assert all(
        services[name]["profiles"] == ["dry-run"]
        for name in ("simulator", "ingest-dry-run", "detector-dry-run", "position-dry-run")
    )
    # Prometheus scrapes "ingest" and "detector" in either profile: the dry run's services answer to those names
    assert services["ingest-dry-run"]["networks"]["orderflow"]["aliases"] == ["ingest"]
    assert services["detector-dry-run"]["networks"]["orderflow"]["aliases"] == ["detector"]
    assert "--host 0.0.0.0" in services["simulator"]["command"][-1]  # its peers reach it from other containers
    assert "orderflow" in COMPOSE["networks"] and {"redis-data", "prometheus-data", "orderflow-logs"} <= set(
        COMPOSE["volumes"]
    )
    anchor = COMPOSE["x-orderflow"]
    assert anchor["restart"] == "unless-stopped" and anchor["networks"] == ["orderflow"]
    # logs on a named volume (created from the image, owned by its user): a host folder owned by root is not writable
    assert "./config:/app/config:ro" in anchor["volumes"] and "orderflow-logs:/app/logs" in anchor["volumes"]
    assert anchor["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose_scales_the_services_and_offers_a_redis_cluster():
    """``--scale detector=3`` needs nothing more: no fixed container name, no host port but Prometheus's (not
    scaled). The cluster profile: six nodes with the same users as "redis", made a cluster by a one-shot every
    service waits for (a no-op unless REDIS_HOST=redis-cluster); the services reach Redis at REDIS_HOST."""
    services = COMPOSE["services"]
    assert all("container_name" not in service for service in services.values())
    assert [name for name, service in services.items() if "ports" in service] == ["dashboard", "prometheus", "grafana"]
    nodes = [f"redis-node-{number}" for number in range(1, 7)]
    assert {name for name, service in services.items() if service.get("profiles") == ["cluster"]} == set(nodes)
    single = " ".join(services["redis"]["command"])
    for name in nodes:
        node = services[name]
        command = " ".join(node["command"])
        assert "--cluster-enabled yes" in command and "--aclfile /tmp/users.acl" in command
        assert (
            command.count("$$(sha ") == len(ROLES) + 1 and single.split("exec redis-server")[0] in command
        )  # the same users
        assert 'masterauth "$$REDIS_PASSWORD"' in command and "requirepass" not in command  # on stdin, not argv
        assert "./config/redis-users.acl:/etc/redis/redis-users.acl:ro" in node["volumes"]
        assert node["networks"]["orderflow"]["aliases"] == ["redis-cluster"] and "ports" not in node
        assert node["environment"] == services["redis"]["environment"]
    create = services["redis-cluster-create"]
    script = create["command"][-1]
    assert "profiles" not in create and create["restart"] == "no"
    assert "--cluster-replicas 1 --cluster-yes" in script and "cluster_state:ok" in script
    assert all(name in script for name in nodes) and create["environment"]["REDISCLI_AUTH"].startswith(
        "${REDIS_PASSWORD"
    )
    orderflow = [name for name, service in services.items() if str(service.get("image")) == "orderflow:latest"]
    for name in orderflow:
        service = services[name]
        if name != "simulator":
            assert "@${REDIS_HOST:-redis}:6379/0" in service["environment"]["REDIS_URL"], name
            waits = service["depends_on"]["redis-cluster-create"]["condition"]
            assert waits == "service_completed_successfully", name


def test_each_compose_service_reaches_redis_as_its_own_user():
    """The ACL file compose's Redis loads is the one orderflow renders, and each service logs in as the user made
    for it (the administrator only for operators' commands)."""
    from shared.acl import users_template

    assert (REPO / "config" / "redis-users.acl").read_text() == users_template()
    services = COMPOSE["services"]
    expected = {
        "ingest": "ingest",
        "ingest-dry-run": "ingest",
        "detector": "detector",
        "detector-dry-run": "detector",
        "position-dry-run": "bot",
        "dashboard": "dashboard",
    }
    for name, user in expected.items():
        url = services[name]["environment"]["REDIS_URL"]
        assert url.startswith(f"redis://{user}:${{REDIS_{user.upper()}_PASSWORD:?"), (name, url)
    assert services["admin"]["profiles"] == ["tools"] and COMPOSE["x-orderflow"]["environment"]["REDIS_URL"].startswith(
        "redis://:${REDIS_PASSWORD"
    )
    for variable in (
        "REDIS_PASSWORD",
        "REDIS_INGEST_PASSWORD",
        "REDIS_DETECTOR_PASSWORD",
        "REDIS_BOT_PASSWORD",
        "REDIS_DASHBOARD_PASSWORD",
    ):
        assert variable in services["redis"]["environment"]


def test_metrics_listen_on_this_machine_only_unless_compose_opens_them():
    """Metrics bind 127.0.0.1 by default; in compose every service that serves them opens them to Prometheus's
    container (0.0.0.0), and only those."""
    from orderflow_client.metrics import serve_metrics

    assert OrderFlowConfig().metrics_host == "127.0.0.1"
    server = serve_metrics(free_port())
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
    for name, service in COMPOSE["services"].items():
        environment = service.get("environment") or {}
        if str(environment.get("ORDER_FLOW_METRICS_PORT", "0")) != "0":
            assert environment.get("ORDER_FLOW_METRICS_HOST") == "0.0.0.0", (
                f"{name} serves metrics Prometheus cannot reach"
            )
        else:
            assert "ORDER_FLOW_METRICS_HOST" not in environment, name


def test_the_image_runs_as_a_user_and_bakes_in_no_secret():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "\nUSER orderflow\n" in dockerfile
    for line in dockerfile.splitlines():
        if line.startswith(("ENV", "ARG")):
            assert "KEY" not in line and "PASSWORD" not in line and "REDIS_URL" not in line, line
    assert ".env" in (REPO / ".dockerignore").read_text().split()
    assert ".env" in (REPO / ".gitignore").read_text().split()
    compose_text = (REPO / "docker-compose.yml").read_text()
    assert "POLYGON_API_KEY: dry-run" in compose_text  # the only literal key: the simulator's
    example = (REPO / ".env.example").read_text()
    assert "POLYGON_API_KEY=\n" in example  # empty: the user fills it in


def test_env_example_lists_every_setting():
    example = (REPO / ".env.example").read_text()
    for name in OrderFlowConfig.model_fields:
        if name != "redis_url":  # compose builds REDIS_URL from REDIS_PASSWORD
            assert environment_name(name) in example, environment_name(name)
    assert "REDIS_PASSWORD=" in example and "COMPOSE_PROFILES=live" in example


def test_prometheus_config_and_rules_are_valid():
    promtool = _tool("promtool")
    rules = subprocess.run(
        [promtool, "check", "rules", str(REPO / "config" / "prometheus-rules.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    names = {
        rule["alert"]
        for group in yaml.safe_load((REPO / "config" / "prometheus-rules.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    assert {"OrderflowFeedDown", "OrderflowConsumerLag", "OrderflowSymbolsHalted"} <= names
    with tempfile.TemporaryDirectory() as folder:
        config = yaml.safe_load((REPO / "config" / "prometheus.yml").read_text())
        config["rule_files"] = [str(REPO / "config" / "prometheus-rules.yml")]
        path = Path(folder) / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        checked = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    # every replica a target: the service name (or the dry run's alias) resolved to one address per container
    jobs = {job["job_name"]: job["dns_sd_configs"] for job in config["scrape_configs"]}
    assert jobs["orderflow-detector"] == [{"names": ["detector"], "type": "A", "port": 9464, "refresh_interval": "15s"}]
    assert jobs["orderflow-ingest"] == [{"names": ["ingest"], "type": "A", "port": 9464, "refresh_interval": "15s"}]


@pytest.mark.redis
def test_a_real_prometheus_scrapes_the_documented_metrics(redis_url, key_prefix, tmp_path):
    prometheus = _tool("prometheus")
    metrics_port, prometheus_port = free_port(), free_port()
    env = orderflow_environment(
        REDIS_URL=redis_url,
        ORDER_FLOW_KEY_PREFIX=key_prefix,
        ORDER_FLOW_METRICS_PORT=str(metrics_port),
        ORDER_FLOW_LOG_DIR=str(tmp_path / "logs"),
    )
    detector = start_orderflow("detect", "--symbol", "SCRAPE", env=env)
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {"job_name": "orderflow-detector", "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    server = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        names: set[str] = set()
        while time.monotonic() < deadline:
            try:
                answer = json.load(
                    urllib.request.urlopen(
                        f"http://127.0.0.1:{prometheus_port}/api/v1/label/__name__/values", timeout=3
                    )
                )
                names = set(answer["data"])
                if "orderflow_halted_symbols" in names and "orderflow_monitored_symbols" in names:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{prometheus_port}/api/v1/targets", timeout=3))
        assert targets["data"]["activeTargets"][0]["health"] == "up"
        guide = (REPO / "docs" / "operations.md").read_text()
        documented = {line.split("`")[1] for line in guide.splitlines() if line.startswith("| `orderflow_")}
        exported = {
            name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum").removesuffix("_created")
            for name in names
        }
        gauges_and_histograms = {name for name in documented if not name.endswith("_total")}
        assert gauges_and_histograms <= exported, gauges_and_histograms - exported
        assert "orderflow_monitored_symbols" in names and "up" in names
    finally:
        server.send_signal(signal.SIGTERM)
        detector.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        detector.wait(timeout=30)


def test_env_example_puts_no_comment_after_a_value():
    """docker-compose v1 keeps a comment written after a value as part of the value (a signing key of
    ``# 16+ characters…``): every comment of .env.example stands on its own line."""
    for number, line in enumerate((REPO / ".env.example").read_text().splitlines(), 1):
        if line and not line.startswith("#"):
            assert "#" not in line, f".env.example line {number}: {line!r}"
