"""The real bot adopts orderflow: its own virtualenv (its requirements.txt, the installable subset, plus orderflow's
slim client; ``pip check`` clean), its real ``TradingBot`` and ``TradingOrchestrator``
(tests/support/bot_adoption_scenario.py), orderflow's real processes (replay of the large-sellers scenario, detect)
and a Redis killed and restarted in the middle. Only broker calls are stubbed."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_client

from orderflow_client.bus.connection import Bus
from orderflow_client.decisions import last_bid_price
from orderflow_client.exit_policy import ExitPolicy
from orderflow_client.prices import format_price
from orderflow_client.timestamps import now_ns
from orderflow_client.wire import ExitRecommendation, MarketContext, decode
from services.detector.service import DetectorService
from services.tools.scenarios import write_scenario
from shared.config import OrderFlowConfig
from tests.support.cli import orderflow_environment, run_orderflow, start_orderflow
from tests.support.paths import REPO, shared_data
from tests.support.redis_server import RedisProcess, free_port, redis_server_binary
from tests.support.streams import caught_up

BOT = REPO.parent / "shared" / "clients" / "robinhood-algo-trading-bot"
BOT_VENV = REPO / ".venv-bot"
LEFT_OUT = ("torch", "transformers")  # multi-GB model runtimes for its sentiment feature; nothing here imports them


def _bot_or_fail() -> Path:
    if not (BOT / "requirements.txt").exists():
        reason = f"the bot's source is not at {BOT}"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return BOT


async def _publish_market_selloff(redis_url: str, prefix: str) -> None:
    """A market selloff as the detector's sink publishes it: SPY is sold, naming TIGHT, AMZN and NVDA (not held)."""
    now = now_ns()
    selloff = ExitRecommendation(
        id=f"SPY:exit:market_selloff:{now}",
        symbol="SPY",
        trigger="market_selloff",
        ts_event=now,
        ts_recv=now,
        timestamp_utc="",
        alert_ids=(f"SPY:market_selloff:{now}",),
        reasoning="SPY fell 45 bps in 300 s on 71 % aggressive selling",
        scope="market",
        symbols=("TIGHT", "AMZN", "NVDA"),
        action="exit",
        expected_fall_bps=30.0,
        cost_bps=1.0,
        context=MarketContext(label="market_wide", index="SPY", window_seconds=300, index_return_bps=-45.0),
    )
    async with await Bus.connect(redis_url, prefix=prefix) as bus:
        config = OrderFlowConfig(detector_lease_seconds=0, key_prefix=prefix)
        await DetectorService(config, bus, symbols=[]).sink.publish([selloff])


async def _bids(redis_url: str, prefix: str, symbols: tuple[str, ...]) -> dict[str, int]:
    """Each symbol's newest bid on its market stream (nano-dollars): what its stop was tightened under."""
    async with await Bus.connect(redis_url, prefix=prefix) as bus:
        return {symbol: await last_bid_price(bus, symbol) or 0 for symbol in symbols}


def installable_requirements() -> list[str]:
    """The bot's requirements.txt as pip can take it here: every pin, except robin_stocks from GitHub (no network
    beyond the package index: the PyPI release instead) and the model runtimes of ``LEFT_OUT``."""
    wanted = []
    for line in (BOT / "requirements.txt").read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if not requirement:
            continue
        if requirement.startswith("git+") and "robin_stocks" in requirement:
            wanted.append("robin_stocks")
        elif requirement.split("=")[0].split("[")[0].strip().lower() not in LEFT_OUT:
            wanted.append(requirement)
    return wanted


@pytest.fixture(scope="module")
def bot_python() -> Path:
    """The bot's virtualenv with orderflow's client installed beside its pins (cached in .venv-bot: made once)."""
    _bot_or_fail()
    requirements = installable_requirements()
    stamp = hashlib.sha256(
        ("\n".join(requirements) + (REPO / "orderflow_client" / "pyproject.toml").read_text()).encode()
    ).hexdigest()
    python = BOT_VENV / "bin" / "python"
    marker = BOT_VENV / "orderflow-stamp"
    if not python.exists() or not marker.exists() or marker.read_text() != stamp:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(BOT_VENV)], check=True)
        listing = BOT_VENV / "bot-requirements.txt"
        listing.write_text("\n".join(requirements) + "\n")
        for arguments in (
            ["-r", str(listing)],
            ["-e", str(REPO / "orderflow_client")],
        ):  # the bot's pins, then the client
            done = subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *arguments],
                capture_output=True,
                text=True,
                timeout=1800,
            )
            assert done.returncode == 0, done.stderr[-3000:]
        marker.write_text(stamp)
    return python


def test_the_client_installs_beside_the_bots_requirements(bot_python):
    check = subprocess.run([str(bot_python), "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    probe = (
        "import sys, importlib.util, importlib.metadata as m; import orderflow_client.robinhood; "
        "print([name for name in ('pydantic_settings', 'fakeredis', 'typer', 'polygon', 'pandas') "
        "if name in sys.modules]); "
        "print(m.version('polygon-api-client'), m.version('websockets'), m.version('pandas')); "
        "print([name for name in ('shared', 'services') if importlib.util.find_spec(name)])"
    )
    done = subprocess.run(
        [str(bot_python), "-c", probe], capture_output=True, text=True, cwd=BOT_VENV
    )  # no repo on the path
    assert done.returncode == 0, done.stderr
    imported, versions, top_level = done.stdout.splitlines()
    assert imported == "[]"  # the client pulls in none of the services' dependencies
    assert versions == "1.12.5 11.0.3 2.3.3"  # the bot's own pins, untouched
    assert top_level == "[]"  # one import package, orderflow_client: no collision-prone `shared` or `services`


@pytest.mark.redis
@pytest.mark.parametrize("bot", ["trading_bot", "orchestrator"])
def test_the_real_bot_acts_on_orderflow_through_its_own_order_path(bot, bot_python, tmp_path):
    """The bot's positions reach the registry; on a real day (Amazon, 2012-06-21) nothing happens to its position;
    an exit recommendation closes a position through the bot's own order path, once, after the first attempt failed
    (not started / broker rejection) and was retried; a tighten-stop moves the bot's stop to a valid tick; a Redis
    killed and restarted in the middle loses nothing; the bot's own log files keep their lines and receive
    orderflow's decisions."""
    binary = redis_server_binary()
    assert binary, "no redis-server binary"
    redis = RedisProcess(port=free_port(), binary=binary, append_only=True).start()
    prefix = f"bot-{bot}"
    env = orderflow_environment(
        REDIS_URL=redis.url,
        ORDER_FLOW_KEY_PREFIX=prefix,
        ORDER_FLOW_THRESHOLD_MODE="absolute",
        ORDER_FLOW_LOG_DIR=str(tmp_path / "orderflow-logs"),
        ORDER_FLOW_METRICS_PORT="0",
    )
    bot_env = {
        **env,
        "PYTHONPATH": str(BOT / "src"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
        "ANTHROPIC_API_KEY": "unused-in-this-test",
        "FMP_API_KEY": "unused-in-this-test",
    }
    scenario = subprocess.Popen(
        [str(bot_python), str(REPO / "tests" / "support" / "bot_adoption_scenario.py"), bot],
        cwd=tmp_path,
        env=bot_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    detectors: list = []
    amazon = shared_data("lobster", "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip")
    try:
        for line in scenario.stdout:  # the bot logs to stdout too
            if line.strip() == "READY":
                break
        else:
            pytest.fail(f"the bot scenario ended before READY: {scenario.stderr.read()[-3000:]}")
        redis.stop()  # SIGKILL: the append-only file keeps the registry
        redis.start()
        captures = []
        for symbol, session in (("OUT", "large-sellers"), ("TIGHT", "quiet")):
            captures.append(tmp_path / f"{symbol}.capture")
            write_scenario(session, captures[-1], symbol=symbol)
        for files in ([str(path) for path in captures], [str(amazon)]):
            replayed = run_orderflow("replay", *files, env=env, timeout=180)
            assert replayed.returncode == 0, replayed.stdout[-2000:] + replayed.stderr[-2000:]
        asyncio.run(_publish_market_selloff(redis.url, prefix))  # TIGHT's and AMZN's bids are on their streams now
        # one detector per shard of symbols: the synthetic sessions on the absolute thresholds they were written
        # against, the real day adaptive (the default, which calibrates on the day itself); two on one host need
        # names of their own (the default, detector-<hostname>, would be refused to the second: exit 6)
        adaptive = {**env, "ORDER_FLOW_THRESHOLD_MODE": "adaptive"}
        detectors = [
            start_orderflow(
                "detect", "--consumer", "detector-synthetic", "--symbol", "OUT", "--symbol", "TIGHT", env=env
            ),
            start_orderflow("detect", "--consumer", "detector-amazon", "--symbol", "AMZN", env=adaptive),
        ]
        out, err = scenario.communicate(timeout=150)
        client = redis_client.Redis.from_url(redis.url)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not caught_up(client, prefix, ["AMZN"]):
            time.sleep(0.5)
        exits = [decode(next(iter(fields.values()))) for _id, fields in client.xrange(f"{prefix}:exits")]
        amazon_exits = [item for item in exits if isinstance(item, ExitRecommendation) and item.symbol == "AMZN"]
        amazon_done = caught_up(client, prefix, ["AMZN"])
        bids = asyncio.run(_bids(redis.url, prefix, ("TIGHT", "AMZN")))
        client.close()
    finally:
        for process in (scenario, *detectors):
            if process is not None and process.poll() is None:
                process.kill()
        redis.stop()
    assert scenario.returncode == 0, err[-4000:]
    result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[len("RESULT ") :])
    assert result["done"], json.dumps(result) + err[-6000:]
    # OUT's exit (retried, not lost) and the market selloff's two held positions, each once
    assert result["handler_failures"] >= 1 and result["handled"] == 3 and result["parked"] == 0, result
    assert result["registry"] == ["AMZN", "TIGHT"]  # the closed position left the registry
    assert amazon_done and amazon_exits == []  # the real day: read to its end, no exit of its own for the held AMZN
    tightened, tightened_amzn = str(result["tightened"]), str(result["tightened_amzn"])
    policy = ExitPolicy()  # what both scenarios run with: 0.5 % under the bid, on a penny, never lower
    assert float(tightened) == float(format_price(policy.tightened_stop(bids["TIGHT"], 45 * 10**9, 100))), bids
    assert float(tightened_amzn) == float(format_price(policy.tightened_stop(bids["AMZN"], 215 * 10**9, 10))), bids
    assert 45 < float(tightened) < bids["TIGHT"] / 1e9 and 215 < float(tightened_amzn) < bids["AMZN"] / 1e9
    decided = result["market_decisions"]  # recorded per position; NVDA (not held) has none
    assert sorted(decided) == ["AMZN", "TIGHT"] and {action for action, _stop in decided.values()} == {"tighten_stop"}
    assert f"{decided['TIGHT'][1] / 1e9:.2f}" == f"{float(tightened):.2f}", decided
    if bot == "trading_bot":
        assert result["positions"] == ["AMZN", "TIGHT"]
        assert result["registry_after_own_close"] == ["AMZN"]  # the bot's own close reached the registry
        facade = result["facade"]
        assert facade["should_trigger_exit"] and not facade["should_trigger_exit_other"]
        assert (
            facade["alerts"]["OUT"] >= 3
            and facade["alert_class"] == "trading_bot.order_flow.data_models.OrderFlowAlert"
        )
        assert facade["price_level_type"] == "Decimal" and facade["volume_ratio"] is None and facade["aware"]
        bot_log = (tmp_path / "logs" / "trading_bot.log").read_text()
        assert "Trading bot started" in bot_log  # the bot's own lines still reach its file after orderflow attached
        assert "TRADE EXECUTED | Symbol=OUT | Action=sell" in bot_log and "Reason=order_flow_alert: exit" in bot_log
        assert "Position updated: TIGHT" in bot_log and f"Stop Loss=${tightened}" in bot_log
        assert f"Position updated: AMZN | Shares=10 | Entry=$220.00 | Stop Loss=${tightened_amzn}" in bot_log
        assert bot_log.count("Position updated: OUT") == 1  # its own opening only: the selloff did not name it
        assert bot_log.count("Trade rejected: Bot not running") == 0  # never tried while blocked: retried instead
        assert "order_flow.exit_signal_triggered" in bot_log  # orderflow's decisions reach the bot's log too
    else:
        assert [symbol for symbol, _qty, _side in result["submitted"]] == ["OUT", "OUT"]  # rejected, then placed
        assert result["trades"] == ["TIGHT", "AMZN"]  # the selloff sold nothing
        bot_log = (tmp_path / "logs" / "trading_bot.log").read_text()
        assert "Failed to execute Order Flow exit for OUT" in bot_log and "Exit order placed: order-2" in bot_log
        assert "order_flow.exit_signal_triggered" in bot_log
    decisions = "".join(path.read_text() for path in (tmp_path / "logs" / "order_flow").glob("*.jsonl"))
    assert (
        decisions.count('"exit_reason":"order_flow_alert"') == 1
    )  # one exit decision logged as the documented queries expect
