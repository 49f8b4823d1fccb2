"""The shared LOBSTER days as Databento DBN input: each day converted to MBP-10 + trades (zstd) and to MBO gives
``orderflow analyze --format dbn`` the alert and exit ids that ``--format lobster`` gives on the original zip
(adaptive and absolute thresholds), and the events themselves: MBP-10 event for event, the MBO book rebuilt from
its orders event for event at the file's own depth (1 or 5 levels).

The LOBSTER ids are those of the committed id corpus (``scripts/id_corpus.json``, taken the same way: ``orderflow
analyze`` in a fresh process), which tests/integration/test_id_corpus.py holds to ``--format lobster`` runs."""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import msgspec
import pytest

from orderflow_client.wire import BookUpdate, OrderUpdate, Trade
from services.ingest.databento_files import DbnCounts, read_dbn
from services.ingest.lobster import read_lobster
from services.tools.lobster_to_dbn import convert_mbp10, open_lobster
from services.tools.lobster_to_mbo import convert_mbo
from tests.support.cli import orderflow_environment, run_orderflow
from tests.support.paths import REPO, shared_data

DAYS = {  # the LOBSTER days of scripts/id_corpus.py: name in the corpus → (zip, levels)
    "AMZN-2012-06-21-level5": ("LOBSTER_SampleFile_AMZN_2012-06-21_5.zip", 5),
    "AMZN-2012-06-21-level1": ("LOBSTER_SampleFile_AMZN_2012-06-21_1.zip", 1),
    "AAPL-2012-06-21-level1": ("LOBSTER_SampleFile_AAPL_2012-06-21_1.zip", 1),
}
CORPUS = json.loads((REPO / "scripts" / "id_corpus.json").read_text())


def convert(zipped: Path, folder: Path, schema: str) -> list[Path]:
    """One day to MBP-10 + trades (zstd) or MBO; the files written (run in a worker process)."""
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        day = open_lobster(zipped, stack)
        report = convert_mbo(day, folder, zstd=False) if schema == "mbo" else convert_mbp10(day, folder, zstd=True)
    assert report.invalid_rows == 0
    return report.files


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[Path], Path]]:
    """Day → (the LOBSTER zip, its MBP-10 and trades files, its MBO file), converted two at a time."""
    folder = tmp_path_factory.mktemp("dbn")
    jobs = [(name, schema) for name in DAYS for schema in ("mbp-10", "mbo")]
    with ProcessPoolExecutor(max_workers=2) as pool:
        futures = {
            job: pool.submit(convert, shared_data("lobster", DAYS[job[0]][0]), folder / job[0], job[1]) for job in jobs
        }
        files = {job: future.result() for job, future in futures.items()}
    return {
        name: (shared_data("lobster", zipped), files[(name, "mbp-10")], files[(name, "mbo")][0])
        for name, (zipped, _levels) in DAYS.items()
    }


def ids(arguments: list[str], out: Path, mode: str) -> dict[str, list[str]]:
    """The sorted alert and exit ids ``orderflow analyze <arguments>`` writes (as scripts/id_corpus.py takes them)."""
    environment = orderflow_environment(ORDER_FLOW_METRICS_PORT="0", ORDER_FLOW_THRESHOLD_MODE=mode)
    finished = run_orderflow("analyze", *arguments, "--out", str(out), env=environment, timeout=120)
    assert finished.returncode == 0, finished.stderr[-3000:]

    def read(name: str) -> list[str]:
        lines = (out / name).read_text().splitlines()
        return sorted(json.loads(line)["id"] for line in lines if line.strip())

    return {"alerts": read("alerts.jsonl"), "exits": read("exits.jsonl")}


def test_each_converted_day_gives_the_alert_and_exit_ids_of_the_lobster_files(converted, tmp_path):
    runs = {
        (day, source, mode): arguments
        for day, (_zipped, mbp_files, mbo_file) in converted.items()
        for mode in ("adaptive", "absolute")
        for source, arguments in (
            ("mbp-10+trades", ["--format", "dbn", *map(str, mbp_files)]),
            ("mbo", [str(mbo_file)]),  # the format told from the name
        )
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        found = pool.map(lambda run: ids(runs[run], tmp_path / "-".join(run), run[2]), runs)
        results = dict(zip(runs, found, strict=True))
    assert sum(len(CORPUS[f"{day}/{mode}"]["alerts"]) for day in DAYS for mode in ("adaptive", "absolute")) >= 10
    assert any(CORPUS[f"{day}/absolute"]["exits"] for day in DAYS)
    for (day, source, mode), result in results.items():
        assert result == CORPUS[f"{day}/{mode}"], f"{day} {mode}: {source}"


@pytest.mark.parametrize("day", DAYS)
def test_the_converted_files_give_the_lobster_events(converted, day):
    zipped, mbp_files, mbo_file = converted[day]
    levels = DAYS[day][1]
    lobster = list(read_lobster(zipped))
    counts = DbnCounts()
    mbp = list(read_dbn(mbp_files[:1], counts=counts))
    # event for event, except that a first message which is a hidden execution shows its book before its trade
    # (MBP-10's trade record carries the book it met; LOBSTER's row gives the book after it)
    assert mbp[2:] == lobster[2:] and set(mbp[:2]) == set(lobster[:2])
    assert counts.rejects == 0 and counts.trades == sum(type(event) is Trade for event in lobster)
    # the MBO book rebuilt to ten levels, cut to the file's levels, is LOBSTER's after every message
    everything = list(read_dbn([mbo_file]))
    mbo = [event for event in everything if type(event) is not OrderUpdate]  # the order view: test_order_view.py
    assert len(mbo) < len(everything)
    cut: list[object] = []
    last_book: BookUpdate | None = None
    for event in mbo:
        if isinstance(event, BookUpdate):
            event = msgspec.structs.replace(event, bids=event.bids[:levels], asks=event.asks[:levels])
            if last_book is not None and (last_book.bids, last_book.asks) == (event.bids, event.asks):
                continue  # a change beyond the file's levels only
            last_book = event
        cut.append(event)
    assert cut == lobster
    # below them it shows more than LOBSTER's rows: orders the messages showed there
    books = [event for event in mbo if isinstance(event, BookUpdate)]
    assert sum(len(book.bids) > levels or len(book.asks) > levels for book in books) > len(books) // 2


def test_the_command_converts_a_day(tmp_path):
    zipped = shared_data("lobster", DAYS["AMZN-2012-06-21-level1"][0])
    environment = orderflow_environment(ORDER_FLOW_METRICS_PORT="0")
    done = run_orderflow("convert-lobster", str(zipped), "--output", str(tmp_path), "--zstd", env=environment)
    assert done.returncode == 0, done.stderr
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == ["AMZN_2012-06-21_mbp-10.dbn.zst", "AMZN_2012-06-21_trades.dbn.zst"]
    assert "57,515 LOBSTER messages" in done.stdout and "11,419 trades" in done.stdout
    refused = run_orderflow(
        "convert-lobster", str(zipped), "--output", str(tmp_path), "--schema", "tbbo", env=environment
    )
    assert refused.returncode == 2 and "unknown schema 'tbbo'" in refused.stderr
