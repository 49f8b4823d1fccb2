"""Fit the first-day prior across stocks and write it (``shared/data/first_day_prior.json``).

Each stock-day is read alone (``orderflow calibrate``'s path: the rules run over the files and record the
regular session), its profile's thresholds taken as what the prior should have said, and the prior
(:mod:`services.detector.threshold_prior`) fitted on all of them, with each stock left out in turn::

    python -m bench.first_day_prior                      # the shared days; print the fit
    python -m bench.first_day_prior --write              # and write the bundled prior
    python -m bench.first_day_prior --day algoseek:AIG:aig/20131007_trade.zip,aig/20131007_quote.zip ...

A ``--day`` is ``FORMAT:LABEL:FILE[,FILE...]`` (files relative to ``--data``): fit on your own symbols' days.
"""

from __future__ import annotations

import argparse
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from services.detector.rule_settings import RuleSettings
from services.detector.threshold_fit import thresholds_for
from services.detector.threshold_prior import PRIOR_RESOURCE, FirstDayPrior, PriorSample, encode_prior, fit_prior
from services.ingest.sources import read_events
from services.offline.calibrate import profiles_from_events
from shared.config import OrderFlowConfig

REPO = Path(__file__).resolve().parents[1]
SHARED_DAYS = (
    "lobster:AMZN:lobster/LOBSTER_SampleFile_AMZN_2012-06-21_5.zip",
    "lobster:AAPL:lobster/LOBSTER_SampleFile_AAPL_2012-06-21_1.zip",
    *(
        f"algoseek:{symbol.upper()}:algoseek/{symbol}/{day}_trade.zip,algoseek/{symbol}/{day}_quote.zip"
        for symbol in ("aig", "bac")
        for day in ("20131007", "20131008")
    ),
)


def sample_of(day: str, data: Path) -> PriorSample:
    """The stock-day ``FORMAT:LABEL:FILES``: its profile's large order, offer, burst ratio, volume and curve."""
    format, _label, files = day.split(":", 2)
    config = OrderFlowConfig()
    profiles = profiles_from_events(
        read_events(format, [data / name for name in files.split(",")]), config, source="files"
    )
    if len(profiles) != 1:
        raise ValueError(f"{day}: {len(profiles)} symbols, expected one")
    [profile] = profiles.values()
    fitted = thresholds_for(profile, RuleSettings.from_config(config).fit, source="profile", open_ns=None)
    return PriorSample(
        symbol=profile.symbol,
        day=profile.last_day,
        volume=profile.daily_volume,
        large_order_size=fitted.large_order_size,
        offer_size=fitted.offer_size,
        burst_ratio=fitted.burst_ratio,
        volume_curve=profile.volume_curve,
    )


def report(samples: list[PriorSample], prior: FirstDayPrior) -> str:
    lines = ["| stock-day | volume (shares) | large order | % of volume | offer / large | burst ratio |"]
    lines.append("|---|---|---|---|---|---|")
    for sample in samples:
        lines.append(
            f"| {sample.symbol} {sample.day} | {sample.volume:,} | {sample.large_order_size:,} | "
            f"{100 * sample.large_order_size / sample.volume:.3f} | "
            f"{sample.offer_size / sample.large_order_size:.2f} | {sample.burst_ratio:g} |"
        )
    lines.append("")
    lines.append(
        f"prior: large order = {100 * prior.volume_fraction:.4f} % of the expected volume, "
        f"offer = {prior.offer_multiple:g} × large order, burst ratio {prior.burst_ratio:g}"
    )
    lines.append("| held out | fraction fitted without it (%) | predicted / actual large order |")
    lines.append("|---|---|---|")
    for entry in prior.held_out:
        ratios = ", ".join(f"{day}: {math.exp(error):.2f}" for day, error in entry.errors.items())
        lines.append(f"| {entry.symbol} | {100 * entry.volume_fraction:.4f} | {ratios} |")
    lines.append(f"leave-one-stock-out rms error (ln): {prior.rms_error:g}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--day", action="append", help="FORMAT:LABEL:FILE[,FILE...] (default: the shared days)")
    parser.add_argument("--write", action="store_true", help=f"write shared/{PRIOR_RESOURCE}")
    parser.add_argument("--out", type=Path, default=REPO / "shared" / PRIOR_RESOURCE)
    arguments = parser.parse_args()
    days = arguments.day or list(SHARED_DAYS)
    with ProcessPoolExecutor(max_workers=3) as pool:
        samples = list(pool.map(sample_of, days, [arguments.data] * len(days)))
    prior = fit_prior(samples)
    print(report(samples, prior))
    if arguments.write:
        arguments.out.write_bytes(encode_prior(prior))
        print(f"wrote {arguments.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
