"""The web dashboard under 50 monitored symbols: server CPU and event-to-browser latency, beside a ceiling measured
in the same run.

One run, on the Redis at 127.0.0.1:6379 (else one started, as the tests find it) under a key prefix of its own
(deleted afterwards):

1. ``--symbols`` open positions (50), each playing one of the six scenarios of :mod:`services.tools.scenarios` in
   turn (quiet, large sellers, red burst, two-sided, stale feed, gap), all merged into one capture and published by
   ``orderflow replay --speed S`` (S× each scenario's recorded rate, 10 by default: 50 symbols at 10× their rates),
   ``orderflow detect`` on them and ``orderflow dashboard`` as its own process;
2. the page open in headless chromium (``tests.support.browser``: nothing leaves the machine), plus a frame-gap
   probe in it (``requestAnimationFrame``: the longest frames show whether the page stays responsive); before the
   replay, ``--idle-alerts`` alerts (30) of a symbol of their own published by this process 137 ms apart, on a quiet
   host: the delay of the dashboard's own path, without the load;
3. the ceiling, in the same browser at the same time: a bare page following a bare SSE endpoint of this process
   that relays a ping stream of the same Redis with a blocking XREAD (XADD → XREAD BLOCK → SSE → the page's
   ``Date.now()``), pinged every 100 ms.

Printed: the idle alerts' delay, the dashboard process's CPU (user + system seconds over the replay's wall
seconds), the events published, the delay of each alert and exit recommendation from its XADD (its stream id's
time) to its line drawn on the page, of each chart change from ingest's publish of its latest event to the page
(this includes the 250 ms batching of chart changes), and the ceiling's, p50/p99/max; the page's frame gaps
p99/max.

    python -m bench.dashboard_bench [--symbols 50] [--speed 10] [--idle-alerts 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import os
import signal
import tempfile
import time
import uuid
from pathlib import Path

import redis
import redis.asyncio as redis_async
from aiohttp import web

from orderflow_client.bus.connection import Bus
from orderflow_client.positions import PositionRegistry
from services.ingest.capture import format_line
from services.tools.scenarios import SCENARIOS, frames
from tests.support.browser import assert_nothing_left_the_machine, open_browser
from tests.support.cli import redis_environment, start_orderflow
from tests.support.events import large_seller
from tests.support.redis_server import find_or_start_redis, free_port

BARE_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>bare</title></head><body><p id="n">0</p>
<script>
window.bare = [];
const source = new EventSource('events');
source.onmessage = ev => { window.bare.push(Date.now() - Number(ev.data));
  document.getElementById('n').textContent = String(window.bare.length); };
</script></body></html>"""
FRAME_PROBE = """(() => { window.frameGaps = []; let last = performance.now();
  const step = now => { window.frameGaps.push(now - last); last = now; requestAnimationFrame(step); };
  requestAnimationFrame(step); return true; })()"""


def symbols_of(count: int) -> dict[str, str]:
    names = list(SCENARIOS)
    return {
        f"{names[index % len(names)][:4].upper().replace('-', '')}{index}": names[index % len(names)]
        for index in range(count)
    }


def write_capture(path: Path, chosen: dict[str, str]) -> None:
    streams = [frames(name, 7, symbol) for symbol, name in chosen.items()]
    with path.open("wb") as out:
        for ts_recv, frame in heapq.merge(*streams, key=lambda item: item[0]):
            out.write(format_line(ts_recv, frame))


async def publish_idle_alerts(bus: Bus, count: int) -> None:
    """``count`` alerts of the symbol IDLE, 137 ms apart (not a divisor of any poll period)."""
    for number in range(count):
        alert = large_seller("IDLE", number, time.time_ns())
        await bus.publish([(bus.keys.alerts, alert)])
        await asyncio.sleep(0.137)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quantiles(values: list[float]) -> str:
    if not values:
        return "none"
    ordered = sorted(values)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, int(fraction * len(ordered) + 0.999999) - 1))]

    return f"p50 {at(0.5):7.1f}  p99 {at(0.99):7.1f}  max {ordered[-1]:7.1f} ms  ({len(values):,} samples)"


async def bare_sse(redis_url: str, stream: str) -> tuple[web.AppRunner, int, asyncio.Task[None]]:
    """The ceiling: a page and an SSE endpoint relaying ``stream`` with XREAD BLOCK; a task pinging it every 100 ms."""
    client = redis_async.Redis.from_url(redis_url)

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=BARE_PAGE, content_type="text/html")

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        last = "$"
        with contextlib.suppress(ConnectionResetError):  # the page closed
            while True:
                reply = await client.xread({stream: last}, block=15000, count=100)
                for _stream, entries in reply or []:
                    for entry_id, _fields in entries:
                        last = entry_id
                        await response.write(f"data: {entry_id.decode().split('-')[0]}\n\n".encode())
        return response

    async def ping() -> None:
        while True:
            await client.xadd(stream, {"t": "1"}, maxlen=1000)
            await asyncio.sleep(0.1)

    application = web.Application()
    application.router.add_get("/", page)
    application.router.add_get("/events", events)
    runner = web.AppRunner(application, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port, asyncio.ensure_future(ping())


async def main(symbol_count: int, speed: float, idle_alerts: int) -> None:
    redis_url, owned = find_or_start_redis()
    prefix = f"bench-dashboard-{uuid.uuid4().hex[:8]}"
    chosen = symbols_of(symbol_count)
    folder = Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
    capture = folder / "market.capture"
    write_capture(capture, chosen)
    bus = await Bus.connect(redis_url, prefix=prefix)
    registry = PositionRegistry(bus)
    for symbol in chosen:
        await registry.open(symbol, quantity=100, entry_price="50.00")
    env = redis_environment(redis_url, prefix, folder, ORDER_FLOW_METRICS_PORT="0")
    page_port = free_port()
    processes = {
        "dashboard": start_orderflow("dashboard", "--port", str(page_port), env=env),
        "detect": start_orderflow("detect", env=env),
    }
    runner, bare_port, pinger = await bare_sse(redis_url, f"{prefix}:ping")
    try:
        async with open_browser(width=1400, height=1000) as browser:
            for _ in range(200):
                with contextlib.suppress(OSError):
                    _reader, writer = await asyncio.open_connection("127.0.0.1", page_port)
                    writer.close()
                    break
                await asyncio.sleep(0.1)
            bare = await browser.open(f"http://127.0.0.1:{bare_port}/")
            page = await browser.open(f"http://127.0.0.1:{page_port}/")
            await page.send("Page.bringToFront")  # the dashboard's tab in front: its frames are drawn
            await page.wait_for(f"document.querySelectorAll('#cards .card').length === {len(chosen)}", 30, "the cards")
            await publish_idle_alerts(bus, idle_alerts)
            await page.wait_for(f"window.orderflowDashboard.received.length === {idle_alerts}", 10, "the idle alerts")
            idle = [item["latency_ms"] for item in await page.evaluate("window.orderflowDashboard.received")]
            await page.evaluate("window.orderflowDashboard.received = []")
            await page.evaluate(FRAME_PROBE)
            cpu_before, started = cpu_seconds(processes["dashboard"].pid), time.perf_counter()
            processes["replay"] = start_orderflow("replay", "--speed", str(speed), str(capture), env=env)
            while processes["replay"].poll() is None:
                await asyncio.sleep(0.5)
            wall = time.perf_counter() - started
            cpu = cpu_seconds(processes["dashboard"].pid) - cpu_before
            await asyncio.sleep(2.0)  # the last outputs drawn
            outputs = [item["latency_ms"] for item in await page.evaluate("window.orderflowDashboard.received")]
            ticks = await page.evaluate("window.orderflowDashboard.ticks")
            gaps = await page.evaluate("window.frameGaps")
            ceiling = await bare.evaluate("window.bare")
            assert_nothing_left_the_machine(browser, page)
        client = redis.Redis.from_url(redis_url)
        entries = sum(client.xlen(f"{prefix}:md:{{{symbol}}}") for symbol in chosen)
        alerts, exits = client.xlen(f"{prefix}:alerts") - idle_alerts, client.xlen(f"{prefix}:exits")
        print(f"cpus: {os.cpu_count()}, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        print(
            f"{len(chosen)} symbols at {speed:g}x their recorded rates for {wall:.1f} s: {entries:,} stream entries "
            f"(up to 64 events each), {alerts} alerts, {exits} exit recommendations"
        )
        print(f"idle: alert XADD -> drawn on the page   {quantiles(idle)}")
        print(f"dashboard server CPU: {cpu:.2f} s over {wall:.1f} s = {100 * cpu / wall:.1f}% of one core")
        print(f"alert/exit XADD -> drawn on the page   {quantiles(outputs)}")
        print(f"chart change, ingest publish -> page   {quantiles(ticks)}")
        print(f"ceiling: bare XADD -> XREAD BLOCK -> SSE -> page  {quantiles(ceiling)}")
        print(f"page frame gaps (requestAnimationFrame)  {quantiles(gaps)}")
    finally:
        pinger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pinger
        await runner.cleanup()
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            with contextlib.suppress(Exception):
                process.wait(timeout=10)
            process.stop_if_running()
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        await bus.close()
        if owned is not None:
            owned.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--idle-alerts", type=int, default=30)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.symbols, arguments.speed, arguments.idle_alerts))
