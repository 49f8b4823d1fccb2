"""Tools beside production: the synthetic ``scenarios``, the Polygon ``simulator`` (a local server speaking its
WebSocket and REST protocols), the embedded ``demo`` and the terminal ``watch``."""
