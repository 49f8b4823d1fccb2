"""The fault-injection soak, short: a minute of the live chain as real processes with faults every ~8 s (kills of
every process and of Redis, socket drops, poison, a stopped detector), compared with an undisturbed offline pass."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.paths import REPO


@pytest.mark.redis
def test_a_minute_of_faults_loses_and_duplicates_nothing():
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--seconds", "60", "--seed", "11", "--mean-interval", "5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[len("RESULT ") :])
    assert len(result["faults"]) >= 4, result["faults"]  # a real mix: each kind once per round, in a seeded order
    assert result["exits"] >= 3 and result["alerts"] >= 9, result  # the chain did its work
    assert result["alerts_lost"] == result["alerts_extra"] == [] and result["alerts_published_twice"] == 0, result
    assert result["exits_lost"] == result["exits_extra"] == [], result
    assert result["decided_twice"] == result["never_decided"] == [], result
    assert result["dead_lettered"] == result["poison_written"], result  # every poison entry set aside, nothing else
    assert all(seconds["max"] >= 0 for seconds in result["recovery_seconds"].values()), result  # caught up after each
    assert set(result["exit_codes"].values()) == {0}, result["exit_errors"]  # and each stopped cleanly on SIGTERM


@pytest.mark.redis
def test_a_minute_of_faults_on_a_redis_cluster_with_three_detectors_and_two_ingests_loses_nothing():
    """The same on a local Redis Cluster (3 masters, 3 replicas), detectors and ingests sharing the symbols through
    their leases: kills of a detector and of an ingest (their symbols taken over), a master failover among the
    faults."""
    scale_out = ["--cluster", "--detectors", "3", "--ingests", "2"]
    scale_out += ["--faults", "master_failover,detector_kill,ingest_kill,socket_drop,poison"]  # each once a round
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", *scale_out, "--seconds", "60", "--seed", "11", "--mean-interval", "6"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[len("RESULT ") :])
    assert {"detector_kill", "ingest_kill", "master_failover"} <= set(result["faults"]), result["faults"]
    assert result["exits"] >= 3 and result["alerts"] >= 9, result
    assert result["alerts_lost"] == result["alerts_extra"] == [] and result["alerts_published_twice"] == 0, result
    assert result["exits_lost"] == result["exits_extra"] == [], result
    assert result["decided_twice"] == result["never_decided"] == [], result
    assert set(result["exit_codes"].values()) == {0}, result["exit_errors"]
