"""The AlgoSeek readers side by side on real days: the row reader and the column reader, CPU time, alternately.

Both are first checked to give the same events in the same order, then timed ``--rounds`` times each:

    python -m bench.algoseek_reader_bench [--rounds 3] [--data ../shared/data]

    row reader     1,922,101 events: 5.31–5.40 s (355,726–362,000 events/s)
    column reader  1,922,101 events: 1.89–1.94 s (988,873–1,018,741 events/s)
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from services.ingest.algoseek import read_algoseek_rows
from services.ingest.algoseek_columns import read_algoseek

REPO = Path(__file__).resolve().parents[1]
Reader = Callable[[list[Path]], Iterator[object]]


def seconds(reader: Reader, paths: list[Path]) -> tuple[float, int]:
    started = time.process_time()
    count = sum(1 for _ in reader(paths))
    return time.process_time() - started, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    arguments = parser.parse_args()
    paths = [
        arguments.data / "algoseek" / symbol / f"{day}_{kind}.zip"
        for symbol in ("bac", "aig")
        for day in ("20131007", "20131008")
        for kind in ("trade", "quote")
    ]
    for rows, columns in itertools.zip_longest(read_algoseek_rows(paths), read_algoseek(paths)):
        assert rows == columns, f"the readers differ: {rows!r} / {columns!r}"
    readers: dict[str, Reader] = {"row reader": read_algoseek_rows, "column reader": read_algoseek}
    timings: dict[str, list[float]] = {name: [] for name in readers}
    count = 0
    for _round in range(arguments.rounds):
        for name, reader in readers.items():
            elapsed, count = seconds(reader, paths)
            timings[name].append(elapsed)
    for name, values in timings.items():
        print(
            f"{name:<14} {count:,} events: {min(values):.2f}–{max(values):.2f} s "
            f"({count / max(values):,.0f}–{count / min(values):,.0f} events/s)"
        )


if __name__ == "__main__":
    main()
