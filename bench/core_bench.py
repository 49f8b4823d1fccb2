"""The rules core in one process, stage by stage, on the real shared days, each beside its ceiling.

Where does an event's time go between the file and the rules, and how far is each stage from the fastest thing
that could do its job? For each input, in one process, alternately ``--rounds`` times (a busy host slows all alike):

* **bare read** (ceiling of reading): the zipped CSV rows split into fields, nothing built — rows/s;
* **parse**: the vendor reader building domain events (``read_events``) — events/s;
* **normalise**: dedup and side classification (``normalised``) over the parsed events — events/s;
* **msgspec decode** (ceiling of decoding): the same events as wire bytes, decoded back — events/s;
* **rules**: ``Engine.process`` over the normalised events held in memory — events/s, and the median and p99
  time of one call (``perf_counter_ns`` around each, its own ~60 ns cost included).

    python -m bench.core_bench [--rounds 3] [--data ../shared/data] [--only amzn-book|bac-day|four-days]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from bench.stats import percentile
from orderflow_client.logs import configure_logging
from orderflow_client.wire import decode, encode
from services.detector.engine import Engine
from services.detector.rule_settings import RuleSettings
from services.ingest.normalise import Normaliser, normalised
from services.ingest.rejects import RejectCounter
from services.ingest.sources import read_events
from shared.conditions import ConditionTable
from shared.config import OrderFlowConfig

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")
configure_logging(service="bench", log_dir=None, level="ERROR", console=False)

INPUTS: dict[str, tuple[str, list[str]]] = {
    "amzn-book": ("lobster", ["lobster/LOBSTER_SampleFile_AMZN_2012-06-21_5.zip"]),
    "bac-day": ("algoseek", ["algoseek/bac/20131008_trade.zip", "algoseek/bac/20131008_quote.zip"]),
    "four-days": (
        "algoseek",
        [
            f"algoseek/{symbol}/{day}_{kind}.zip"
            for symbol in ("bac", "aig")
            for day in ("20131007", "20131008")
            for kind in ("trade", "quote")
        ],
    ),
}


def bare_read(paths: Iterable[Path]) -> int:
    """Every CSV row of the zips split into fields; returns the row count (the ceiling of any reader)."""
    rows = 0
    for path in paths:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if not name.endswith(".csv"):
                    continue
                with archive.open(name) as member:
                    for line in io.TextIOWrapper(member, encoding="ascii"):
                        line.split(",")
                        rows += 1
    return rows


def timed(action: Callable[[], T]) -> tuple[float, T]:
    """Seconds of CPU time ``action`` took, and what it returned."""
    started = time.process_time()
    result = action()
    return time.process_time() - started, result


def measure(format: str, paths: list[Path], config: OrderFlowConfig, conditions: ConditionTable) -> dict[str, float]:
    """One round over one input: each stage's rate, and the rules' per-call median and p99 (µs)."""
    read_seconds, rows = timed(lambda: bare_read(paths))
    parse_seconds, parsed = timed(lambda: list(read_events(format, paths)))
    events_parsed = [event for event in parsed if hasattr(event, "ts_event")]  # not the rejects
    rejects = RejectCounter()
    normaliser = Normaliser(conditions, method=config.side_method)
    normalise_seconds, events = timed(lambda: list(normalised(iter(parsed), normaliser, rejects)))
    payloads = [encode(event) for event in events]
    decode_seconds, _decoded = timed(lambda: [decode(payload) for payload in payloads])
    engine = Engine(RuleSettings.from_config(config), conditions, config=config)
    calls: list[int] = []
    clock = time.perf_counter_ns
    started = time.process_time()
    for event in events:
        before = clock()
        engine.process(event)
        calls.append(clock() - before)
    engine.flush()
    rules_seconds = time.process_time() - started
    return {
        "rows": float(rows),
        "events": float(len(events)),
        "bare_read": rows / read_seconds,
        "parse": len(events_parsed) / parse_seconds,
        "normalise": len(events) / normalise_seconds,
        "decode": len(payloads) / decode_seconds,
        "rules": len(events) / rules_seconds,
        "rules_median_us": statistics.median(calls) / 1000,
        "rules_p99_us": percentile(calls, 0.99) / 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--only", choices=sorted(INPUTS))
    parser.add_argument("--mode", choices=("adaptive", "absolute"), default="adaptive")
    arguments = parser.parse_args()
    config = OrderFlowConfig(threshold_mode=arguments.mode)
    conditions = ConditionTable.bundled()
    names = [arguments.only] if arguments.only else list(INPUTS)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for _round in range(arguments.rounds):
        for name in names:
            format, files = INPUTS[name]
            results[name].append(measure(format, [arguments.data / file for file in files], config, conditions))

    def span(name: str, key: str, unit: str = "/s", scale: float = 1.0) -> str:
        values = [round_[key] * scale for round_ in results[name]]
        return (
            f"{min(values):,.0f}–{max(values):,.0f}{unit}"
            if unit == "/s"
            else f"{min(values):.2f}–{max(values):.2f}{unit}"
        )

    for name in names:
        first = results[name][0]
        print(
            f"{name} ({INPUTS[name][0]}, {first['events']:,.0f} events, {first['rows']:,.0f} rows),"
            f" {arguments.mode} mode:"
        )
        print(f"  bare read (ceiling)      {span(name, 'bare_read')} rows")
        print(f"  parse                    {span(name, 'parse')} events")
        print(f"  normalise                {span(name, 'normalise')} events")
        print(f"  msgspec decode (ceiling) {span(name, 'decode')} events")
        print(
            f"  rules                    {span(name, 'rules')} events;"
            f" one call median {span(name, 'rules_median_us', ' µs')}, p99 {span(name, 'rules_p99_us', ' µs')}"
        )


if __name__ == "__main__":
    main()
