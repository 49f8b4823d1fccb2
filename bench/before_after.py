"""Before and after a change, in the same run: start-up and ``orderflow analyze`` whole-process throughput.

Give the "before" tree as a checkout (``git worktree add /tmp/before <commit>``); both trees run with this
interpreter, alternately, ``--rounds`` times, so a busy host slows both alike:

* **start-up** — ``orderflow analyze`` of a 200-frame capture: import, configuration, calendar, condition
  table; what every command pays before its first event;
* **analyze** — the shared AMZN level-5 day (164,910 events), whole process (start-up included), events/s.

    python -m bench.before_after --before /tmp/before [--rounds 3] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(tree: Path, arguments: list[str]) -> float:
    environment = {**os.environ, "PYTHONPATH": str(tree), "ORDER_FLOW_METRICS_PORT": "0"}
    environment.pop("REDIS_URL", None)
    environment.pop("POLYGON_API_KEY", None)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "services.cli", *arguments], cwd=tree, env=environment, check=True, capture_output=True
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    arguments = parser.parse_args()
    day = arguments.data / "lobster" / "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip"
    with tempfile.TemporaryDirectory() as scratch:
        full = Path(scratch) / "quiet.capture"
        run(REPO, ["scenario", "quiet", "--out", str(full)])
        small = Path(scratch) / "small.capture"
        small.write_text("".join(full.read_text().splitlines(keepends=True)[:200]))
        results: dict[str, dict[str, list[float]]] = {
            "before": {"startup": [], "analyze": []},
            "after": {"startup": [], "analyze": []},
        }
        events = 0
        for _round in range(arguments.rounds):
            for name, tree in (("before", arguments.before), ("after", REPO)):
                results[name]["startup"].append(
                    run(tree, ["analyze", "--format", "capture", str(small), "--out", f"{scratch}/s-{name}"])
                )
                seconds = run(tree, ["analyze", "--format", "lobster", str(day), "--out", f"{scratch}/a-{name}"])
                events = json.loads(Path(scratch, f"a-{name}", "summary.json").read_text())["events"]
                results[name]["analyze"].append(events / seconds)
    for name in ("before", "after"):
        startup, rates = results[name]["startup"], results[name]["analyze"]
        print(
            f"{name:>6}: start-up {min(startup):.2f}–{max(startup):.2f} s (median {statistics.median(startup):.2f}) | "
            f"analyze {events:,} events: {min(rates):,.0f}–{max(rates):,.0f} events/s whole process "
            f"(median {statistics.median(rates):,.0f})"
        )


if __name__ == "__main__":
    main()
