"""``orderflow cluster status``: the detectors sharing the monitored symbols through leases in Redis
(:mod:`shared.ownership`), which symbols each owns, and the symbols nobody owns.

Everything is read from the bus: the open positions (the symbols monitored), the detectors listed as members with
the seconds since each one's last heartbeat (Redis's clock), and each monitored symbol's lease holder. A detector is
alive when its heartbeat is at most ``detector_lease_seconds`` old. Only ages are shown, so no clock time appears.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from services.cli.common import connect_bus, load_or_exit, run_or_exit, stderr, stdout
from services.cli.options import ConfigFileOption

if TYPE_CHECKING:
    from orderflow_client.bus.connection import Bus


@dataclass(frozen=True)
class DetectorStatus:
    """One detector: ``heartbeat_age_seconds`` since its last heartbeat (None: it holds leases but is no longer
    listed as a member, e.g. it is leaving), and the monitored symbols whose lease it holds, sorted."""

    name: str
    alive: bool
    heartbeat_age_seconds: float | None
    symbols: list[str]


@dataclass(frozen=True)
class ClusterStatus:
    """What ``orderflow cluster status`` reports (its ``--json`` document), e.g. ``ClusterStatus(bus="redis://
    127.0.0.1:6379/0", detectors=[DetectorStatus("d1", True, 0.4, ["AAPL"])], unowned=["MSFT"], lease_seconds=5.0)``.
    """

    bus: str
    detectors: list[DetectorStatus]
    unowned: list[str]
    lease_seconds: float


async def read_cluster_status(bus: Bus, lease_seconds: float) -> ClusterStatus:
    """The detectors, their symbols and the unowned symbols on ``bus`` now (alive: a heartbeat at most
    ``lease_seconds`` old)."""
    from orderflow_client.bus.leases import Leases, holder_of
    from orderflow_client.positions import PositionRegistry
    from shared.ownership import KIND

    symbols = sorted(await PositionRegistry(bus).symbols())
    leases = Leases(bus)
    ages = await leases.members_seen(KIND)
    holders = await leases.holders(KIND, symbols)
    owned: dict[str, list[str]] = {name: [] for name in ages}
    unowned = []
    for symbol in symbols:
        holder = holder_of(holders.get(symbol, ""))
        if holder:
            owned.setdefault(holder, []).append(symbol)
        else:
            unowned.append(symbol)
    detectors = [
        DetectorStatus(
            name=name,
            alive=name in ages and ages[name] <= lease_seconds,
            heartbeat_age_seconds=ages.get(name),
            symbols=owned[name],
        )
        for name in sorted(owned)
    ]
    return ClusterStatus(bus=bus.description, detectors=detectors, unowned=unowned, lease_seconds=lease_seconds)


def status_table(status: ClusterStatus) -> Table:
    """``orderflow cluster status``: one row per detector (alive or dead, heartbeat age, the symbols it owns)."""
    table = Table(title=f"detectors (lease {status.lease_seconds:g} s)", title_justify="left")
    for column in ("detector", "state", "heartbeat age (s)", "symbols owned", "symbols"):
        table.add_column(column, justify="right" if column in ("heartbeat age (s)", "symbols owned") else "left")
    for detector in status.detectors:
        age = detector.heartbeat_age_seconds
        table.add_row(
            detector.name,
            "[green]alive[/]" if detector.alive else "[bold red]dead[/]",
            "-" if age is None else f"{age:.1f}",
            str(len(detector.symbols)),
            ", ".join(detector.symbols) or "-",
        )
    return table


def cluster_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    config_file: ConfigFileOption = None,
) -> None:
    """Show the detectors sharing the monitored symbols, and the symbols nobody owns.

    One row per detector: alive or dead (a heartbeat at most ORDER_FLOW_DETECTOR_LEASE_SECONDS old), the age of its
    heartbeat in seconds (Redis's clock), the symbols whose lease it holds; then the unowned symbols and the bus.

    Example: REDIS_URL=redis://127.0.0.1:6379/0 orderflow cluster status --json
    """
    config = load_or_exit(config_file)
    if config.redis_url is None:
        stderr.print("[yellow]REDIS_URL is unset: the embedded bus of this command has no detectors[/]")
    if config.detector_lease_seconds == 0:
        stderr.print("[yellow]ORDER_FLOW_DETECTOR_LEASE_SECONDS is 0: the detectors take no leases[/]")

    async def run() -> ClusterStatus:
        bus = await connect_bus(config)
        try:
            return await read_cluster_status(bus, config.detector_lease_seconds)
        finally:
            await bus.close()

    status = run_or_exit(run())
    if as_json:
        sys.stdout.write(json.dumps(asdict(status), indent=2) + "\n")
        return
    stdout.print(status_table(status))
    if status.unowned:
        stdout.print(f"[bold yellow]unowned: {', '.join(status.unowned)}[/]", highlight=False)
    else:
        stdout.print("unowned: none", highlight=False)
    stdout.print(f"bus: {status.bus}", highlight=False)
