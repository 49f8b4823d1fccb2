"""The dashboard's aiohttp application: read-only, nothing from elsewhere.

=================================== ==============================================================================
``/``                               the page (``page/index.html``)
``/static/lightweight-charts.js``   the charting library, read from its installed wheel (:mod:`shared.charts`)
``/static/dashboard.js``, ``.css``  the page's own script and style (package data beside this module)
``/api/snapshot``                   everything the page starts from (JSON), with the id of the last event before it
``/events``                         server-sent events after that id (``?after=`` or ``Last-Event-ID``)
``/healthz``                        ``{"status": "ok", …}``: whether the dashboard reads Redis, how many pages follow
=================================== ==============================================================================

With an access token (required for any address but this machine's), every route but ``/healthz`` and the static
files asks for it: ``?token=`` (the page then keeps it in an HttpOnly, SameSite=Strict cookie and drops it from the
address bar), an ``Authorization: Bearer`` header or that cookie; compared in constant time. No access log is
written (a token in a URL would land in it). Every response carries a strict Content-Security-Policy: scripts,
styles and connections from this server only.
"""

from __future__ import annotations

import asyncio
import hmac
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from orderflow_client.timestamps import now_ns
from services.dashboard.hub import Hub
from services.dashboard.state import DashboardState
from services.dashboard.views import snapshot_view
from shared.charts import lightweight_charts_script

PAGE = Path(__file__).parent / "page"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
COOKIE = "orderflow_dashboard"
OPEN_PATHS = frozenset({"/healthz", "/favicon.ico"})
KEEP_ALIVE_SECONDS = 15.0

STATE: web.AppKey[DashboardState] = web.AppKey("state", DashboardState)
HUB: web.AppKey[Hub] = web.AppKey("hub", Hub)
TOKEN: web.AppKey[str] = web.AppKey("token", str)


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
    if name not in ("dashboard.js", "dashboard.css"):
        raise web.HTTPNotFound()
    return web.FileResponse(PAGE / name)


async def favicon(_request: web.Request) -> web.Response:
    return web.Response(status=204)


async def snapshot(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    return web.json_response(snapshot_view(request.app[STATE], now_ns(), hub.last_id))


async def health(request: web.Request) -> web.Response:
    state, hub = request.app[STATE], request.app[HUB]
    return web.json_response(
        {"status": "ok", "redis": "unreachable" if state.unreachable_since_ns else "ok", "pages": len(hub.queues)}
    )


async def events(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    queue = hub.subscribe(request.headers.get("Last-Event-ID") or request.query.get("after"))
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


def make_app(state: DashboardState, hub: Hub, token: str = "") -> web.Application:
    app = web.Application(middlewares=[check_token])
    app[STATE], app[HUB], app[TOKEN] = state, hub, token
    app.on_response_prepare.append(security_headers)
    app.on_shutdown.append(end_event_streams)
    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", static_file)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/api/snapshot", snapshot)
    app.router.add_get("/events", events)
    app.router.add_get("/healthz", health)
    return app
