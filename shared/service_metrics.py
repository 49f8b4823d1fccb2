"""Every Prometheus metric the services (ingest, detector) export, defined in one place.

Beside the bus's own metrics (``orderflow_client/metrics.py``), this is the whole list the README's table shows.
Units are in the names (``_seconds``, ``_entries``); counters end in ``_total``. Labels are bounded: symbols are only
those with open positions, codes come from fixed error tables.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS_SECONDS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
)

# --- ingest ---------------------------------------------------------------------
FRAMES_RECEIVED = Counter(
    "orderflow_frames_received_total", "Raw frames received from a market-data source.", ["source"]
)
FRAMES_REJECTED = Counter(
    "orderflow_frames_rejected_total", "Frames or rows rejected by a parser, by error code.", ["source", "code"]
)
EVENTS_PUBLISHED = Counter(
    "orderflow_events_published_total", "Normalised events published to the market streams.", ["kind"]
)
INGEST_QUEUE_DEPTH = Gauge("orderflow_ingest_queue_depth_frames", "Frames waiting between socket and publisher.")
INGEST_QUEUE_DROPPED = Counter(
    "orderflow_ingest_queue_dropped_frames_total", "Frames dropped because the ingest queue was full."
)
PUBLISH_LAG = Histogram(
    "orderflow_publish_lag_seconds", "Receive-to-stream delay of published events.", buckets=LATENCY_BUCKETS_SECONDS
)
FEED_CONNECTED = Gauge("orderflow_feed_connected", "1 while the live feed is connected and authenticated.")
FEED_RECONNECTS = Counter("orderflow_feed_reconnects_total", "Reconnections of the live feed.")
FEED_GAPS = Counter("orderflow_feed_gaps_total", "Gaps published on the status stream.", ["reason"])
TRADES_WITHOUT_SIDE = Counter(
    "orderflow_trades_without_side_total",
    "Trades of a source that gives the aggressor's side (Databento) whose record had none: left to inference.",
    ["source"],
)
BACKFILLED_TRADES = Counter("orderflow_backfilled_trades_total", "Trades recovered from REST after a gap.")
OUTPUTS_UNCONFIRMED = Gauge(
    "orderflow_outputs_unconfirmed",
    "Outputs (alerts, exits, statuses) published but not yet acknowledged by a replica: kept and published again.",
)
MONITORED_SYMBOLS = Gauge("orderflow_monitored_symbols", "Symbols with an open position being monitored.")
THRESHOLD_SHARES = Gauge(
    "orderflow_threshold_shares",
    "Each monitored symbol's current large-order and large-offer thresholds.",
    ["symbol", "kind"],
)
CALIBRATED = Gauge(
    "orderflow_calibrated",
    "1 when a symbol's thresholds come from its profile or its own session, 0 while calibrating.",
    ["symbol"],
)
CALIBRATION_RUNS = Counter(
    "orderflow_calibration_runs_total",
    "Live calibrations of a symbol's profile from REST, by outcome (built, bounded, fresh, or a failure's code).",
    ["outcome"],
)
INDEX_SILENT = Gauge(
    "orderflow_index_silent",
    "1 while a tailed index stream is silent past context_stale_seconds while the positions' streams flow.",
    ["symbol"],
)

# --- detector -------------------------------------------------------------------
EVENTS_PROCESSED = Counter("orderflow_events_processed_total", "Market events run through the rules.", ["kind"])
ALERTS = Counter("orderflow_alerts_total", "Alerts published, by type and severity.", ["alert_type", "severity"])
EXIT_RECOMMENDATIONS = Counter("orderflow_exit_recommendations_total", "Exit recommendations published.")
ALERT_LATENCY = Histogram(
    "orderflow_alert_latency_seconds",
    "Ingest receive of the triggering event to the alert being logged.",
    buckets=LATENCY_BUCKETS_SECONDS,
)
PROCESSING_LATENCY = Histogram(
    "orderflow_processing_latency_seconds",
    "Ingest receive to processed and acknowledged by the detector, oldest event of each batch.",
    buckets=LATENCY_BUCKETS_SECONDS,
)
CONSUMER_LAG = Gauge(
    "orderflow_consumer_lag_entries", "Stream entries not yet delivered to the detector group.", ["symbol"]
)
VALIDATION_ERRORS = Counter("orderflow_validation_errors_total", "Data validation errors, by code.", ["code"])
HALTED_SYMBOLS = Gauge("orderflow_halted_symbols", "Symbols whose monitoring is halted by bad data.")
DUPLICATES_SKIPPED = Counter("orderflow_duplicates_skipped_total", "Redelivered or duplicate events skipped.", ["kind"])
