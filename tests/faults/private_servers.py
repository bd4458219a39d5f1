"""Private PostgreSQL clusters and Redis servers that a test may stop, kill and restart.

The shared test servers must never be disturbed, so a test that takes a server down builds
its own on a free port in a temporary folder and removes it afterwards.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError

from app.devtools.ports import free_port


def postgres_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/*/bin`` (or wherever ``pg_ctl`` is on PATH)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit()
                        else 0)
    if candidates:
        return Path(candidates[-1])
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are needed to run a private cluster: "
                "install the postgresql package (they live in /usr/lib/postgresql/*/bin)")


def _as_postgres_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the ``postgres`` account when we are root."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


class PrivatePostgres:
    """A throw-away cluster: ``initdb`` once, then ``start`` / ``stop`` as often as needed."""

    def __init__(self) -> None:
        self.bin = postgres_bin_dir()
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="mecove-faults-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.running = False

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(_as_postgres_user(list(args)), check=True, timeout=timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--no-sync", "--no-instructions")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c max_connections=60")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                  "-o", options, "-w", "-t", "60", "start", timeout=90)
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60",
                  "stop", timeout=90)
        self.running = False

    def destroy(self) -> None:
        if self.running or (self.data / "postmaster.pid").exists():
            try:
                self.stop("immediate")
            except (subprocess.SubprocessError, OSError):
                pass
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started private cluster, stopped and removed on exit whatever happened."""
    cluster = PrivatePostgres()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


class PrivateRedis:
    """A ``redis-server`` with AOF in its own folder; kill it, restart it on the same data."""

    def __init__(self, appendfsync: str = "always") -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.fail("redis-server is needed on PATH to run a private Redis for fault tests")
        self.server = server
        self.appendfsync = appendfsync
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="mecove-faults-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20) -> None:
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [self.server, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.folder), "--appendonly", "yes",
             "--appendfsync", self.appendfsync, "--save", ""],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 20) -> None:
        client = Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return
                except (RedisConnectionError, BusyLoadingError):
                    if time.monotonic() > deadline:
                        raise
                    if self.process is not None and self.process.poll() is not None:
                        raise RuntimeError(f"redis-server exited: {self.log_tail()}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything that is not on disk yet."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def shutdown(self) -> None:
        """A graceful ``SHUTDOWN``: Redis fsyncs the AOF before it exits."""
        client = Redis(port=self.port)
        try:
            client.shutdown()
        finally:
            client.close()
        if self.process is not None:
            self.process.wait(timeout=20)

    def log_tail(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def destroy(self) -> None:
        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def private_redis(appendfsync: str = "always") -> Iterator[PrivateRedis]:
    server = PrivateRedis(appendfsync)
    try:
        server.start()
        yield server
    finally:
        server.destroy()
