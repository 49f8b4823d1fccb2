"""The browser harness (``tests/support/browser.py``) on a tiny local page: real headless chromium, driven over the
DevTools protocol, waited on, screenshotted, resized to a phone, and kept from reaching anything off the machine."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.support.browser import PageScriptError, assert_nothing_left_the_machine, open_browser

HEAD = """<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>harness page</title></head>"""
# the text appears 200 ms after the script runs; the page also tries to fetch from off the machine
REACHING_OUT = (
    HEAD
    + """<body><p id="greeting">waiting</p><p id="outside">not tried</p><script>
setTimeout(() => { document.getElementById("greeting").textContent = "ready"; }, 200);
fetch("https://example.com/x").then(
  (response) => { document.getElementById("outside").textContent = "answered " + response.status; },
  (error) => { document.getElementById("outside").textContent = "failed: " + error; });
</script></body></html>"""
)
STAYING_HOME = (
    HEAD
    + """<body><p id="greeting">waiting</p><script>
setTimeout(() => { document.getElementById("greeting").textContent = "ready"; }, 200);
</script></body></html>"""
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
async def site() -> AsyncIterator[str]:
    """The two pages, served by aiohttp on a free port of 127.0.0.1; yields the base URL."""

    async def reaching_out(_request: web.Request) -> web.Response:
        return web.Response(text=REACHING_OUT, content_type="text/html")

    async def staying_home(_request: web.Request) -> web.Response:
        return web.Response(text=STAYING_HOME, content_type="text/html")

    application = web.Application()
    application.router.add_get("/reaching-out", reaching_out)
    application.router.add_get("/staying-home", staying_home)
    runner = web.AppRunner(application)
    await runner.setup()
    server = web.TCPSite(runner, "127.0.0.1", 0)
    await server.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


def png_size(path: Path) -> tuple[int, int]:
    """Width and height in pixels from a PNG's header (its IHDR chunk); an AssertionError if it is not a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR", f"{path} is not a PNG: {head!r}"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


async def test_a_page_is_waited_on_screenshotted_resized_and_its_reach_off_the_machine_is_caught(site, tmp_path):
    async with open_browser(width=1280, height=900) as browser:
        page = await browser.open(f"{site}/reaching-out")
        assert await page.evaluate("document.title") == "harness page"
        await page.wait_for(
            "document.getElementById('greeting').textContent === 'ready'", timeout=5, what="the text set after 200 ms"
        )
        outcome = await page.wait_for(
            "document.getElementById('outside').textContent !== 'not tried' && "
            "document.getElementById('outside').textContent",
            timeout=5,
            what="the outside fetch to settle",
        )
        # the fetch was asked for, went to the trap proxy (the only way out chromium has), was refused there, and
        # failed in the page: it never left the machine, and the harness says it tried
        assert outcome.startswith("failed: TypeError"), outcome
        assert "https://example.com/x" in page.requests
        assert page.failures["https://example.com/x"].startswith("net::ERR_"), page.failures
        assert browser.escaped and all("example.com" in line for line in browser.escaped), browser.escaped
        assert "CONNECT example.com:443 HTTP/1.1" in browser.escaped
        with pytest.raises(AssertionError, match=r"https://example\.com/x"):
            assert_nothing_left_the_machine(browser, page)
        assert page.errors == []

        desktop = await page.screenshot(tmp_path / "desktop.png")
        assert png_size(desktop) == (1280, 900)

        await page.set_viewport(390, 844, mobile=True)
        assert await page.wait_for("window.innerWidth === 390 && window.innerWidth", timeout=5) == 390
        assert png_size(await page.screenshot(tmp_path / "phone.png")) == (390, 844)


async def test_a_local_page_leaves_nothing_and_page_errors_are_named(site):
    async with open_browser() as browser:
        page = await browser.open(f"{site}/staying-home")
        await page.wait_for("document.getElementById('greeting').textContent === 'ready'", timeout=5)
        assert page.requests[0] == f"{site}/staying-home"
        assert_nothing_left_the_machine(browser, page)  # chromium's own background services included

        with pytest.raises(PageScriptError, match="ReferenceError: nothingHere is not defined"):
            await page.evaluate("nothingHere.length")
        assert await page.evaluate("Promise.resolve(6 * 7)") == 42
        with pytest.raises(AssertionError, match=r"timed out after 0\.3 s waiting for a greeting that never comes"):
            await page.wait_for("document.title === 'never'", timeout=0.3, what="a greeting that never comes")
