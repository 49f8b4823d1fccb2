"""The real market days of ../shared/data the tests run on (skipped where the data is absent, failed in CI).

AIG (AlgoSeek, trades and quotes) on 2013-10-07 and 2013-10-08, walk-forward material; Amazon (LOBSTER, level 1)
on 2012-06-21, one day's profile.
"""

from __future__ import annotations

import functools
from pathlib import Path

from services.detector.profiles import SymbolProfile
from services.ingest.lobster import read_lobster
from services.offline.calibrate import profiles_from_events
from shared.config import OrderFlowConfig
from tests.support.paths import shared_data

AIG_DAYS = ("20131007", "20131008")


def aig(*days: str) -> list[Path]:
    """AIG's AlgoSeek files of ``days`` (e.g. ``aig("20131007")``): each day's trades then its quotes."""
    return [shared_data("algoseek", "aig", f"{day}_{kind}.zip") for day in days for kind in ("trade", "quote")]


def amzn_day() -> Path:
    """Amazon's LOBSTER level-1 sample day, 2012-06-21."""
    return shared_data("lobster", "LOBSTER_SampleFile_AMZN_2012-06-21_1.zip")


@functools.cache
def _amzn_profile_of(path: Path) -> SymbolProfile:
    return profiles_from_events(read_lobster(path), OrderFlowConfig(), source="files")["AMZN"]


def amzn_profile_from_files() -> tuple[Path, SymbolProfile]:
    """Amazon's day and the profile ``orderflow calibrate`` builds from its file (computed once per test run)."""
    path = amzn_day()
    return path, _amzn_profile_of(path)
