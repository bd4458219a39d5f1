"""A private Redis Cluster of six ``redis-server`` processes: three masters, three replicas.

Nodes listen on free loopback ports (their bus port, +10000, free too), fail over after a
short ``--cluster-node-timeout``, and are stopped by their pid; their folders are removed.
Used by tests/cluster and bench/cluster.py.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from app.platform.eventlog.entries import as_text

NODE_TIMEOUT_MS = 1_000


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _free_node_ports(count: int) -> list[int]:
    """Ports whose cluster bus port (+10000) is free as well."""
    ports: list[int] = []
    candidate = 21_000 + (time.monotonic_ns() // 1000) % 20_000
    while len(ports) < count:
        candidate = 21_000 + (candidate - 21_000 + 7) % 30_000
        if _free(candidate) and _free(candidate + 10_000):
            ports.append(candidate)
    return ports


@dataclass
class Node:
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    def client(self) -> Redis:
        return Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=5)


class PrivateCluster:
    """Six nodes; ``start`` creates the cluster, ``destroy`` stops every node by its pid."""

    def __init__(self) -> None:
        self.server = shutil.which("redis-server")
        self.cli = shutil.which("redis-cli")
        if self.server is None or self.cli is None:
            raise RuntimeError("redis-server and redis-cli are needed on PATH to run a private "
                               "cluster")
        self.folder = Path(tempfile.mkdtemp(prefix="mecove-cluster-"))
        self.nodes = {port: Node(port, self.folder / str(port))
                      for port in _free_node_ports(6)}

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{next(iter(self.nodes))}/0"

    def start(self) -> None:
        for node in self.nodes.values():
            node.folder.mkdir()
            self.start_node(node.port)
        subprocess.run(
            [self.cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.nodes),
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, capture_output=True, timeout=60)
        self.wait_healthy()

    def start_node(self, port: int) -> None:
        """Start (or restart, on its saved cluster config) the node on ``port``."""
        node = self.nodes[port]
        log = (node.folder / "redis.log").open("ab")
        node.process = subprocess.Popen(
            [self.server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node.folder),
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
             "--cluster-replica-validity-factor", "0",
             "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
             "--appendonly", "no", "--save", ""],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 20
        with node.client() as client:
            while True:
                try:
                    client.ping()
                    return
                except RedisError:
                    if time.monotonic() > deadline or node.process.poll() is not None:
                        raise
                    time.sleep(0.05)

    def wait_healthy(self, timeout: float = 60) -> None:
        """Until every live node says ``cluster_state:ok`` and every replica's link is up."""
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not healthy within {timeout}s:\n{self.describe()}")
            time.sleep(0.1)

    def _healthy(self) -> bool:
        for node in self.live_nodes():
            try:
                with node.client() as client:
                    if client.cluster("info")["cluster_state"] != "ok":
                        return False
                    replication = client.info("replication")
                    if replication["role"] == "slave" and \
                            replication["master_link_status"] != "up":
                        return False
            except RedisError:
                return False
        return len(self.masters()) == 3

    def live_nodes(self) -> list[Node]:
        return [n for n in self.nodes.values()
                if n.process is not None and n.process.poll() is None]

    def masters(self) -> dict[int, list[int]]:
        """Live master port -> ports of its live replicas, as a live node sees the cluster."""
        for node in self.live_nodes():
            try:
                with node.client() as client:
                    raw = client.execute_command("CLUSTER", "NODES")
            except RedisError:
                continue
            lines = [line.split() for line in
                     as_text(raw).splitlines()]
            ids = {f[0]: int(f[1].split(":")[1].split("@")[0]) for f in lines}
            masters = {int(f[1].split(":")[1].split("@")[0]): [] for f in lines
                       if "master" in f[2] and "fail" not in f[2] and len(f) > 8}
            for f in lines:
                if "slave" in f[2] and "fail" not in f[2] and ids.get(f[3]) in masters:
                    masters[ids[f[3]]].append(ids[f[0]])
            return masters
        return {}

    def master_of(self, key: str) -> int:
        """The port of the master that owns ``key``'s slot."""
        with next(iter(self.live_nodes())).client() as client:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return int(master[1])
        raise LookupError(key)

    def kill(self, port: int) -> None:
        """SIGKILL the node: nothing flushed, no goodbye to its peers."""
        self._signal(port, signal.SIGKILL)

    def stop(self, port: int) -> None:
        """SIGTERM the node (a clean shutdown) and wait for it to exit."""
        self._signal(port, signal.SIGTERM)

    def _signal(self, port: int, sig: signal.Signals) -> None:
        process = self.nodes[port].process
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            process.wait(timeout=20)

    def describe(self) -> str:
        return "\n".join(f"{port}: {'up' if n in self.live_nodes() else 'down'}"
                         for port, n in self.nodes.items())

    def destroy(self) -> None:
        for port in self.nodes:
            self.kill(port)
        shutil.rmtree(self.folder, ignore_errors=True)
