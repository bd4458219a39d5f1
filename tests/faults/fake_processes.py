"""The fakes of Graph and Groq in processes of their own.

Under a soak, fakes served by threads of the pytest process compete for its GIL with the
asyncio loop that drives the webhooks; in their own processes they do not slow the driver.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.processes import ROOT


class FakeProcess:
    """``python -m <module> --port 0 ...``; its base URL is read from ``listening <url>``."""

    def __init__(self, module: str, *args: str, log_path: Path) -> None:
        self.module = module
        self.args = args
        self.log_path = log_path
        self.process: subprocess.Popen[str] | None = None
        self.base_url = ""

    def start(self) -> FakeProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, "--port", "0", *self.args], cwd=ROOT,
                stdout=subprocess.PIPE, stderr=log, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"{self.module} did not start: {line!r}")
        self.base_url = line.removeprefix("listening ")
        return self

    def get_json(self, path: str, timeout: float = 60) -> Any:
        with urllib.request.urlopen(self.base_url + path, timeout=timeout) as response:  # noqa: S310 - a local fake
            return json.loads(response.read())

    def post_json(self, path: str, payload: Any, timeout: float = 10) -> Any:
        request = urllib.request.Request(self.base_url + path, data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"},
                                         method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return json.loads(response.read())

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the fake has used so far."""
        if self.process is None:
            return 0.0
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> FakeProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def graph_process(token: str, phone_number_id: str, log_dir: Path) -> FakeProcess:
    return FakeProcess("tests.fakes.graph_api", "--expected-token", token,
                       "--phone-number-id", phone_number_id, log_path=log_dir / "fake-graph.txt")


def groq_process(api_key: str, log_dir: Path) -> FakeProcess:
    return FakeProcess("tests.faults.echo_groq", "--expected-api-key", api_key,
                       log_path=log_dir / "fake-groq.txt")


def confirmed_send_bodies(graph: FakeProcess) -> list[Any]:
    """Bodies of the sends the fake Graph API answered with HTTP 200."""
    return list(graph.get_json("/_fake/sent"))
