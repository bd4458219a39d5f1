"""A private Redis Cluster of six ``redis-server`` processes: three masters, three replicas.

Nodes listen on free loopback ports (their bus port, +10000, free too) below the kernel's
ephemeral range, so no outgoing connection takes one between the check and the bind, or while a
node is down to be restarted; fail over after a short ``--cluster-node-timeout``; and are
stopped by their pid; their folders are removed. Every wait has a deadline and its error says
what each node was doing. Used by tests/cluster and bench/cluster.py.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from app.platform.eventlog.entries import as_text

NODE_TIMEOUT_MS = 1_000
START_TIMEOUT_S = 20
CREATE_TIMEOUT_S = 60


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


BUS_OFFSET = 10_000  # a node's cluster bus listens on its port + 10000
LOWEST_PORT = 12_000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _first_ephemeral_port() -> int:
    """Where the kernel starts picking the local port of an outgoing connection (Linux; the
    IANA range's start elsewhere)."""
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49_152


def _free_node_ports(count: int) -> list[int]:
    """Free ports whose cluster bus port is free as well, both below the ephemeral range.

    The scan starts at a point that depends on the clock, so two clusters started at once
    (tests and a benchmark) rarely try the same ports."""
    span = min(_first_ephemeral_port(), 65_536) - BUS_OFFSET - LOWEST_PORT
    if span < count:
        raise RuntimeError(f"no room for {count} cluster ports below the ephemeral range "
                           f"({EPHEMERAL_RANGE})")
    start = (time.monotonic_ns() // 1000) % span
    ports: list[int] = []
    for step in range(span):
        candidate = LOWEST_PORT + (start + 7 * step) % span
        if candidate not in ports and _free(candidate) and _free(candidate + BUS_OFFSET):
            ports.append(candidate)
            if len(ports) == count:
                return ports
    raise RuntimeError(f"fewer than {count} free ports for a private cluster in "
                       f"{LOWEST_PORT}..{LOWEST_PORT + span}")


@dataclass
class Node:
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    def client(self) -> Redis:
        """One attempt per command: every caller polls under its own deadline, which
        redis-py's default retries (with backoff) would overshoot by up to a minute."""
        return Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=5,
                     retry=Retry(NoBackoff(), 0))


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
        try:
            subprocess.run(
                [self.cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.nodes),
                 "--cluster-replicas", "1", "--cluster-yes"],
                check=True, capture_output=True, timeout=CREATE_TIMEOUT_S)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            output = b"".join(o or b"" for o in (exc.stdout, exc.stderr)
                              ).decode(errors="replace")[-3000:]
            raise RuntimeError(f"redis-cli --cluster create failed ({exc}):\n{output}\n"
                               f"{self.describe()}") from exc
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
        deadline = time.monotonic() + START_TIMEOUT_S
        with node.client() as client:
            while True:
                try:  # the server answering must be ours, not one that took the port
                    if client.info("server")["process_id"] == node.process.pid:
                        return
                except RedisError:
                    pass
                exited = node.process.poll()
                if exited is not None:
                    raise RuntimeError(f"redis-server on port {port} exited with {exited}:\n"
                                       f"{self.log_tail(port)}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server on port {port} (pid {node.process.pid}) "
                                       f"did not answer within {START_TIMEOUT_S}s:\n"
                                       f"{self.log_tail(port)}")
                time.sleep(0.05)

    def log_tail(self, port: int, lines: int = 15) -> str:
        try:
            text = (self.nodes[port].folder / "redis.log").read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

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
        """One line per node: down, or its role, replication link and cluster state."""
        return "\n".join(f"{port}: {self._state(node)}" for port, node in self.nodes.items())

    def _state(self, node: Node) -> str:
        if node not in self.live_nodes():
            return "down"
        try:
            with node.client() as client:
                cluster = client.cluster("info")
                replication = client.info("replication")
        except RedisError as exc:
            return f"up, not answering ({type(exc).__name__}: {exc})"
        link = replication.get("master_link_status")
        return (f"up, {replication['role']}{f', link {link}' if link else ''}, "
                f"cluster_state {cluster['cluster_state']}, "
                f"{cluster['cluster_known_nodes']} known nodes")

    def destroy(self) -> None:
        """SIGKILL every node, then wait for each (a node that will not die is left behind,
        not waited for forever); remove the folder."""
        processes = [n.process for n in self.nodes.values()
                     if n.process is not None and n.process.poll() is None]
        for process in processes:
            process.kill()
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
        shutil.rmtree(self.folder, ignore_errors=True)
