"""What importing orderflow_client costs a bot's process: resident memory, and what it registers and loads.

Each run is a fresh interpreter that reads its own ``VmRSS`` (``/proc/self/status``) before and after importing
``orderflow_client`` (with ``OrderFlowClient``, ``RiskManagerClient`` and the robinhood adapters), then lists the
Prometheus metrics it registered and the heavy packages it loaded. The spec allows the bot 50 MB in all.

    python -m bench.client_footprint [--runs 5]

    run 1: +30.4 MB
    …
    importing orderflow_client adds 30.1–30.6 MB of RSS (median 30.4 MB) against its 50 MB budget
    after the standard library a networked bot already has (asyncio, decimal, …): …
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
BUDGET_MB = 50.0
"""The memory budget for orderflow inside the bot's process (MB): 50 MB in all."""

CLIENT_METRICS = frozenset(
    {
        "orderflow_bus_up",
        "orderflow_bus_retries",
        "orderflow_bus_failures",
        "orderflow_reclaimed_entries",
        "orderflow_dead_letters",
    }
)
"""The metrics a bot's process may register (the bus's; counters without ``_total``, as the registry names them)."""

FORBIDDEN_MODULES = ("shared", "services", "pydantic_settings", "fakeredis", "typer", "polygon", "pandas")
"""Packages of the services (or their dependencies) that importing the client must not load."""

NETWORKED_BOT_STANDARD_LIBRARY = "import asyncio, decimal, http.client, json, logging, ssl"
"""What any bot that talks to a broker over HTTPS has loaded before it imports the client (the standard library
alone); the second measurement starts from there."""

_PROBE = r"""
import sys
PRELOAD


def rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


before = rss_kib()
import orderflow_client
from orderflow_client import OrderFlowClient
from orderflow_client.risk import RiskManagerClient
import orderflow_client.robinhood
after = rss_kib()

import json
from prometheus_client import REGISTRY

families = sorted({family.name for family in REGISTRY.collect()})
print(json.dumps({
    "added_kib": after - before,
    "metrics": families,
    "modules": sorted({name.split(".")[0] for name in sys.modules}),
}))
"""

_PROMETHEUS_DEFAULTS = ("process_", "python_")
"""prometheus_client's own collectors (process, platform, gc), registered by importing prometheus_client at all."""


class Footprint(NamedTuple):
    """One fresh interpreter's import of the client: ``added_mb`` (RSS it added, MB), ``metrics`` (the orderflow
    metrics it registered), ``foreign_metrics`` (any other, not prometheus_client's own process/gc/platform ones),
    ``loaded`` (which of :data:`FORBIDDEN_MODULES` it loaded)."""

    added_mb: float
    metrics: list[str]
    foreign_metrics: list[str]
    loaded: list[str]


def measure(preload: str = "") -> Footprint:
    """Import the client in a fresh interpreter (after running ``preload`` there) and see what it cost."""
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE.replace("PRELOAD", preload)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = json.loads(completed.stdout.strip().splitlines()[-1])
    metrics = [name for name in found["metrics"] if not name.startswith(_PROMETHEUS_DEFAULTS)]
    return Footprint(
        added_mb=found["added_kib"] / 1024,
        metrics=sorted(name for name in metrics if name in CLIENT_METRICS),
        foreign_metrics=sorted(name for name in metrics if name not in CLIENT_METRICS),
        loaded=sorted(set(FORBIDDEN_MODULES) & set(found["modules"])),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters to measure (default 5)")
    options = parser.parse_args()
    runs = [measure() for _ in range(options.runs)]
    sizes = [run.added_mb for run in runs]
    for number, size in enumerate(sizes, 1):
        print(f"run {number}: +{size:.1f} MB")
    print(f"metrics registered: {', '.join(runs[-1].metrics)}")
    print(f"other metrics: {', '.join(runs[-1].foreign_metrics) or 'none'}")
    print(f"service packages loaded: {', '.join(runs[-1].loaded) or 'none'}")
    print(
        f"importing orderflow_client adds {min(sizes):.1f}–{max(sizes):.1f} MB of RSS "
        f"(median {statistics.median(sizes):.1f} MB) against its {BUDGET_MB:.0f} MB budget"
    )
    networked = [measure(NETWORKED_BOT_STANDARD_LIBRARY).added_mb for _ in range(options.runs)]
    print(
        f"after the standard library a networked bot already has ({NETWORKED_BOT_STANDARD_LIBRARY[7:]}): "
        f"{min(networked):.1f}–{max(networked):.1f} MB (median {statistics.median(networked):.1f} MB)"
    )


if __name__ == "__main__":
    main()
