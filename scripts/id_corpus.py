"""The alert and exit ids of every shared day and every demo scenario, compared with a committed corpus.

Live, replay, analyze and backtest run the same rules and give the same ids; this corpus guards that a change meant
to move code moves no id. It runs ``orderflow analyze`` (the command, in a fresh process per input, so it is
independent of the package layout) on:

* every shared market-data day (the Nasdaq LOBSTER days and the AlgoSeek BAC and AIG days), in adaptive mode and in
  absolute mode, and the two AlgoSeek days of each symbol in one run (the second day walk-forward on the first);
* every synthetic demo scenario (``orderflow scenario NAME``, seed 7).

and writes, per input, the sorted alert ids and exit ids::

    python scripts/id_corpus.py --check             # compare with scripts/id_corpus.json (exit 1 on any change)
    python scripts/id_corpus.py --write             # take a new corpus (explain the change in the commit)
    python scripts/id_corpus.py --check --data DIR  # the shared data elsewhere (default: ../shared/data)

An intended change to an id is explained in the commit that rewrites the corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "scripts" / "id_corpus.json"
ORDERFLOW = [sys.executable, "-m", "services.cli"]

LOBSTER_DAYS = {
    "AMZN-2012-06-21-level5": "lobster/LOBSTER_SampleFile_AMZN_2012-06-21_5.zip",
    "AMZN-2012-06-21-level1": "lobster/LOBSTER_SampleFile_AMZN_2012-06-21_1.zip",
    "AAPL-2012-06-21-level1": "lobster/LOBSTER_SampleFile_AAPL_2012-06-21_1.zip",
}
ALGOSEEK_DAYS = {
    f"{symbol.upper()}-{day}": [f"algoseek/{symbol}/{day}_trade.zip", f"algoseek/{symbol}/{day}_quote.zip"]
    for symbol in ("bac", "aig")
    for day in ("20131007", "20131008")
}
MODES = ("adaptive", "absolute")
SCENARIOS = ("quiet", "large-sellers", "red-burst", "two-sided", "stale-feed", "gap")


def orderflow(arguments: list[str], mode: str = "adaptive") -> None:
    """Run one ``orderflow`` command; its output is the files it writes. Raises with its stderr on failure."""
    environment = {**os.environ, "ORDER_FLOW_METRICS_PORT": "0", "ORDER_FLOW_THRESHOLD_MODE": mode}
    for name in ("REDIS_URL", "POLYGON_API_KEY", "ORDER_FLOW_CONFIG"):
        environment.pop(name, None)
    finished = subprocess.run([*ORDERFLOW, *arguments], cwd=REPO, env=environment, capture_output=True, text=True)
    if finished.returncode != 0:
        raise RuntimeError(f"orderflow {' '.join(arguments)} exited {finished.returncode}:\n{finished.stderr[-4000:]}")


def ids(folder: Path) -> dict[str, list[str]]:
    """The sorted alert and exit ids ``analyze`` wrote to ``folder``."""

    def read(name: str) -> list[str]:
        path = folder / name
        lines = path.read_text().splitlines() if path.exists() else []
        return sorted(json.loads(line)["id"] for line in lines if line.strip())

    return {"alerts": read("alerts.jsonl"), "exits": read("exits.jsonl")}


def inputs(data: Path, scratch: Path) -> dict[str, tuple[list[str], str]]:
    """Name → (``analyze`` arguments before ``--out``, threshold mode), for every input of the corpus."""
    runs: dict[str, tuple[list[str], str]] = {}
    for mode in MODES:
        for name, file in LOBSTER_DAYS.items():
            runs[f"{name}/{mode}"] = (["--format", "lobster", str(data / file)], mode)
        for name, files in ALGOSEEK_DAYS.items():
            runs[f"{name}/{mode}"] = (["--format", "algoseek", *(str(data / file) for file in files)], mode)
    for symbol in ("bac", "aig"):  # both days in one run: the second judged walk-forward on the first
        files = [
            str(data / file) for day in ("20131007", "20131008") for file in ALGOSEEK_DAYS[f"{symbol.upper()}-{day}"]
        ]
        runs[f"{symbol.upper()}-both-days/adaptive"] = (["--format", "algoseek", *files], "adaptive")
    for scenario in SCENARIOS:
        capture = scratch / f"{scenario}.capture"
        orderflow(["scenario", scenario, "--out", str(capture), "--seed", "7"])
        runs[f"scenario-{scenario}/adaptive"] = (["--format", "capture", str(capture)], "adaptive")
    return runs


def take(data: Path) -> dict[str, dict[str, list[str]]]:
    """Run every input (two at a time) and return name → ids."""
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        runs = inputs(data, scratch)

        def one(item: tuple[str, tuple[list[str], str]]) -> tuple[str, dict[str, list[str]]]:
            name, (arguments, mode) = item
            out = scratch / name.replace("/", "-")
            orderflow(["analyze", *arguments, "--out", str(out)], mode)
            return name, ids(out)

        with ThreadPoolExecutor(max_workers=2) as pool:
            return dict(sorted(pool.map(one, runs.items())))


def differences(expected: dict, actual: dict) -> list[str]:
    """What differs between two corpora, one line per input and kind."""
    lines = []
    for name in sorted(set(expected) | set(actual)):
        if name not in actual:
            lines.append(f"{name}: missing from this run")
            continue
        if name not in expected:
            lines.append(f"{name}: not in the corpus")
            continue
        for kind in ("alerts", "exits"):
            gone = set(expected[name][kind]) - set(actual[name][kind])
            new = set(actual[name][kind]) - set(expected[name][kind])
            if gone or new:
                lines.append(
                    f"{name} {kind}: {len(gone)} gone (e.g. {sorted(gone)[:3]}), "
                    f"{len(new)} new (e.g. {sorted(new)[:3]})"
                )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", action="store_true", help="compare with the committed corpus")
    action.add_argument("--write", action="store_true", help="write a new corpus")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    arguments = parser.parse_args()
    if not arguments.data.is_dir():
        print(f"no shared data at {arguments.data}", file=sys.stderr)
        return 2
    actual = take(arguments.data)
    alerts = sum(len(entry["alerts"]) for entry in actual.values())
    exits = sum(len(entry["exits"]) for entry in actual.values())
    if arguments.write:
        CORPUS.write_text(json.dumps(actual, indent=1) + "\n")
        print(f"wrote {CORPUS.relative_to(REPO)}: {len(actual)} inputs, {alerts:,} alert ids, {exits:,} exit ids")
        return 0
    changed = differences(json.loads(CORPUS.read_text()), actual)
    for line in changed:
        print(line)
    print(f"{len(actual)} inputs, {alerts:,} alert ids, {exits:,} exit ids: {'CHANGED' if changed else 'identical'}")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
