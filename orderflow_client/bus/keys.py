"""Every Redis key and channel name orderflow uses, under one prefix (``orderflow`` by default).

=========================================== ====================================================================
``orderflow:md:{AAPL}``                     per-symbol market stream: trades, quotes, book updates, feed status,
                                            in arrival order, up to 64 to an entry (the braces are a Redis
                                            Cluster hash tag)
``orderflow:alerts``                        every OrderFlowAlert (durable stream)
``orderflow:exits``                         every ExitRecommendation (durable stream)
``orderflow:exit-signals``                  pub/sub channel the risk manager subscribes to
``orderflow:status``                        FeedStatus events (feed and monitoring state)
``<stream>:dead``                           entries of ``<stream>`` that could not be handled
``orderflow:positions``                     position registry (hash)
``orderflow:positions:changes``             pub/sub channel: a notice after every change of the registry
``orderflow:published:<output id>``         the detector's mark that an output was published (dedup, 7 days)
``orderflow:profile:{AAPL}``                a symbol's calibrated profile (JSON)
``orderflow:riskmanager:<bot>:handled:<id>`` a bot's lease on, or done mark of, one exit recommendation
=========================================== ====================================================================

The ACL rules of each service's Redis user (``shared/acl.py``) grant exactly these patterns.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Redis key names under one prefix.

    >>> Keys().market("AAPL")
    'orderflow:md:{AAPL}'
    """

    prefix: str = "orderflow"

    def market(self, symbol: str) -> str:
        return f"{self.prefix}:md:{{{symbol}}}"

    def symbol_of(self, market_stream: str) -> str:
        """Inverse of :meth:`market`."""
        return market_stream.rsplit("{", 1)[1].rstrip("}")

    @property
    def alerts(self) -> str:
        return f"{self.prefix}:alerts"

    @property
    def exits(self) -> str:
        return f"{self.prefix}:exits"

    @property
    def exit_channel(self) -> str:
        return f"{self.prefix}:exit-signals"

    @property
    def status(self) -> str:
        return f"{self.prefix}:status"

    def dead_letters(self, stream: str) -> str:
        """Where entries of ``stream`` that cannot be handled are moved (with the reason)."""
        return f"{stream}:dead"

    @property
    def positions(self) -> str:
        return f"{self.prefix}:positions"

    @property
    def positions_channel(self) -> str:
        return f"{self.prefix}:positions:changes"

    def published(self, output_id: str) -> str:
        """The detector's mark that the output ``output_id`` (an alert, exit or status id) was published."""
        return f"{self.prefix}:published:{output_id}"

    def profile(self, symbol: str) -> str:
        """Where ``orderflow calibrate`` stores the profile of ``symbol`` (JSON), e.g. ``orderflow:profile:{AAPL}``."""
        return f"{self.prefix}:profile:{{{symbol}}}"

    def handled(self, bot_name: str, recommendation_id: str) -> str:
        """A bot's lease on, or done mark of, one exit recommendation."""
        return f"{self.prefix}:riskmanager:{bot_name}:handled:{recommendation_id}"
