"""The service as child processes, supervised: what ``mecove up`` and ``mecove dev`` run.

One process for the ingress and one per consumer group, each ``python -m app.cli <command>``.
The first child to exit, or SIGINT / SIGTERM, stops them all: SIGTERM to every child still
running, then SIGKILL to any that has not exited within ``STOP_GRACE_S``. So does whatever
``watch`` reports (``mecove dev``: an embedded server that died), rather than a service left
answering 503 forever.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from app.platform.settings import Settings

__all__ = ["service_commands", "supervise"]

POLL_S = 0.2
STOP_GRACE_S = 15.0
_CLI = [sys.executable, "-m", "app.cli"]


def service_commands(host: str, groups: Sequence[str]) -> list[list[str]]:
    """The ingress (listening on ``host``) and one consumer process per group in ``groups``."""
    return [[*_CLI, "api", "--host", host]] + [[*_CLI, "consume", group] for group in groups]


def supervise(commands: list[list[str]], settings: Settings,
              watch: Callable[[], str | None] | None = None) -> int:
    """Start every command; the first to exit, or SIGINT / SIGTERM, stops them all.

    ``watch`` is polled with the children: a line it returns (something the service needs
    has gone) is printed and stops them all too, with exit code 1.
    Returns 0 when stopped by a signal, else the exit code of the first child that exited
    (1 if that child exited with 0: the service must not stop by itself).
    """
    children = _start_children(commands, settings.metrics_port)
    _say(f"up — webhook at http://127.0.0.1:{settings.port}/webhooks/whatsapp "
         f"({len(children)} processes)")
    stop = _StopRequest()
    code = _wait_for_first_exit(children, stop, watch)
    _stop_children(children)
    return code


def _say(line: str) -> None:
    print(f"mecove: {line}", file=sys.stderr, flush=True)


def _start_children(commands: list[list[str]], metrics_port: int | None
                    ) -> list[subprocess.Popen[bytes]]:
    children = []
    for index, command in enumerate(commands):
        env = os.environ.copy()
        if metrics_port:  # each process gets its own metrics port
            env["MECOVE_METRICS_PORT"] = str(metrics_port + index)
        children.append(subprocess.Popen(command, env=env))
    return children


class _StopRequest:
    """Set by the first SIGINT or SIGTERM (handlers installed on creation)."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGINT, self._request)
        signal.signal(signal.SIGTERM, self._request)

    def _request(self, *_: object) -> None:
        self.requested = True


def _wait_for_first_exit(children: list[subprocess.Popen[bytes]], stop: _StopRequest,
                         watch: Callable[[], str | None] | None) -> int:
    """Poll until a child exits (its exit code, at least 1), ``watch`` reports (1) or a stop
    is requested (0)."""
    while not stop.requested:
        gone = watch() if watch is not None else None
        if gone is not None:
            _say(f"{gone}; stopping the service")
            return 1
        exited = next((child for child in children if child.poll() is not None), None)
        if exited is not None:
            _say(f"{' '.join(map(str, exited.args[len(_CLI):]))} exited with "
                 f"{exited.returncode}; stopping the rest")
            return exited.returncode or 1
        time.sleep(POLL_S)
    return 0


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to every running child; SIGKILL to those still running after the grace."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
