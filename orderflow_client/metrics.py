"""The Prometheus metrics of the bus, the only ones a bot's process registers when it imports orderflow_client.

The services' own metrics (ingest, detector) are in ``shared/service_metrics.py``; a bot never imports that. Units
are in the names (``_seconds``, ``_entries``); counters end in ``_total``; labels are bounded (codes come from fixed
tables, operations from the bus's method names).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, start_http_server

# --- bus ------------------------------------------------------------------------
BUS_UP = Gauge("orderflow_bus_up", "1 while Redis answers, 0 while a service waits out an outage.")
BUS_UP.set(1)
BUS_RETRIES = Counter("orderflow_bus_retries_total", "Redis calls retried after a connection error.")
BUS_FAILURES = Counter("orderflow_bus_failures_total", "Redis calls that failed after every retry.", ["operation"])
RECLAIMED_ENTRIES = Counter(
    "orderflow_reclaimed_entries_total", "Pending entries reclaimed from a stalled consumer (XAUTOCLAIM)."
)


DEAD_LETTERS = Counter(
    "orderflow_dead_letters_total",
    "Stream entries that could not be handled, moved to the dead-letter stream, by code.",
    ["code"],
)


def serve_metrics(port: int, host: str = "127.0.0.1") -> object | None:
    """Serve ``/metrics`` on ``host:port`` (this machine only by default); port 0 disables. Returns the server."""
    if port == 0:
        return None
    server, _thread = start_http_server(port, addr=host)
    return server
