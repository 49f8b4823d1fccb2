"""``orderflow backtest`` on real days, and its HTML report opened in a real browser (headless chromium)."""

from __future__ import annotations

import json
import subprocess

from tests.support.cli import orderflow_environment, run_orderflow
from tests.support.paths import REPO, program, shared_data


def test_the_backtest_report_opens_in_a_real_browser_with_its_charts_drawn(tmp_path):
    chromium = program("chromium")
    files = [
        shared_data("lobster", "LOBSTER_SampleFile_AMZN_2012-06-21_1.zip"),
        shared_data("algoseek", "aig", "20131007_trade.zip"),
        shared_data("algoseek", "aig", "20131007_quote.zip"),
        shared_data("algoseek", "aig", "20131008_trade.zip"),
        shared_data("algoseek", "aig", "20131008_quote.zip"),
    ]
    out = tmp_path / "report"
    environment = orderflow_environment(ORDER_FLOW_METRICS_PORT="0")
    done = run_orderflow("backtest", *map(str, files), "--out", str(out), env=environment, timeout=600)
    assert done.returncode == 0, done.stderr
    document = json.loads((out / "report.json").read_text())
    assert document["sessions"] == ["AIG 2013-10-07", "AIG 2013-10-08", "AMZN 2012-06-21"]
    assert document["versus_chance"]["base_samples"]["300"] > 2000 and "signals versus chance" in done.stdout
    page = (out / "report.html").read_text()
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page  # self-contained
    browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
    dom = subprocess.run(
        [*browser, "--dump-dom", (out / "report.html").as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    embedded = json.loads(page.split('<script type="application/json" id="report-data">')[1].split("</script>")[0])
    distributions = len([kind for kind in embedded["distributions"] if kind != "base"])
    assert len(embedded["sessions"]) == 3 and distributions >= 2
    # every chart drawn by the page's own script: each session, each signal kind's distribution, the lift and
    # the per-day chart
    assert f'data-charts-drawn="{3 + distributions + 2}"' in dom
    assert dom.count('class="mark-exit"') + dom.count('class="mark-alert"') >= 1 and dom.count('class="bar"') > 10
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / "backtest-report.png"
    subprocess.run(
        [*browser, "--window-size=1280,3000", f"--screenshot={shot}", (out / "report.html").as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 50_000  # a drawn page, not a blank one (kept as the test's artifact)
