"""Where the tests find the repository, the shared market data beside it, and the real programs they drive.

``REPO`` is this checkout (e.g. ``/work/main``); ``SHARED_DATA`` is ``../shared/data`` beside it (LOBSTER, AlgoSeek
and Polygon fixtures), present in CI and on the team's machines, absent on a user's clone.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


def program(name: str, package: str | None = None) -> str:
    """The path of a real program a test drives. ``scripts/test.sh`` installs the missing ones where it can
    (root with apt-get); in CI a missing one fails the test, elsewhere it is skipped with the reason."""
    found = shutil.which(name)
    if found is None:
        hint = f"{name} is not installed (apt-get install {package or name}; scripts/test.sh does it as root)"
        if os.environ.get("CI"):
            pytest.fail(hint, pytrace=False)
        pytest.skip(hint)
    return found


def shared_data(*parts: str) -> Path:
    """A file of ../shared/data, e.g. ``shared_data("lobster", "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip")``.
    Absent only on a user's machine: skip there, never in CI."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing in CI", pytrace=False)
        pytest.skip(f"{path} not present (../shared/data is only beside the repo)")
    return path
