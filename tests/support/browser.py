"""The one way the tests drive a real browser: Debian's headless chromium over the DevTools protocol (CDP), spoken
directly over a websocket (the ``websockets`` package), with nothing allowed to leave the machine.

A sample::

    async with open_browser(width=1280, height=900) as browser:
        page = await browser.open("http://127.0.0.1:8080/")
        await page.wait_for("document.querySelector('#state').textContent === 'live'", what="the live state")
        assert await page.evaluate("document.title") == "orderflow"
        await page.set_viewport(390, 844, mobile=True)  # a phone
        await page.screenshot(tmp_path / "phone.png")
        assert_nothing_left_the_machine(browser, page)

No request leaves the machine, on three counts: host names other than 127.0.0.1 never resolve
(``--host-resolver-rules``); every request that still goes out (a name goes to the proxy unresolved) reaches a
trap proxy on 127.0.0.1 which records its first line (``browser.escaped``, e.g. ``CONNECT example.com:443
HTTP/1.1``) and answers 403; and chromium's own background services (component updater, network time, sign-in,
optimization hints, translate) are switched off or pointed at the loopback discard port. Loopback bypasses the
proxy, so the page's own server on 127.0.0.1 is reached directly. With these flags chromium 156 made no attempt of
its own in 20 s.

If chromium is missing the test is skipped with the reason, or fails in CI (``CI`` set), as ``paths.program``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from tests.support.paths import program

START_TIMEOUT = 20.0  # seconds for chromium to write DevToolsActivePort
COMMAND_TIMEOUT = 30.0  # seconds for chromium to answer one DevTools command
LOCAL_PREFIXES = ("http://127.0.0.1:", "http://127.0.0.1/", "data:", "blob:")


class PageScriptError(RuntimeError):
    """A JavaScript expression given to ``Page.evaluate`` threw (or its promise rejected) in the page."""


def no_egress_flags(trap_port: int) -> list[str]:
    """The chromium flags that keep every request on the machine (see the module's docstring)."""
    return [
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        f"--proxy-server=http://127.0.0.1:{trap_port}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--metrics-recording-only",
        "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter,Translate",
        "--component-updater=url-source=http://127.0.0.1:9/",  # the loopback discard port: refused locally
        "--gaia-url=http://127.0.0.1:9/",
    ]


class TrapProxy:
    """A 'proxy' on 127.0.0.1 that records the first line of every request sent to it and refuses it (403)."""

    def __init__(self) -> None:
        self.caught: list[str] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen on a free port of 127.0.0.1; returns the port."""
        self.server = await asyncio.start_server(self.refuse, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            self.caught.append(line.decode(errors="replace").strip() or "(a connection that sent nothing)")
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (TimeoutError, ConnectionError):
            self.caught.append("(a connection that sent no request line)")
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


class DevTools:
    """One websocket to chromium: commands matched to their replies by id, events handed to the page (session)
    they belong to."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.identifiers = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.pages: dict[str, Page] = {}
        self.reader = asyncio.create_task(self.read())

    async def read(self) -> None:
        try:
            async for raw in self.socket:
                message = json.loads(raw)
                if "id" in message:
                    future = self.pending.pop(message["id"], None)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif message.get("sessionId") in self.pages:
                    self.pages[message["sessionId"]].events.append(message)
        except websockets.ConnectionClosed:
            pass
        finally:
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("chromium closed the DevTools connection (did it crash?)"))
            self.pending.clear()

    async def send(self, method: str, session: str | None = None, **parameters: Any) -> dict[str, Any]:
        """Send one command (to ``session``'s page, else to the browser) and return its result; a RuntimeError if
        chromium answers with an error."""
        identifier = next(self.identifiers)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        message: dict[str, Any] = {"id": identifier, "method": method, "params": parameters}
        if session is not None:
            message["sessionId"] = session
        self.pending[identifier] = future
        try:
            await self.socket.send(json.dumps(message))
            reply = await asyncio.wait_for(future, COMMAND_TIMEOUT)
        except TimeoutError:
            raise TimeoutError(f"chromium did not answer {method} within {COMMAND_TIMEOUT} s") from None
        finally:
            self.pending.pop(identifier, None)
        if "error" in reply:
            raise RuntimeError(f"chromium refused {method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def close(self) -> None:
        await self.socket.close()  # first the socket, then the reader ends by itself (no stray task exception)
        await self.reader


class Page:
    """One tab. ``events`` holds every DevTools event of this tab, in order; ``requests``, ``failures`` and
    ``errors`` read them."""

    def __init__(self, devtools: DevTools, session: str) -> None:
        self.devtools = devtools
        self.session = session
        self.events: list[dict[str, Any]] = []

    async def send(self, method: str, **parameters: Any) -> dict[str, Any]:
        return await self.devtools.send(method, self.session, **parameters)

    def named(self, method: str) -> list[dict[str, Any]]:
        """The parameters of every event ``method`` (e.g. ``Network.requestWillBeSent``) so far."""
        return [event.get("params", {}) for event in self.events if event.get("method") == method]

    @property
    def requests(self) -> list[str]:
        """Every URL this page asked for, in order (``Network.requestWillBeSent``: asked, not necessarily sent)."""
        return [event["request"]["url"] for event in self.named("Network.requestWillBeSent")]

    @property
    def failures(self) -> dict[str, str]:
        """URL → chromium's error for each request that failed (``Network.loadingFailed``), e.g.
        ``{"https://example.com/x": "net::ERR_TUNNEL_CONNECTION_FAILED"}``."""
        urls = {event["requestId"]: event["request"]["url"] for event in self.named("Network.requestWillBeSent")}
        return {
            urls.get(event["requestId"], event["requestId"]): event.get("errorText", "")
            for event in self.named("Network.loadingFailed")
        }

    @property
    def errors(self) -> list[str]:
        """The page's uncaught JavaScript exceptions (``Runtime.exceptionThrown``), as their text."""
        found = []
        for event in self.named("Runtime.exceptionThrown"):
            details = event.get("exceptionDetails", {})
            found.append(details.get("exception", {}).get("description") or details.get("text", ""))
        return found

    async def navigate(self, url: str, timeout: float = 20.0) -> None:
        """Go to ``url`` and wait (``timeout`` seconds) for its load event; a RuntimeError if it cannot load."""
        reply = await self.send("Page.navigate", url=url)
        if reply.get("errorText"):
            raise RuntimeError(f"chromium could not open {url}: {reply['errorText']}")
        loader = reply.get("loaderId")
        deadline = time.monotonic() + timeout
        while not any(
            event.get("name") == "load" and (loader is None or event.get("loaderId") == loader)
            for event in self.named("Page.lifecycleEvent")
        ):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {url} to load")
            await asyncio.sleep(0.02)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (``Runtime.evaluate``, by value, a promise awaited),
        e.g. ``await page.evaluate("document.title")`` → ``'orderflow'``; ``None`` for ``undefined``. A
        PageScriptError if it throws."""
        reply = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        details = reply.get("exceptionDetails")
        if details is not None:
            thrown = details.get("exception", {}).get("description") or details.get("text", "an exception")
            raise PageScriptError(f"{expression!r} threw in the page: {thrown}")
        return reply.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0, what: str | None = None) -> Any:
        """Evaluate ``expression`` every 0.05 s until it is truthy and return that value; after ``timeout`` seconds
        an AssertionError naming ``what`` (else the expression) and the last value or error. A throw counts as not
        yet (the element may not exist yet). E.g. ``await page.wait_for("document.querySelectorAll('li').length
        >= 3", timeout=5, what="three alerts in the log")``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = await self.evaluate(expression)
            except PageScriptError as error:
                value = error
            if value and not isinstance(value, PageScriptError):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what or expression} (last: {value!r})")
            await asyncio.sleep(0.05)

    async def screenshot(self, path: str | Path) -> Path:
        """The visible viewport as a PNG file at ``path`` (its folders made); returns the path."""
        reply = await self.send("Page.captureScreenshot", format="png")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(reply["data"]))
        return target

    async def set_viewport(self, width: int, height: int, mobile: bool = False) -> None:
        """Make the viewport ``width`` × ``height`` CSS pixels, at a device scale of 1 (so a screenshot is that many
        pixels); ``mobile`` emulates a phone (the page then lays out at ``width`` only if it has
        ``<meta name="viewport" content="width=device-width">``). E.g. ``await page.set_viewport(390, 844,
        mobile=True)``."""
        await self.send(
            "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=mobile
        )


class Browser:
    """A running headless chromium (from ``open_browser``): ``open(url)`` gives a new tab; ``escaped`` is what its
    trap proxy caught, for the whole browser."""

    def __init__(self, devtools: DevTools, trap: TrapProxy, width: int, height: int) -> None:
        self.devtools = devtools
        self.trap = trap
        self.width = width
        self.height = height

    @property
    def escaped(self) -> list[str]:
        """The first line of each request that tried to leave the machine (any tab, or chromium itself), e.g.
        ``['CONNECT example.com:443 HTTP/1.1']``. Refused, so nothing went out; empty when all is well."""
        return list(self.trap.caught)

    async def open(self, url: str, timeout: float = 20.0) -> Page:
        """A new tab whose viewport is the browser's ``width`` × ``height``, with Network, Page and Runtime events on,
        navigated to ``url``; returns when its load event fired (within ``timeout`` seconds)."""
        target = await self.devtools.send("Target.createTarget", url="about:blank")
        attached = await self.devtools.send("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        page = Page(self.devtools, attached["sessionId"])
        self.devtools.pages[page.session] = page
        for domain in ("Network", "Page", "Runtime"):
            await page.send(f"{domain}.enable")
        await page.send("Page.setLifecycleEventsEnabled", enabled=True)
        await page.set_viewport(self.width, self.height)  # the window alone leaves headless chrome's 87 px of bars out
        await page.navigate(url, timeout)
        return page


def assert_nothing_left_the_machine(browser: Browser, page: Page) -> None:
    """Every URL the page asked for is on 127.0.0.1 (or ``data:`` / ``blob:``), and the trap caught nothing from the
    whole browser; else an AssertionError listing what would have left."""
    requests = page.requests
    assert requests, "the page made no request at all: were its Network events on?"
    outside = [url for url in requests if not url.startswith(LOCAL_PREFIXES)]
    assert not outside, f"the page asked for addresses off the machine: {outside}"
    assert not browser.escaped, f"requests tried to leave the machine (caught by the trap): {browser.escaped}"


@asynccontextmanager
async def open_browser(width: int = 1280, height: int = 900) -> AsyncIterator[Browser]:
    """Start headless chromium (its tabs' viewport ``width`` × ``height`` CSS pixels) with a fresh profile in a
    temporary folder and the no-egress flags, and connect to it; on exit chromium (its whole process group) is
    killed and the folder removed. ``async with open_browser() as browser: page = await browser.open(url)``."""
    chromium = program("chromium")
    trap = TrapProxy()
    trap_port = await trap.start()
    folder = Path(tempfile.mkdtemp(prefix="orderflow-chromium-"))
    profile = folder / "profile"
    log = folder / "chromium.log"
    command = [
        chromium,
        "--headless",
        "--no-sandbox",  # root in a container
        "--disable-gpu",
        "--remote-debugging-port=0",  # chromium picks a free port and writes it to DevToolsActivePort
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        *no_egress_flags(trap_port),
        "about:blank",
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    devtools: DevTools | None = None
    try:
        address = await devtools_address(process, profile / "DevToolsActivePort", log)
        socket = await websockets.connect(address, max_size=64_000_000, open_timeout=COMMAND_TIMEOUT)
        devtools = DevTools(socket)
        yield Browser(devtools, trap, width, height)
    finally:
        try:
            if devtools is not None:
                await devtools.close()
        finally:
            await stop(process)
            await trap.stop()
            shutil.rmtree(folder, ignore_errors=True)


async def devtools_address(process: subprocess.Popen[bytes], active_port: Path, log: Path) -> str:
    """The browser's DevTools websocket address, from the file chromium writes once it listens (line 1 the port,
    line 2 the path)."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        lines = active_port.read_text().splitlines() if active_port.exists() else []
        if len(lines) == 2:
            return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        if process.poll() is not None or time.monotonic() > deadline:
            said = log.read_text(errors="replace")[-2000:]
            state = f"exited with {process.returncode}" if process.returncode is not None else "did not start"
            raise RuntimeError(f"chromium {state} within {START_TIMEOUT} s; it said: {said}")
        await asyncio.sleep(0.05)


async def stop(process: subprocess.Popen[bytes]) -> None:
    """End chromium and every helper process it started (its own process group), SIGTERM then SIGKILL."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while process.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the group's leftovers (renderers), or chromium itself if stuck
    if process.poll() is None:
        process.wait(5)
