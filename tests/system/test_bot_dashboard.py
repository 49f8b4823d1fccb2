"""The bot's real Rich dashboard with orderflow's panel: ``trading_bot.dashboard.DisplayRenderer`` in the bot's own
virtualenv (made by test_bot_adoption's ``bot_python``), over a ``DashboardSnapshot`` of its own dataclasses, the
panel read through a real ``OrderFlowClient`` from a real Redis holding published alerts (with their market context,
and SPY's market sell-off), an exit and a status."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from orderflow_client.pressure import ONE_SELLER, RED
from tests.support.paths import REPO
from tests.system.test_bot_adoption import BOT, bot_python  # noqa: F401  # the bot's virtualenv, a fixture

ANSI_COLOURS = {RED: "31", ONE_SELLER: "33"}  # Rich's standard colours as the terminal codes them


@pytest.mark.redis
def test_the_bots_real_dashboard_shows_order_flow_beside_its_positions(bot_python, redis_url, key_prefix, tmp_path):  # noqa: F811
    done = subprocess.run(
        [str(bot_python), str(REPO / "tests" / "support" / "bot_dashboard_scenario.py"), str(tmp_path)],
        env={
            "PATH": "/usr/bin:/bin",
            "REDIS_URL": redis_url,
            "ORDER_FLOW_KEY_PREFIX": key_prefix,
            "PYTHONPATH": str(BOT / "src"),
            "HOME": str(tmp_path),
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result["delivered"] == result["exit_id"]  # the bot's client received the exit from the stream
    lines = (tmp_path / "dashboard.txt").read_text().splitlines()
    print("\n".join(lines))

    def where(text: str) -> tuple[int, int]:
        found = [(row, line.index(text)) for row, line in enumerate(lines) if text in line]
        assert found, f"{text!r} is not on the dashboard"
        return found[0]

    positions, panel, metrics, account = (
        where("Open Positions"),
        where("Order Flow"),
        where("Performance Metrics"),
        where("Account Status"),
    )
    assert len(lines) == 44 and all(len(line) <= 140 for line in lines)
    # beside the positions: in the bot's main column (right of its account panel), below its positions table and
    # above its metrics, with the account panel still drawn on the same lines
    assert positions[0] < panel[0] < metrics[0]
    assert panel[1] > account[1] + len("Account Status") and lines[panel[0]].startswith("│")
    assert re.search(r"Order Flow · as of \d\d:\d\d:\d\d ET", lines[panel[0]])
    body = lines[panel[0] + 1 : metrics[0]]
    aapl = next(line for line in body if " AAPL " in line)
    msft = next(line for line in body if " MSFT " in line)
    assert "live" in aapl and "2 sellers" in aapl and "30,000 @ 187.43" in aapl
    assert "stock-specific" in body[body.index(aapl) + 1]  # the latest alert's context, under its count
    assert f"sellers {result['exit_time']}" in aapl and "handled" in aapl  # the exit in ET, the bot's mark
    assert "halted" in msft and "stale_data" in "".join(body) and "1 seller" in msft
    assert "market-wide" in body[body.index(msft) + 1]
    assert "8,000 @ 187.43" in msft
    # SPY's sell-off: a line on top of the panel, its fall and when (ET)
    assert f"MARKET SELL-OFF SPY fell 36.0 bps in 300 s, 70% sold · {result['selloff_time']}" in "\n".join(body)
    halted_cell = " ".join(body[body.index(msft) : body.index(msft) + 3])  # the monitoring cell may wrap
    assert re.search(r"halted\s.*\sstale_data \d\d:\d\d:\d\d\s.*ET", halted_cell)  # why, and since when (ET)
    # the colours: AAPL red (an exit recommended), MSFT yellow (one large seller), the panel's border red
    styled = (tmp_path / "dashboard.ansi").read_text()
    assert f"\x1b[1;{ANSI_COLOURS[RED]}mAAPL" in styled
    assert f"\x1b[1;{ANSI_COLOURS[ONE_SELLER]}mMSFT" in styled
    assert f"\x1b[{ANSI_COLOURS[RED]}m╭─" in styled.splitlines()[panel[0]]
    assert f"\x1b[{ANSI_COLOURS[ONE_SELLER]}m1 seller" in styled
    assert (tmp_path / "dashboard.svg").read_text().startswith("<svg")
