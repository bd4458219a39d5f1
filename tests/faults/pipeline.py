"""The whole service as real ``mecove`` processes: start, SIGKILL and replace, stop, logs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections import defaultdict
from pathlib import Path
from types import TracebackType

from app.platform.settings import Settings
from tests.processes import env_for, start_mecove, stop, wait_for_http


class Pipeline:
    """Processes of one service under test, each with its own consumer name and log file.

    Use as a context manager: every process still running on exit is stopped (SIGTERM, then
    SIGKILL after a grace period), whatever happened in the test.
    """

    def __init__(self, settings: Settings, log_dir: Path, **extra_env: str) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.extra_env = extra_env
        self.live: dict[str, subprocess.Popen[bytes]] = {}
        self.exit_codes: dict[str, int] = {}
        self.killed: list[str] = []
        self._started: defaultdict[str, int] = defaultdict(int)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    def log_files(self) -> list[Path]:
        return sorted(self.log_dir.glob("*.log"))

    def _start(self, role: str, args: list[str], **env: str) -> str:
        self._started[role] += 1
        name = f"{role}-{self._started[role]}"
        process_env = env_for(self.settings, **self.extra_env, **env,
                              MECOVE_CONSUMER_NAME=f"faults-{name}")
        self.live[name] = start_mecove(args, process_env, self.log_dir / f"{name}.log")
        return name

    async def start_api(self, timeout: float = 30) -> str:
        name = self._start("api", ["api", "--host", "127.0.0.1"])
        await asyncio.to_thread(wait_for_http, f"{self.base_url}/health", timeout)
        return name

    def start_consumer(self, group: str) -> str:
        return self._start(group, ["consume", group])

    def current(self, role: str) -> str:
        names = [n for n in self.live if n.rsplit("-", 1)[0] == role]
        if not names:
            raise LookupError(f"no live {role} process")
        return names[-1]

    def kill(self, name: str) -> None:
        """SIGKILL: no signal handler runs, nothing in flight is finished or acknowledged."""
        process = self.live.pop(name)
        self.exit_codes[name] = stop(process, signal.SIGKILL)
        self.killed.append(name)

    def kill_and_replace(self, group: str) -> tuple[str, str]:
        victim = self.current(group)
        self.kill(victim)
        return victim, self.start_consumer(group)

    def crashed(self) -> dict[str, int]:
        """Processes that exited on their own while they should be running."""
        return {n: p.returncode for n, p in self.live.items() if p.poll() is not None}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each live process has used so far, by name."""
        ticks = os.sysconf("SC_CLK_TCK")
        out: dict[str, float] = {}
        for name, process in self.live.items():
            try:
                stat = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[name] = (int(stat[11]) + int(stat[12])) / ticks
        return out

    def stop_all(self) -> dict[str, int]:
        """SIGTERM every live process (graceful stop); their exit codes, by name."""
        for process in self.live.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in list(self.live.items()):
            try:
                self.exit_codes[name] = process.wait(timeout=25)
            except subprocess.TimeoutExpired:
                self.exit_codes[name] = stop(process, signal.SIGKILL)
            del self.live[name]
        return {n: c for n, c in self.exit_codes.items() if n not in self.killed}

    def unclean_exits(self, codes: dict[str, int]) -> dict[str, int]:
        """Exit codes that are not a clean, graceful stop.

        ``mecove api`` is uvicorn, which re-raises the SIGTERM it caught once its graceful
        shutdown is done, so the api's clean exit code is -SIGTERM; consumers exit 0.
        """
        return {name: code for name, code in codes.items()
                if code != 0 and not (name.startswith("api-") and code == -signal.SIGTERM)}

    def log_tail(self, name: str, chars: int = 3_000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for name, process in list(self.live.items()):
            self.exit_codes[name] = stop(process, signal.SIGKILL if exc else signal.SIGTERM,
                                         timeout=25)
            del self.live[name]
