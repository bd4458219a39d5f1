"""Starting and stopping the processes a benchmark measures; none outlives the benchmark.

Every process is started through ``ProcessSet``, an async context manager whose exit stops
whatever is still running (SIGTERM, then SIGKILL after a grace period), even on an error or
Ctrl-C. Output goes to a log file per process, named in any error.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec

from app.cli import UVICORN_OPTIONS
from app.platform.eventlog.content_crypto import MasterKeys
from bench.closed_on_exit import ClosedOnExit

ROOT = Path(__file__).resolve().parents[1]

# Variables a mecove process reads; the benchmark sets each one itself, nothing leaks in.
_MECOVE_VARIABLES = ("DATABASE_URL", "REDIS_URL", "MECOVE_", "WHATSAPP_", "GROQ_")


class BenchError(RuntimeError):
    """A benchmark could not run as set up (a process died, a server never answered)."""


@dataclass(slots=True)
class Service:
    name: str
    process: asyncio.subprocess.Process
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.returncode is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def ensure_running(self) -> None:
        if not self.running():
            raise BenchError(f"{self.name} exited with {self.process.returncode}; "
                             f"log {self.log_path}:\n{self.log_tail()}")


@contextmanager
def work_directory(label: str) -> Iterator[Path]:
    """A temporary directory for bodies and logs; kept (and named) when the benchmark fails."""
    path = Path(tempfile.mkdtemp(prefix=f"mecove-bench-{label}-"))
    try:
        yield path
    except BaseException:
        print(f"bench: logs kept in {path}", file=sys.stderr)
        raise
    shutil.rmtree(path, ignore_errors=True)


# One key for every process of a run: the api seals what the consumers open.
BENCH_MASTER_KEY = MasterKeys.generate_text()


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any mecove variable, plus ``extra``.

    The repository root goes first on PYTHONPATH, so ``python -m app.cli`` and
    ``python -m tests.fakes...`` import this checkout whatever the working directory.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(_MECOVE_VARIABLES)}
    env["MECOVE_MASTER_KEY"] = BENCH_MASTER_KEY  # content sealed, as production must run
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def mecove_command(*args: str) -> list[str]:
    """``python -m app.cli <args>`` with this interpreter (what ``mecove <args>`` runs)."""
    return [sys.executable, "-m", "app.cli", *args]


def _baseline_command(module: str, port: int) -> list[str]:
    options = msgspec.json.encode(UVICORN_OPTIONS).decode()
    return [sys.executable, "-m", module, "--port", str(port), "--uvicorn-options", options]


def bare_litestar_command(port: int) -> list[str]:
    """The bare Litestar baseline on ``port``, under ``mecove api``'s exact uvicorn options."""
    return _baseline_command("bench.servers.bare_litestar", port)


def raw_asgi_command(port: int) -> list[str]:
    """The raw ASGI app (no framework) on ``port``, under ``mecove api``'s uvicorn options."""
    return _baseline_command("bench.servers.raw_asgi", port)


class ProcessSet(ClosedOnExit):
    """Processes started for one benchmark; all stopped on exit."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.services: list[Service] = []
        self._starts: dict[str, int] = {}

    async def __aenter__(self) -> ProcessSet:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self

    async def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        stdout_pipe: bool = False,
        preexec_fn: Callable[[], None] | None = None,
    ) -> Service:
        """Start ``argv`` in the log directory (so no ``.env`` of the checkout is read).

        Each start gets its own log file (``name.log``, then ``name.2.log``...), so what a
        benchmark reads in a log is always this process's. ``preexec_fn`` runs in the child
        before ``argv`` (``CpuPlacement.server_preexec``).
        """
        count = self._starts[name] = self._starts.get(name, 0) + 1
        log_path = self.log_dir / (f"{name}.log" if count == 1 else f"{name}.{count}.log")
        log = log_path.open("ab")
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env=dict(env),
                cwd=self.log_dir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if stdout_pipe else log,
                stderr=log,
                preexec_fn=preexec_fn,
            )
        finally:
            log.close()
        service = Service(name, process, log_path)
        self.services.append(service)
        return service

    async def stop(
        self, service: Service, grace_s: float = 15.0, sig: int = signal.SIGTERM
    ) -> int:
        """``sig`` (SIGTERM), wait up to ``grace_s``, then SIGKILL; returns the exit code."""
        process = service.process
        if process.returncode is None:
            try:
                process.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                await asyncio.wait_for(process.wait(), timeout=grace_s)
            except TimeoutError:
                process.kill()
                await process.wait()
        if service in self.services:
            self.services.remove(service)
        return process.returncode if process.returncode is not None else -1

    async def aclose(self) -> None:
        """Stop every process still listed, newest first, concurrently."""
        services = list(reversed(self.services))
        await asyncio.gather(*(self.stop(s) for s in services), return_exceptions=True)


def py_spy_path() -> str:
    """py-spy from PATH, else the one installed beside this interpreter."""
    return shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


async def start_py_spy(processes: ProcessSet, target: Service, output: Path,
                       seconds: float | None = None) -> Service:
    """``py-spy record`` of ``target`` into ``output`` (.svg flamegraph, .json speedscope,
    else raw collapsed stacks); without ``seconds`` it records until stopped with SIGINT."""
    formats = {".svg": "flamegraph", ".json": "speedscope"}
    argv = [py_spy_path(), "record", "--pid", str(target.pid), "--output", str(output),
            "--rate", "200", "--format", formats.get(output.suffix, "raw")]
    if seconds is not None:
        argv += ["--duration", str(max(1, round(seconds)))]
    spy = await processes.start(f"py-spy-{target.name}", argv, clean_env({}))
    await asyncio.sleep(0.5)  # attached before the work starts
    spy.ensure_running()
    return spy


async def wait_for_http(service: Service, url: str, timeout_s: float = 30.0) -> None:
    """Poll ``url`` until it answers 200; BenchError if the process dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=1.0) as client:
        while time.monotonic() < deadline:
            service.ensure_running()
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise BenchError(f"{service.name} did not answer {url} within {timeout_s:g}s; "
                     f"log {service.log_path}:\n{service.log_tail()}")


async def read_listening_line(service: Service, timeout_s: float = 15.0) -> str:
    """A fake prints ``listening http://HOST:PORT`` first; returns the URL."""
    stdout = service.process.stdout
    if stdout is None:
        raise BenchError(f"{service.name} was not started with its stdout piped")
    try:
        line = await asyncio.wait_for(stdout.readline(), timeout=timeout_s)
    except TimeoutError as exc:
        raise BenchError(f"{service.name} printed nothing within {timeout_s:g}s") from exc
    text = line.decode().strip()
    if not text.startswith("listening "):
        service.ensure_running()
        raise BenchError(f"{service.name} printed {text!r} instead of its address")
    return text.removeprefix("listening ")


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MB (from /proc), None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far (from /proc), None when it is gone.

    Unlike a rate, CPU time per request does not change when other work shares the machine.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores, from /proc/stat:
    the difference over a run says how much of the machine was spent, by anyone."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    idle = fields[3] + fields[4]
    return (total - idle) / _CLOCK_TICKS, total / _CLOCK_TICKS
