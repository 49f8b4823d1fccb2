"""The index symbols of the market context: what ingest subscribes and each detector reads beside the positions.

They are the configured ``market_symbols`` (SPY by default) and the sector ETF (``sector_etfs``) of each open
position that has one, e.g. with ``market_symbols=("SPY",)`` and ``sector_etfs={"AAPL": "XLK"}``::

    index_symbols(config, ["AAPL", "BAC"])   # ["SPY", "XLK"]
    index_symbols(config, [])                # []: no position open, no index followed

With no position open nothing is followed: an index matters only for the context of a position's alerts and the
market-wide exit naming the positions (and Databento connects only for something to stream).
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.config import OrderFlowConfig


def index_symbols(config: OrderFlowConfig, positions: Iterable[str]) -> list[str]:
    """The index symbols to follow while ``positions`` are open, sorted (none while none is)."""
    open_positions = set(positions)
    if not open_positions:
        return []
    wanted = set(config.market_symbols)
    wanted.update(etf for symbol, etf in config.sector_etfs.items() if symbol in open_positions)
    return sorted(wanted)


def with_index_symbols(config: OrderFlowConfig, positions: Iterable[str]) -> list[str]:
    """``positions`` (in their order) and then the index symbols they bring that are not positions themselves,
    e.g. ``["AAPL", "BAC", "SPY", "XLK"]``."""
    listed = list(dict.fromkeys(positions))
    return listed + [symbol for symbol in index_symbols(config, listed) if symbol not in listed]
