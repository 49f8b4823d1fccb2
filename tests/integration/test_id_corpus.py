"""One code path, guarded: ``orderflow analyze`` over every shared day (adaptive and absolute, and each AlgoSeek
symbol's two days walk-forward) and every demo scenario gives exactly the alert and exit ids of the committed
corpus (``scripts/id_corpus.json``). The live detector gives analyze's ids (tests/integration/test_detector_service
and test_profiles_live), so this holds live, replay, analyze and backtest to one set of ids. An intended change
to an id rewrites the corpus (``python scripts/id_corpus.py --write``) in a commit that explains it."""

from __future__ import annotations

import subprocess
import sys

from tests.support.paths import REPO, shared_data


def test_every_shared_day_and_scenario_gives_the_committed_alert_and_exit_ids():
    data = shared_data()
    checked = subprocess.run(
        [sys.executable, "scripts/id_corpus.py", "--check", "--data", str(data)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert checked.returncode == 0, checked.stdout[-4000:] + checked.stderr[-4000:]
    assert checked.stdout.rstrip().endswith(": identical"), checked.stdout[-2000:]
