"""Backtest throughput over every shared day, whole process, next to analyze's and the parsers' ceiling.

Runs, one after another, as separate processes on the same input (the six
shared sessions: AMZN and AAPL LOBSTER, AIG and BAC AlgoSeek, 2,205,626 events):

* **parse only** — the vendor parsers and the normaliser, no rules: the
  ceiling any rules pass over these files can reach on this host now;
* ``orderflow analyze`` — the rules, one process per format group;
* ``orderflow backtest`` — the rules plus the price tapes and the report.

Each figure is events / wall-clock seconds of the whole process (start-up,
calendar, report included).

    python -m bench.backtest_bench [--data ../shared/data] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARSE_ONLY = """
import sys
from pathlib import Path
from services.ingest.normalise import Normaliser, normalised
from services.ingest.rejects import RejectCounter
from services.ingest.sources import detect_format, read_events
groups = {}
for name in sys.argv[1:]:
    groups.setdefault(detect_format(Path(name)), []).append(Path(name))
count = sum(
    1 for kind, paths in groups.items() for _ in normalised(read_events(kind, paths), Normaliser(), RejectCounter())
)
print(count)
"""


def files(data: Path) -> list[Path]:
    return [
        data / "lobster" / "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip",
        data / "lobster" / "LOBSTER_SampleFile_AAPL_2012-06-21_1.zip",
        *sorted((data / "algoseek" / "aig").glob("*.zip")),
        *sorted((data / "algoseek" / "bac").glob("*.zip")),
    ]


def timed(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--runs", type=int, default=2)
    arguments = parser.parse_args()
    inputs = [str(path) for path in files(arguments.data)]
    orderflow = [sys.executable, "-m", "services.cli"]
    with tempfile.TemporaryDirectory() as scratch:
        for run in range(1, arguments.runs + 1):
            parse_seconds, printed = timed([sys.executable, "-c", PARSE_ONLY, *inputs])
            events = int(printed.strip().splitlines()[-1])
            analyze_seconds = 0.0
            for kind, group in (("lobster", inputs[:2]), ("algoseek", inputs[2:6]), ("algoseek", inputs[6:])):
                seconds, _ = timed(
                    [*orderflow, "analyze", "--format", kind, *group, "--out", f"{scratch}/analyze-{kind}-{len(group)}"]
                )
                analyze_seconds += seconds
            backtest_seconds, _ = timed([*orderflow, "backtest", *inputs, "--out", f"{scratch}/backtest"])
            document = json.loads(Path(scratch, "backtest", "report.json").read_text())
            assert document["events"] == events, (document["events"], events)
            print(
                f"run {run}: {events:,} events | "
                f"parse only (ceiling) {events / parse_seconds:,.0f} events/s ({parse_seconds:.1f} s) | "
                f"analyze {events / analyze_seconds:,.0f} events/s ({analyze_seconds:.1f} s) | "
                f"backtest {events / backtest_seconds:,.0f} events/s ({backtest_seconds:.1f} s)"
            )


if __name__ == "__main__":
    main()
