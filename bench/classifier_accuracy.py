"""Trade-side classifier accuracy on the real LOBSTER days.

LOBSTER executions carry the true aggressor side. Each day is converted to
"no side" form (the side is hidden from the classifier), classified, and
compared with the truth, overall and by visible (type 4) / hidden (type 5)
execution. Cross trades (type 6) have no side and are not scored.

    python -m bench.classifier_accuracy [--data ../shared/data/lobster]

Reference (issue 3): a plain Lee-Ready with the NBBO strictly before the
print scores 0.976 on AMZN and 0.959 on AAPL; quote rule 0.971 / 0.953;
tick test 0.868 / 0.868.
"""

from __future__ import annotations

import argparse
import io
import zipfile
from collections import Counter
from pathlib import Path

import msgspec

from orderflow_client.wire import BookUpdate, Trade
from services.ingest.classify import METHODS, SideClassifier
from services.ingest.lobster import read_lobster

DAYS = ("LOBSTER_SampleFile_AMZN_2012-06-21_5.zip", "LOBSTER_SampleFile_AAPL_2012-06-21_1.zip")


def execution_types(path: Path) -> dict[str, int]:
    """trade_id (message row number) → LOBSTER message type, for executions."""
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if "_message_" in n)
        with io.TextIOWrapper(archive.open(name), encoding="ascii") as stream:
            return {
                str(number): int(line.split(",", 2)[1])
                for number, line in enumerate(stream, start=1)
                if line.split(",", 2)[1] in ("4", "5")
            }


def score(path: Path, method: str, timing: str) -> dict[str, tuple[int, int]]:
    """{'all'|'visible'|'hidden': (correct, total)}; 'unclassified' counted as wrong."""
    kinds = execution_types(path)
    classifier = SideClassifier(method, timing)
    correct: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for event in read_lobster(path):
        if type(event) is BookUpdate:
            classifier.on_event(event)
        elif type(event) is Trade and event.side_source == "feed":
            truth = event.side
            guess = classifier.classify(msgspec.structs.replace(event, side="unknown", side_source="none")).side
            kind = "visible" if kinds.get(event.trade_id) == 4 else "hidden"
            for bucket in ("all", kind):
                total[bucket] += 1
                correct[bucket] += guess == truth
    return {bucket: (correct[bucket], total[bucket]) for bucket in total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "lobster"
    )
    arguments = parser.parse_args()
    print(f"{'day':<6} {'method':<10} {'timing':<10} {'all':>7} {'visible':>9} {'hidden':>8}   prints")
    for day in DAYS:
        path = arguments.data / day
        symbol = day.split("_")[2]
        for timing in ("strict", "sequenced"):
            for method in METHODS:
                result = score(path, method, timing)
                rate = {bucket: (c / t if t else float("nan")) for bucket, (c, t) in result.items()}
                print(
                    f"{symbol:<6} {method:<10} {timing:<10} {rate['all']:>7.3f} "
                    f"{rate.get('visible', float('nan')):>9.3f} "
                    f"{rate.get('hidden', float('nan')):>8.3f}   "
                    f"{result['all'][1]:,} ({result.get('visible', (0, 0))[1]:,} visible)"
                )


if __name__ == "__main__":
    main()
