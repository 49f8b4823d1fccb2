"""The rule that keeps outages survivable, checked on the source: a Redis call is made either through the bus (whose
typed errors every service turns into recovery in one place) or in a function listed here, with the place that
recovers from its failure. A new raw call fails this test until it is placed under a recovery and listed."""

from __future__ import annotations

import ast

from tests.support.paths import REPO

RAW_CALLS_AND_THEIR_RECOVERY = {
    # the bus itself: every method turns redis-py's errors into BusUnavailableError / ConsumerGroupMissingError
    **{
        f"orderflow_client/bus.py:Bus.{name}": "Bus._calling"
        for name in (
            "ack",
            "close",
            "dead_letter",
            "delivery_counts",
            "ensure_group",
            "group_positions",
            "pending_count",
            "publish_channel",
            "publish_encoded",
            "read_group",
            "read_own_pending",
            "read_range",
            "reclaim_all",
        )
    },
    "services/detector/service.py:DetectorService.__init__": "register_script: no round trip",
    "services/detector/service.py:DetectorService._history_end": "DetectorService._consume (refresh runs in _step)",
    "services/detector/service.py:DetectorService._warm_up": "DetectorService._consume (refresh runs in _step)",
    "services/detector/profile_store.py:ProfileStore.load": "DetectorService._consume (refresh); calibrate is a one-shot command",
    "services/detector/profile_store.py:ProfileStore.save": "one-shot command (calibrate): fails with a clear error",
    "services/tools/demo.py:run_demo": "the demo's own embedded bus",
    "services/ingest/live.py:IngestService._follow_positions": "IngestService._follow_positions catches OUTAGE_ERRORS",
    "services/tools/watch.py:follow": "the watch command's loop catches OUTAGE_ERRORS (banner)",
    "services/tools/watch.py:starting_ids": "start-up of the watch command: fails with a clear error",
    "orderflow_client/positions.py:PositionRegistry._notify": "the caller's recovery (detector _consume, ingest _follow_positions, client retries)",
    "orderflow_client/positions.py:PositionRegistry.close": "the caller's recovery",
    "orderflow_client/positions.py:PositionRegistry.current": "the caller's recovery",
    "orderflow_client/positions.py:PositionRegistry.open": "the caller's recovery",
    "orderflow_client/positions.py:PositionRegistry.restore": "the caller's recovery",
    "orderflow_client/risk.py:RiskManagerClient._follow": "RiskManagerClient.run catches OUTAGE_ERRORS",
    "orderflow_client/risk.py:RiskManagerClient._attempt": "RiskManagerClient.run catches OUTAGE_ERRORS",
    "orderflow_client/risk.py:last_trade_price": "the handler that calls it: raising there retries the recommendation",
    "orderflow_client/threaded.py:OrderFlowClient._recent": "the bot's call: a clear exception, the client keeps running",
    "orderflow_client/threaded.py:OrderFlowClient.ping": "the bot's call (health_check turns it into 'unreachable')",
}


def raw_redis_calls() -> set[str]:
    """``file:function`` of every call made straight on a Redis client (``bus.client.X(…)``, ``self.bus.client.X(…)``,
    the bus's own ``self.client.X(…)``)."""
    found = set()
    for root in ("services", "shared", "orderflow_client"):
        for path in sorted((REPO / root).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            receivers = {"bus.client", "self.bus.client", "self._bus.client", "self._connected().client"}
            if relative == "orderflow_client/bus.py":
                receivers.add("self.client")
            stack: list[str] = []

            class Visitor(ast.NodeVisitor):
                def generic_visit(self, node: ast.AST) -> None:
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                        stack.append(node.name)
                        super().generic_visit(node)
                        stack.pop()
                        return
                    if (
                        isinstance(node, ast.Call)
                        and isinstance(node.func, ast.Attribute)
                        and ast.unparse(node.func.value) in receivers
                    ):
                        owner = (
                            ".".join(stack[:2])
                            if stack and stack[0][0].isupper()
                            else stack[0]
                            if stack
                            else "<module>"
                        )
                        found.add(f"{relative}:{owner}")
                    super().generic_visit(node)

            Visitor().visit(ast.parse(path.read_text()))
    return found


def test_every_raw_redis_call_is_under_a_recovery():
    unlisted = raw_redis_calls() - set(RAW_CALLS_AND_THEIR_RECOVERY)
    assert not unlisted, f"Redis called outside the bus, with no recovery named: {sorted(unlisted)}"


def test_the_list_names_no_call_that_is_gone():
    assert not set(RAW_CALLS_AND_THEIR_RECOVERY) - raw_redis_calls()
