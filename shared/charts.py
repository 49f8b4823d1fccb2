"""The charting library of orderflow's web pages (the dashboard, the backtest report): TradingView's Lightweight
Charts v5 (Apache-2.0), made for market data: price lines and bars in panes, markers for alerts and exits, a time
axis, live updates.

Its standalone script comes from the ``bn-lightweight-charts`` wheel, installed from the package index and pinned in
``pyproject.toml``: orderflow reads the file from the installed wheel and serves it itself (the dashboard) or inlines
it (the backtest report's one file), so no page loads anything from elsewhere and no copy is committed here. The
wheel's Python code is never imported (it would bring pandas and its own window code).

    lightweight_charts_script()   # PosixPath('…/site-packages/bn_lightweight_charts/js/lightweight-charts.js')
    lightweight_charts_version()  # '5.0.8'
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path

PACKAGE = "bn_lightweight_charts"
MAJOR_VERSION = 5  # the API the pages are written against (createChart, addSeries, createSeriesMarkers, panes)


class ChartLibraryMissingError(RuntimeError):
    """The charting library's wheel is not installed (or not the version the pages are written for)."""


@functools.cache
def lightweight_charts_script() -> Path:
    """Path of the library's standalone script (180 kB, minified) in the installed wheel."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ChartLibraryMissingError(f"{PACKAGE} is not installed: pip install -e . (it is in pyproject.toml)")
    script = Path(next(iter(spec.submodule_search_locations))) / "js" / "lightweight-charts.js"
    if not script.is_file():
        raise ChartLibraryMissingError(f"{script} is missing from the installed {PACKAGE} wheel")
    return script


@functools.cache
def lightweight_charts_version() -> str:
    """The library's version, from the script's licence header (``TradingView Lightweight Charts™ v5.0.8``)."""
    header = lightweight_charts_script().read_text(encoding="utf-8")[:400]
    match = re.search(r"Lightweight Charts\S* v(\d+)\.(\d+)\.(\d+)", header)
    if match is None or int(match.group(1)) != MAJOR_VERSION:
        raise ChartLibraryMissingError(
            f"expected Lightweight Charts v{MAJOR_VERSION}.x, the script's header says: {header[:120]!r}"
        )
    return ".".join(match.groups())
