"""The Grafana dashboard (config/grafana): its JSON and provisioning are well formed, and every panel's PromQL
returns data from a real Prometheus scraping real services — a simulated Polygon feed, ``orderflow ingest`` and two
``orderflow detect`` replicas on a real Redis, through a scenario with alerts and an exit, and a dropped feed
connection.

No Grafana package is reachable here, so Grafana itself never loads the JSON in these tests: its structure is
checked against what file provisioning needs, and its queries are run through Prometheus' HTTP API as Grafana would.
"""

from __future__ import annotations

import json
import math
import re
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from prometheus_client.metrics import MetricWrapperBase

from orderflow_client import metrics as bus_metrics
from services.tools.scenarios import write_scenario
from shared import service_metrics
from tests.support.cli import OrderflowProcess, redis_environment, run_orderflow, start_orderflow
from tests.support.paths import REPO
from tests.support.redis_server import free_port
from tests.support.waiting import wait_for
from tests.system.test_deployment import _tool

GRAFANA = REPO / "config" / "grafana"
DASHBOARD = json.loads((GRAFANA / "dashboards" / "orderflow.json").read_text())
DATASOURCES = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
PROVIDERS = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "orderflow.yml").read_text())
JOBS = [job["job_name"] for job in yaml.safe_load((REPO / "config" / "prometheus.yml").read_text())["scrape_configs"]]
INGEST_JOB, DETECTOR_JOB = "orderflow-ingest", "orderflow-detector"
SYMBOLS = {"large-sellers": "LARGESELLERS", "red-burst": "REDBURST"}
"""Played at 40x: large-sellers gives large_seller alerts (warning, critical) and an exit within ~15 s; red-burst is a
second symbol of plain flow (at 40x its burst spreads over the rules' event-time windows), so each detector replica
monitors one."""
ALERTS = ("Alerts by type and severity (per 5 min)", "A")
LABELS = {
    ALERTS: ("alert_type", "severity"),
    ("Consumer lag by symbol", "A"): ("symbol",),
    ("Monitored symbols per detector", "A"): ("instance",),
    ("Feed: connected, gaps, reconnects", "B"): ("reason",),
}
"""The labels of the series the test looks into, by (panel title, refId)."""
KEY = "grafana-test-local-key"  # the simulator's and ingest's Polygon key: a local stand-in, never a real one


def _targets() -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every query of the dashboard."""
    return [
        (panel["title"], target["refId"], target["expr"])
        for panel in DASHBOARD["panels"]
        for target in panel["targets"]
    ]


def test_the_dashboard_json_is_what_file_provisioning_needs():
    assert DASHBOARD["uid"] == "orderflow" and DASHBOARD["title"]
    assert "id" not in DASHBOARD and "__inputs" not in DASHBOARD  # a provisioned file, not an export for import
    assert DASHBOARD["timezone"] == "America/New_York"  # people read New York time
    assert isinstance(DASHBOARD["schemaVersion"], int) and DASHBOARD["refresh"] and DASHBOARD["time"]["from"]
    (variable,) = [v for v in DASHBOARD["templating"]["list"] if v["name"] == "datasource"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    (provisioned,) = DATASOURCES["datasources"]
    assert variable["current"]["value"] == provisioned["uid"] and provisioned["type"] == "prometheus"
    assert provisioned["url"] == "http://prometheus:9090" and provisioned["access"] == "proxy"
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)
    occupied: dict[tuple[int, int], str] = {}
    for panel in DASHBOARD["panels"]:
        title = panel["title"]
        assert title and panel["type"] in ("stat", "timeseries") and panel.get("description"), title
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        grid = panel["gridPos"]
        assert set(grid) == {"x", "y", "w", "h"} and grid["w"] > 0 and grid["h"] > 0, title
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, title  # Grafana's grid is 24 columns wide
        for cell in (
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        ):
            assert cell not in occupied, f"{title} overlaps {occupied[cell]}"
            occupied[cell] = title
        assert panel["targets"], title
        references = [target["refId"] for target in panel["targets"]]
        assert len(references) == len(set(references)), title
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"] == panel["datasource"], title


def test_every_query_names_exported_metrics_and_the_scraped_jobs():
    exported = {
        metric._name + {"counter": "_total", "histogram": "_bucket"}.get(metric._type, "")
        for module in (service_metrics, bus_metrics)
        for metric in vars(module).values()
        if isinstance(metric, MetricWrapperBase)
    }
    assert {"orderflow_alerts_total", "orderflow_bus_up", "orderflow_alert_latency_seconds_bucket"} <= exported
    for title, _reference, expr in _targets():
        for name in re.findall(r"\borderflow_[a-z_]+", expr):
            assert name in exported, f"{title}: {name} is no metric orderflow exports"
        for job in re.findall(r'job="([^"]+)"', expr):
            assert job in JOBS, f"{title}: job {job} is not in config/prometheus.yml"
    assert {INGEST_JOB, DETECTOR_JOB} <= set(JOBS)
    exprs = " ".join(expr for _title, _reference, expr in _targets())
    for wanted in (
        "orderflow_events_processed_total",
        "orderflow_alerts_total",
        "orderflow_exit_recommendations_total",
        "orderflow_alert_latency_seconds_bucket",
        "orderflow_processing_latency_seconds_bucket",
        "orderflow_consumer_lag_entries",
        "orderflow_halted_symbols",
        "orderflow_ingest_queue_dropped_frames_total",
        "orderflow_feed_connected",
        "orderflow_feed_gaps_total",
        "orderflow_feed_reconnects_total",
        "orderflow_bus_up",
        "orderflow_outputs_unconfirmed",
        "orderflow_monitored_symbols",
    ):
        assert wanted in exprs, wanted


def test_the_dashboards_provider_loads_the_folder_compose_mounts():
    (provider,) = PROVIDERS["providers"]
    assert PROVIDERS["apiVersion"] == 1 and DATASOURCES["apiVersion"] == 1
    assert provider["type"] == "file" and provider["allowUiUpdates"] is False
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


@pytest.mark.redis
def test_every_panel_query_returns_data_from_a_real_prometheus(redis_url, key_prefix, tmp_path):
    prometheus_binary = _tool("prometheus")
    captures = []
    for scenario, symbol in SYMBOLS.items():
        captures.append(tmp_path / f"{scenario}.capture")
        write_scenario(scenario, captures[-1], symbol=symbol)
    feed_port, prometheus_port = free_port(), free_port()
    env = redis_environment(
        redis_url,
        key_prefix,
        tmp_path,
        POLYGON_API_KEY=KEY,
        ORDER_FLOW_POLYGON_FEED=f"127.0.0.1:{feed_port}",
        ORDER_FLOW_POLYGON_SECURE="false",
        ORDER_FLOW_POLYGON_REST_URL=f"http://127.0.0.1:{feed_port}",
    )
    ports = {"ingest": free_port(), "detector-a": free_port(), "detector-b": free_port()}
    processes: list[OrderflowProcess] = []

    def start(*arguments: str, metrics_port: int | None = None) -> OrderflowProcess:
        port = {"ORDER_FLOW_METRICS_PORT": str(metrics_port if metrics_port else free_port())}
        processes.append(start_orderflow(*arguments, env={**env, **port}))
        return processes[-1]

    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": INGEST_JOB, "static_configs": [{"targets": [f"127.0.0.1:{ports['ingest']}"]}]},
            {
                "job_name": DETECTOR_JOB,
                "static_configs": [
                    {"targets": [f"127.0.0.1:{ports['detector-a']}", f"127.0.0.1:{ports['detector-b']}"]}
                ],
            },
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    client = redis.Redis.from_url(redis_url)
    prometheus = start_prometheus(prometheus_binary, tmp_path, prometheus_port)
    try:
        start("simulate-polygon", "--port", str(feed_port), "--speed", "40", *map(str, captures))
        wait_for(lambda: _listening(feed_port), 30, "the Polygon simulator")
        for symbol in SYMBOLS.values():
            opened = run_orderflow(
                "positions", "open", symbol, "--quantity", "500", "--entry", "50.10", "--stop", "48.00", env=env
            )
            assert opened.returncode == 0, opened.stdout + opened.stderr
        for name in ("detector-a", "detector-b"):
            start("detect", "--consumer", name, metrics_port=ports[name])
        start("ingest", "--name", "ingest-grafana", metrics_port=ports["ingest"])
        try:
            wait_for(lambda: _count(client, f"{key_prefix}:exits") >= 1, 60, "the exit recommendation")
        except AssertionError as error:
            alerts = _count(client, f"{key_prefix}:alerts")
            raise AssertionError(f"{error} ({alerts} alerts)\n" + "\n".join(p.report() for p in processes)) from None
        # then the feed drops once: ingest reconnects, reports the gap and backfills it (gaps, reconnects)
        urllib.request.urlopen(f"http://127.0.0.1:{feed_port}/admin/drop", timeout=5).read()
        answers = _answers_once_complete(prometheus_port, deadline=time.monotonic() + 30)
        for (title, reference, _expr), result in answers.items():  # shown with pytest -s
            values = ", ".join(f"{_legend(sample['metric'])}={float(sample['value'][1]):.4g}" for sample in result)
            print(f"{title} {reference}: {values}")
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{prometheus_port}/api/v1/targets", timeout=5))
        assert sorted(t["health"] for t in targets["data"]["activeTargets"]) == ["up", "up", "up"]
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.expect_exit(0, timeout=30)
    finally:
        for process in processes:
            process.stop_if_running()
        prometheus.send_signal(signal.SIGTERM)
        prometheus.wait(timeout=30)
        client.close()


def _answers_once_complete(port: int, deadline: float) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """Every target's answer, asked again (scrapes come every second) until each has data and what the run did shows
    in it, or ``deadline`` (``time.monotonic()``) passes: then an AssertionError saying what is still missing."""
    while True:
        answers = {target: query(port, target[2]) for target in _targets()}
        empty = [
            f"{title} {reference}: {expr}"
            for (title, reference, expr), result in answers.items()
            if not _has_numbers(result)
        ]
        missing = empty or _what_the_run_did_is_missing(answers)
        if not missing:
            return answers
        if time.monotonic() > deadline:
            raise AssertionError(
                "queries without data or without what the run did:\n" + "\n".join(missing) + f"\n{answers}"
            )
        time.sleep(0.5)


def _what_the_run_did_is_missing(answers: dict[tuple[str, str, str], list[dict[str, Any]]]) -> list[str]:
    """What the run did (two detector replicas, the alerts, the exit, the dropped connection) that the answers don't
    show yet."""
    of = {
        (title, reference): _by_label(result, *LABELS.get((title, reference), ()))
        for (title, reference, _expr), result in answers.items()
    }
    expected = {
        "one series per detector replica": len(of[("Monitored symbols per detector", "A")]) == 2,
        "both symbols monitored in all": of[("Monitored symbols per detector", "B")] == {"": len(SYMBOLS)},
        # a type and severity first seen in the 5 minutes counts in full, its first alert too
        "3 large_seller warnings": of[ALERTS].get("large_seller warning", 0) >= 3,
        "1 large_seller critical": of[ALERTS].get("large_seller critical", 0) >= 1,
        "the exit": of[("Exit recommendations (5 min)", "A")][""] >= 1,
        # both positions, and SPY read beside them for the market context
        "consumer lag of both symbols": set(of[("Consumer lag by symbol", "A")]) == {*SYMBOLS.values(), "SPY"},
        "the dropped connection's gap": of[("Feed: connected, gaps, reconnects", "B")].get("socket_disconnect", 0) >= 1,
        "its reconnect": of[("Feed: connected, gaps, reconnects", "C")][""] >= 1,
    }
    return [what for what, seen in expected.items() if not seen]


def start_prometheus(binary: str, folder: Path, port: int) -> subprocess.Popen[bytes]:
    """A real Prometheus on ``port`` with ``folder/prometheus.yml``, its data in ``folder/data``; answering."""
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: _listening(port), 30, "Prometheus")
    return server


def query(port: int, expr: str) -> list[dict[str, Any]]:
    """The instant vector Prometheus' HTTP API gives for ``expr`` now (as Grafana's instant and range queries do)."""
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    answer = json.load(urllib.request.urlopen(url, timeout=5))
    assert answer["status"] == "success", answer
    assert answer["data"]["resultType"] == "vector", answer
    return answer["data"]["result"]


def _has_numbers(result: list[dict[str, Any]]) -> bool:
    """A non-empty result whose every value is a number (NaN, e.g. a quantile of nothing, is no data)."""
    return bool(result) and all(not math.isnan(float(sample["value"][1])) for sample in result)


def _by_label(result: list[dict[str, Any]], *labels: str) -> dict[str, float]:
    """``{"value1 value2": number}`` of a query's series, keyed by their ``labels``' values (``""``: no label)."""
    return {" ".join(sample["metric"][name] for name in labels): float(sample["value"][1]) for sample in result}


def _legend(labels: dict[str, str]) -> str:
    return ",".join(f"{name}={value}" for name, value in sorted(labels.items())) or "()"


def _count(client: redis.Redis, stream: str) -> int:
    return int(client.xlen(stream)) if client.exists(stream) else 0


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
