"""On every shared AlgoSeek day, the column reader gives exactly the row reader's events in the same order: BAC
and AIG, both days, all eight files at once (1.9 million events; a pure test, here for its ~10 s)."""

from __future__ import annotations

import itertools

from services.ingest.algoseek import read_algoseek_rows
from services.ingest.algoseek_columns import read_algoseek
from tests.support.paths import shared_data


def test_the_shared_days_read_as_columns_equal_the_rows():
    paths = [
        shared_data("algoseek", symbol, f"{day}_{kind}.zip")
        for symbol in ("bac", "aig")
        for day in ("20131007", "20131008")
        for kind in ("trade", "quote")
    ]
    count = 0
    for row_item, column_item in itertools.zip_longest(read_algoseek_rows(paths), read_algoseek(paths)):
        assert column_item == row_item, f"item {count:,}: {column_item!r} != {row_item!r}"
        count += 1
    assert count == 1_922_101
