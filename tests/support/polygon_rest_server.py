"""A local HTTP server answering like Polygon's REST API, for tests.

Routes are set per test: ``server.routes[path] = [(status, headers, body), ...]``
answers the listed responses in turn (the last one repeats). Every request's
path, query and Authorization header is recorded.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse


class PolygonRestServer:
    def __init__(self) -> None:
        self.routes: dict[str, list[tuple[int, dict, bytes]]] = {}
        self.delays: dict[str, float] = {}
        self.requests: list[tuple[str, str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parsed = urlparse(self.path)
                server.requests.append((parsed.path, parsed.query, self.headers.get("Authorization", "")))
                time.sleep(server.delays.get(parsed.path, 0))
                answers = server.routes.get(parsed.path) or [(404, {}, b'{"status":"NOT_FOUND"}')]
                status, headers, body = answers.pop(0) if len(answers) > 1 else answers[0]
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> PolygonRestServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
