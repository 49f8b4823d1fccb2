"""The Redis Cluster harness (tests/support/redis_cluster.py) on a real 3-master, 3-replica cluster: the slots are
all covered, keys of different symbols land on different masters, and killing a master promotes its replica, which
still serves the keys written before the kill."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from redis.cluster import RedisCluster as RedisClusterClient

from tests.support.redis_cluster import SLOT_COUNT, RedisCluster, running_cluster
from tests.support.waiting import wait_for

pytestmark = pytest.mark.redis

SYMBOLS = ("AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "META")


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    try:
        with running_cluster() as started:
            yield started
    except RuntimeError as error:  # no Redis 7, or the cluster would not form: fail, never skip
        pytest.fail(str(error), pytrace=False)


def test_three_masters_and_three_replicas_cover_every_slot(cluster: RedisCluster) -> None:
    nodes = cluster.nodes()
    masters = [node for node in nodes if node.role == "master"]
    replicas = [node for node in nodes if node.role == "replica"]
    assert (len(masters), len(replicas)) == (3, 3)
    assert not any(node.failed for node in nodes)
    assert sum(last - first + 1 for node in masters for first, last in node.slots) == SLOT_COUNT
    assert sorted(str(replica.master_id) for replica in replicas) == sorted(master.node_id for master in masters)
    assert cluster.url == f"redis://127.0.0.1:{min(master.port for master in masters)}/0"


def test_killing_a_master_promotes_its_replica_which_keeps_the_keys(cluster: RedisCluster) -> None:
    keys = {f"orderflow:md:{{{symbol}}}": f"last-trade-{symbol}" for symbol in SYMBOLS}
    writer = RedisClusterClient.from_url(cluster.url, decode_responses=True)
    try:
        for key, value in keys.items():
            writer.set(key, value)
            master = writer.get_node_from_key(key)
            acknowledged = writer.execute_command("WAIT", 1, 1000, target_nodes=master)
            assert acknowledged == 1, f"the replica of {master.name} did not acknowledge {key}"
    finally:
        writer.close()
    masters_of_keys = {key: cluster.master_of(key) for key in keys}
    assert len(set(masters_of_keys.values())) >= 2, masters_of_keys

    victim_key = "orderflow:md:{AAPL}"
    victim = masters_of_keys[victim_key]
    master_id = {node.port: node for node in cluster.nodes()}[victim].node_id
    replica = next(node.port for node in cluster.nodes() if node.master_id == master_id)
    replica_client = cluster.client(replica)
    try:  # the replica already holds the key before the master dies (WAIT above said so)
        replica_client.execute_command("READONLY")
        assert replica_client.get(victim_key) == keys[victim_key]
    finally:
        replica_client.close()

    started = time.monotonic()
    promoted = cluster.kill_master(victim, timeout=15.0)
    assert time.monotonic() - started < 15.0
    assert promoted == replica
    assert cluster.master_of(victim_key) == promoted
    healthy = [node for node in cluster.nodes() if not node.failed]
    assert sorted(node.role for node in healthy) == ["master", "master", "master", "replica", "replica"]

    reader = RedisClusterClient.from_url(cluster.url, decode_responses=True)
    try:
        assert {key: reader.get(key) for key in keys} == keys
        assert reader.get_node_from_key(victim_key).port == promoted
    finally:
        reader.close()

    cluster.restart(victim)  # the old master comes back as its successor's replica
    roles = {node.port: node for node in cluster.nodes()}
    assert roles[victim].role == "replica" and roles[victim].master_id == roles[promoted].node_id
    survivor = cluster.client(victim)
    try:
        wait_for(lambda: survivor.info("replication")["master_link_status"] == "up", timeout=10, what="resync")
        survivor.execute_command("READONLY")
        assert survivor.get(victim_key) == keys[victim_key]
    finally:
        survivor.close()
