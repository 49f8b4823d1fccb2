"""The JSON schema of the config file (``config/config.schema.json``), generated from the settings model.

``orderflow config schema --write`` writes it; editors use it to check ``config/order_flow_config.json``, and
``scripts/config_reference.py`` reads the same schema for each setting's type, default and bounds.
"""

from __future__ import annotations

import json
from pathlib import Path

from shared.config import ENVIRONMENT_ONLY_FIELDS, OrderFlowConfig

SCHEMA_FILE = Path("config/config.schema.json")


def schema_document() -> str:
    """The JSON schema of the config file, as committed in config/config.schema.json."""
    schema = OrderFlowConfig.model_json_schema(by_alias=False)
    schema["title"] = "orderflow configuration (config/order_flow_config.json)"
    schema["description"] = (
        "Generated from shared.config.OrderFlowConfig by `orderflow config schema --write`. "
        "Environment variables ORDER_FLOW_<SETTING> override the file; "
        "POLYGON_API_KEY and DATABENTO_API_KEY belong in the environment only."
    )
    for secret in ENVIRONMENT_ONLY_FIELDS:
        schema["properties"].pop(secret, None)  # environment only
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
