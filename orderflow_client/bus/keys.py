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
``orderflow:riskmanager:<bot>:decision:<id>`` what the bot decided on it (JSON: exit, tighten_stop, hold, why)
``orderflow:lease:detector:AAPL``           which detector owns a symbol, and its fencing token (``name#17``)
``orderflow:lease:ingest:{AAPL}``           which ingest owns a symbol (in the slot of its stream)
``orderflow:lease-tokens``                  the counter detector fencing tokens come from (ingest: one a symbol)
``orderflow:members:detector``              the detectors alive (sorted set: name → last heartbeat, ms); ``…:ingest``
=========================================== ====================================================================

On a Redis Cluster (``Keys(cluster=True)``, chosen by :meth:`~orderflow_client.bus.connection.Bus.connect` when the
server says it is one) the outputs and their publish-once marks share one hash slot, so that publishing an output
stays one atomic script (a script may only touch keys of one slot): ``orderflow:{outputs}:alerts``,
``orderflow:{outputs}:exits``, ``orderflow:{outputs}:status``, ``orderflow:{outputs}:published:<output id>``, and the
leases, their token counter and the members beside them (a publish checks its lease in the same script). Every
other name is the same; the per-symbol streams spread over the nodes by their ``{SYMBOL}`` tag.

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
    cluster: bool = False

    @property
    def _outputs(self) -> str:
        """Where the outputs live: under the prefix, or in the one hash slot of ``{outputs}`` on a cluster."""
        return f"{self.prefix}:{{outputs}}" if self.cluster else self.prefix

    def market(self, symbol: str) -> str:
        return f"{self.prefix}:md:{{{symbol}}}"

    def symbol_of(self, market_stream: str) -> str:
        """Inverse of :meth:`market`."""
        return market_stream.rsplit("{", 1)[1].rstrip("}")

    @property
    def alerts(self) -> str:
        return f"{self._outputs}:alerts"

    @property
    def exits(self) -> str:
        return f"{self._outputs}:exits"

    @property
    def exit_channel(self) -> str:
        return f"{self.prefix}:exit-signals"

    @property
    def status(self) -> str:
        return f"{self._outputs}:status"

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
        return f"{self._outputs}:published:{output_id}"

    def profile(self, symbol: str) -> str:
        """Where ``orderflow calibrate`` stores the profile of ``symbol`` (JSON), e.g. ``orderflow:profile:{AAPL}``."""
        return f"{self.prefix}:profile:{{{symbol}}}"

    def lease(self, kind: str, symbol: str) -> str:
        """Who owns ``symbol`` among the processes of ``kind``: a detector's lease sits beside the outputs
        (``orderflow:lease:detector:AAPL``; the outputs' slot on a cluster), which its publish checks; an ingest's
        beside the symbol's stream (``orderflow:lease:ingest:{AAPL}``: the stream's slot), which its appends check
        (:mod:`orderflow_client.bus.leases`)."""
        if kind == "ingest":
            return f"{self.prefix}:lease:ingest:{{{symbol}}}"
        return f"{self._outputs}:lease:{kind}:{symbol}"

    def lease_tokens(self, kind: str, symbol: str) -> str:
        """The counter a lease's fencing tokens come from, in the lease's slot: one for every detector lease
        (``orderflow:lease-tokens``), one per symbol for ingest's (``orderflow:lease-tokens:ingest:{AAPL}``)."""
        if kind == "ingest":
            return f"{self.prefix}:lease-tokens:ingest:{{{symbol}}}"
        return f"{self._outputs}:lease-tokens"

    def members(self, kind: str) -> str:
        """The live processes of ``kind`` (a sorted set scored by their last heartbeat, ms)."""
        return f"{self._outputs}:members:{kind}"

    def handled(self, bot_name: str, recommendation_id: str) -> str:
        """A bot's lease on, or done mark of, one exit recommendation."""
        return f"{self.prefix}:riskmanager:{bot_name}:handled:{recommendation_id}"

    def decision(self, bot_name: str, recommendation_id: str) -> str:
        """What a bot decided on one exit recommendation (:mod:`orderflow_client.bus.decision_records`).

        >>> Keys().decision("my-bot", "AAPL:exit:red_burst:17")
        'orderflow:riskmanager:my-bot:decision:AAPL:exit:red_burst:17'
        """
        return f"{self.prefix}:riskmanager:{bot_name}:decision:{recommendation_id}"
