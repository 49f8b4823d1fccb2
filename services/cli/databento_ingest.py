"""``orderflow ingest`` with ``ORDER_FLOW_DATA_SOURCE=databento``: Databento Live onto the streams.

The same service as the Polygon source (:mod:`services.ingest.service`, which picks the feed by
``config.data_source``), without Polygon's REST: no condition table to fetch (Databento's trades carry no condition
codes); a gap's trades are backfilled from Databento's historical API (:mod:`services.ingest.databento_history`,
``ORDER_FLOW_DATABENTO_HISTORICAL_URL``). ``--record`` records Polygon frames: with Databento it is said to do
nothing and ingest runs (compose's ingest service passes it whatever the source). Exit codes as for Polygon: 2 when
``DATABENTO_API_KEY`` is missing, 3 when Redis stays unreachable, 5 when Databento refuses the key.
"""

from __future__ import annotations

from pathlib import Path

import typer

from services.cli.common import (
    connect_bus,
    logging_or_exit,
    run_ingest_or_exit,
    stderr,
    stop_on_signals,
)
from shared.config import OrderFlowConfig


def ingest_databento(config: OrderFlowConfig, record: Path | None, name: str | None = None) -> None:
    """Run live ingest from Databento until SIGTERM/SIGINT (exit codes: the module docstring)."""
    from orderflow_client.logs import get_logger
    from services.ingest.databento_history import DatabentoHistorical
    from services.ingest.service import IngestService

    if config.databento_api_key is None:
        stderr.print(
            "[bold red]DATABENTO_API_KEY is not set:[/] live ingest from Databento needs it (in the environment; "
            "`orderflow simulate-databento` serves a local gateway)"
        )
        raise typer.Exit(code=2)
    api_key = config.databento_api_key.get_secret_value()
    logging_or_exit(service="ingest", log_dir=config.log_dir, level=config.log_level, secrets=config.secret_values())
    log = get_logger("ingest")
    if record is not None:
        stderr.print("--record records Polygon frames: with ORDER_FLOW_DATA_SOURCE=databento nothing is recorded")
        log.warning("order_flow.record_ignored", code="record_ignored", source="databento", record=str(record))

    async def run() -> None:
        bus = await connect_bus(config)
        stop = stop_on_signals()
        history = DatabentoHistorical(
            api_key,
            config.databento_historical_url,
            dataset=config.databento_dataset,
            requests_per_minute=config.databento_historical_requests_per_minute,
        )
        service = IngestService(config, bus, api_key=api_key, history=history, name=name)
        log.info(
            "order_flow.ingest_started",
            source="databento",
            dataset=config.databento_dataset,
            schema=config.databento_schema,
            gateway=config.databento_gateway or "default",
            bus=bus.description,
        )
        try:
            stats = await service.run(stop)
        finally:
            history.close()
            await bus.close()
        log.info("order_flow.ingest_stopped", **stats.summary())

    run_ingest_or_exit(config, run, log)
