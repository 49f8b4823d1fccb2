"""The dashboard's aiohttp application: read-only, nothing from elsewhere.

=================================== ==============================================================================
``/``                               the page (``page/index.html``)
``/static/lightweight-charts.js``   the charting library, read from its installed wheel (:mod:`shared.charts`)
``/static/dashboard.js``, ``.css``  the page's own script and style (package data beside this module), and
``/static/market-context.js``       its market context: the alerts' context badges, the sell-off banner
``/api/snapshot``                   everything the page starts from (JSON), with the id of the last event before it
``/events``                         server-sent events after that id (``?after=`` or ``Last-Event-ID``)
``/healthz``                        ``{"status": "ok", …}``: whether the dashboard reads Redis, how many pages follow;
                                    503 ``{"status": "unhealthy", …}`` once Redis has not answered for
                                    ``unhealthy_after_seconds``
=================================== ==============================================================================

Without an access token (the dashboard listens on this machine only), a request must name this machine in its
``Host`` header (``127.0.0.1``, ``localhost`` or ``[::1]``, any port): another name is answered 421, so a page of
another site whose name is made to point at 127.0.0.1 (DNS rebinding) cannot read the dashboard.

With an access token (required for any address but this machine's), every route but ``/healthz`` and the static
files asks for it: ``?token=`` (the page then keeps it in an HttpOnly, SameSite=Strict cookie and drops it from the
address bar), an ``Authorization: Bearer`` header or that cookie; compared in constant time. No access log is
written (a token in a URL would land in it). Every response carries a strict Content-Security-Policy: scripts,
styles and connections from this server only.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from orderflow_client.timestamps import now_ns
from services.dashboard.hub import Hub
from services.dashboard.state import DashboardState
from services.dashboard.views import chart_view, snapshot_view, summary_view
from shared.charts import lightweight_charts_script

PAGE = Path(__file__).parent / "page"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
COOKIE = "orderflow_dashboard"
OPEN_PATHS = frozenset({"/healthz", "/favicon.ico"})
KEEP_ALIVE_SECONDS = 15.0
UNHEALTHY_AFTER_SECONDS = 15.0  # /healthz answers 503 once Redis has not answered this long
LOCAL_HOST_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})

STATE: web.AppKey[DashboardState] = web.AppKey("state", DashboardState)
HUB: web.AppKey[Hub] = web.AppKey("hub", Hub)
TOKEN: web.AppKey[str] = web.AppKey("token", str)
CLOCK: web.AppKey[Callable[[], int]] = web.AppKey("clock", Callable[[], int])  # type: ignore[arg-type]
UNHEALTHY_AFTER: web.AppKey[float] = web.AppKey("unhealthy_after", float)


def host_name(host: str) -> str:
    """The name in a ``Host`` header, without its port: ``[::1]:8765`` → ``::1``, ``localhost:8765`` →
    ``localhost``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() and ":" not in name else host


@web.middleware
async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Without a token, only a request naming this machine (a browser always sends ``Host``)."""
    host = request.headers.get("Host")
    if not request.app[TOKEN] and host is not None and host_name(host) not in LOCAL_HOST_NAMES:
        return web.Response(status=421, text="this dashboard answers only to 127.0.0.1, localhost or [::1]\n")
    return await handler(request)


def token_given(request: web.Request) -> str:
    authorization = request.headers.get("Authorization", "")
    if authorization.startswith("Bearer "):
        return authorization.removeprefix("Bearer ").strip()
    return request.query.get("token") or request.cookies.get(COOKIE, "")


@web.middleware
async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[TOKEN]
    guarded = bool(token) and request.path not in OPEN_PATHS and not request.path.startswith("/static/")
    if guarded and not hmac.compare_digest(token_given(request).encode(), token.encode()):
        return web.Response(status=401, text="access token required (?token= or Authorization: Bearer)\n")
    return await handler(request)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers.setdefault("Cache-Control", "no-store")


async def page(request: web.Request) -> web.StreamResponse:
    response = web.FileResponse(PAGE / "index.html")
    token = request.app[TOKEN]
    if token and request.query.get("token"):
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
    return response


async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name == "lightweight-charts.js":
        return web.FileResponse(lightweight_charts_script())
    if name not in ("dashboard.js", "market-context.js", "dashboard.css"):
        raise web.HTTPNotFound()
    return web.FileResponse(PAGE / name)


async def favicon(_request: web.Request) -> web.Response:
    return web.Response(status=204)


async def snapshot(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    return web.json_response(snapshot_view(request.app[STATE], request.app[CLOCK](), hub.last_id))


async def health(request: web.Request) -> web.Response:
    state, hub = request.app[STATE], request.app[HUB]
    since = state.unreachable_since_ns
    unreachable_seconds = (request.app[CLOCK]() - since) / 1e9 if since else 0.0
    healthy = unreachable_seconds <= request.app[UNHEALTHY_AFTER]
    body: dict[str, Any] = {
        "status": "ok" if healthy else "unhealthy",
        "redis": "unreachable" if since else "ok",
        "pages": len(hub.queues),
    }
    if since:
        body["redis_unreachable_seconds"] = round(unreachable_seconds, 1)
    return web.json_response(body, status=200 if healthy else 503)


def catch_up(state: DashboardState, clock: Callable[[], int]) -> Callable[[], list[tuple[str, Any]]]:
    """What a resuming page gets after the alerts it missed: the header and cards now, the whole charts."""

    def events() -> list[tuple[str, Any]]:
        charts = {symbol: chart_view(state.markets[symbol]) for symbol in state.symbols() if symbol in state.markets}
        return [("summary", summary_view(state, clock()))] + ([("market", charts)] if charts else [])

    return events


async def events(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    after = request.headers.get("Last-Event-ID") or request.query.get("after")
    queue = hub.subscribe(after, catch_up(request.app[STATE], request.app[CLOCK]))
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    try:
        await response.prepare(request)
        await response.write(b"retry: 2000\n\n")
        while True:
            try:
                chunk = await asyncio.wait_for(queue.get(), timeout=KEEP_ALIVE_SECONDS)
            except TimeoutError:
                chunk = b": keep-alive\n\n"  # also finds a page that went away
            if not chunk:  # the server is stopping
                break
            parts = [chunk]
            while not queue.empty() and len(parts) < 200:
                parts.append(queue.get_nowait())
            await response.write(b"".join(part for part in parts if part))
            if not parts[-1]:
                break
    except ConnectionResetError:  # the page went away
        pass
    finally:
        hub.unsubscribe(queue)
    return response


async def end_event_streams(app: web.Application) -> None:
    for queue in list(app[HUB].queues):
        queue.put_nowait(b"")


def make_app(
    state: DashboardState,
    hub: Hub,
    token: str = "",
    *,
    unhealthy_after_seconds: float = UNHEALTHY_AFTER_SECONDS,
    clock: Callable[[], int] = now_ns,
) -> web.Application:
    app = web.Application(middlewares=[check_host, check_token])
    app[STATE], app[HUB], app[TOKEN] = state, hub, token
    app[CLOCK], app[UNHEALTHY_AFTER] = clock, unhealthy_after_seconds
    app.on_response_prepare.append(security_headers)
    app.on_shutdown.append(end_event_streams)
    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", static_file)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/api/snapshot", snapshot)
    app.router.add_get("/events", events)
    app.router.add_get("/healthz", health)
    return app
