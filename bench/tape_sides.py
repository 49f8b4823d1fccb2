"""Does the tape rule find the same large sellers without the true sides?

LOBSTER executions carry the true aggressor side; the consolidated tape a bot
sees through Polygon carries none, and only the NBBO. Each shared LOBSTER
day is run through the rules twice, with the same thresholds (the 0.99 and 0.999
quantiles of the day's aggressive sell order sizes, from the true-side run):

* **truth** — the LOBSTER events as they are (true sides, the visible book);
* **consolidated** — sides stripped (re-inferred by Lee-Ready from the NBBO,
  as for Polygon trades) and the book cut to its inside level (an NBBO).

A large seller of one run matches one of the other when both start within
``--tolerance-ms`` (default 50 ms). Recall = matched / truth, precision =
matched / consolidated. Tape alerts only (book alerts need depth the
consolidated view lacks by design).

    python -m bench.tape_sides [--data ../shared/data/lobster]
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import msgspec

from orderflow_client.wire import BookUpdate, OrderFlowAlert, Trade
from services.detector.engine import Engine
from services.detector.profiles import SymbolProfile
from services.detector.quantiles import weighted_quantile
from services.detector.rule_settings import RuleSettings
from services.ingest.lobster import read_lobster
from services.ingest.normalise import Normaliser, normalised
from services.ingest.rejects import RejectCounter
from services.offline.calibrate import profiles_from_events
from services.tools.simulator_timeline import inside_quote
from shared.config import OrderFlowConfig

DAYS = ("LOBSTER_SampleFile_AMZN_2012-06-21_5.zip", "LOBSTER_SampleFile_AAPL_2012-06-21_1.zip")


def consolidated(path: Path) -> Iterator:
    """The day as the consolidated feed shows it: NBBO quotes, prints without a side."""
    for event in read_lobster(path):
        kind = type(event)
        if kind is BookUpdate:
            yield inside_quote(event)
        elif kind is Trade:
            yield msgspec.structs.replace(event, side="unknown", side_source="none")
        else:
            yield event


def tape_sellers(events, config: OrderFlowConfig) -> list[OrderFlowAlert]:
    engine = Engine(RuleSettings.from_config(config), config=config)
    found = []
    for event in normalised(events, Normaliser(), RejectCounter()):
        found.extend(
            o
            for o in engine.process(event)
            if isinstance(o, OrderFlowAlert) and o.source == "tape" and o.alert_type == "large_seller"
        )
    found.extend(
        o
        for o in engine.flush()
        if isinstance(o, OrderFlowAlert) and o.source == "tape" and o.alert_type == "large_seller"
    )
    return found


def _merged_orders(profile: SymbolProfile) -> dict[int, int]:
    merged: dict[int, int] = {}
    for session in profile.sessions:
        for size, count in session.order_sizes.items():
            merged[size] = merged.get(size, 0) + count
    return merged


def first_ns(alert: OrderFlowAlert) -> int:
    return int(alert.id.split(":")[3])


def match(truth: list[OrderFlowAlert], seen: list[OrderFlowAlert], tolerance_ns: int) -> int:
    starts = sorted(first_ns(alert) for alert in seen)
    used: set[int] = set()
    matched = 0
    for alert in truth:
        start = first_ns(alert)
        candidates = [i for i, other in enumerate(starts) if abs(other - start) <= tolerance_ns and i not in used]
        if candidates:
            used.add(candidates[0])
            matched += 1
    return matched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "lobster"
    )
    parser.add_argument("--tolerance-ms", type=float, default=50.0)
    arguments = parser.parse_args()
    print(
        f"{'day':<6} {'quantile':>8} {'threshold':>10} {'truth':>6} "
        f"{'consolidated':>13} {'matched':>8} {'recall':>7} {'precision':>10}"
    )
    for day, quantile in [(day, quantile) for day in DAYS for quantile in (0.99, 0.999)]:
        path = arguments.data / day
        # the day's own profile (true sides) gives the threshold, applied to both views alike
        profile = next(iter(profiles_from_events(read_lobster(path), OrderFlowConfig(), source="files").values()))
        threshold = weighted_quantile(_merged_orders(profile), quantile)
        fixed = OrderFlowConfig(threshold_mode="absolute", large_order_size=max(threshold, 1001))
        truth = tape_sellers(read_lobster(path), fixed)
        seen = tape_sellers(consolidated(path), fixed)
        matched = match(truth, seen, int(arguments.tolerance_ms * 1e6))
        recall = matched / len(truth) if truth else float("nan")
        precision = match(seen, truth, int(arguments.tolerance_ms * 1e6)) / len(seen) if seen else float("nan")
        print(
            f"{day.split('_')[2]:<6} {quantile:>8} {fixed.large_order_size:>10,} {len(truth):>6} "
            f"{len(seen):>13} {matched:>8} {recall:>7.3f} {precision:>10.3f}"
        )


if __name__ == "__main__":
    main()
