"""Closed-loop HTTP load: ``wrk`` with a Lua script when installed, else a Python generator.

Both send the lines of a bodies file (``<signature> <body>``), each body once while the file
lasts, over a fixed number of keep-alive connections for a fixed time, and report the same
``LoadResult``.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from bench.figures import percentile
from bench.raw_http import HttpError, RawHttpClient

WRK_SCRIPT = Path(__file__).resolve().parent / "signed_bodies.lua"
RESULT_MARKER = "BENCH_RESULT "


@dataclass(frozen=True, slots=True)
class LoadResult:
    tool: str
    requests: int  # responses received
    duration_s: float
    non2xx: int
    socket_errors: int  # connect / read / write errors and timeouts
    wrapped: int  # requests that repeated a body because the file ran out
    p50_ms: float
    p99_ms: float

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def accepted(self) -> int:
        return self.requests - self.non2xx


class _WrkReport(msgspec.Struct):
    requests: int
    duration_us: int
    non2xx: int
    wrapped: int
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int
    p50_us: int
    p90_us: int
    p99_us: int
    max_us: int


def wrk_path() -> str | None:
    return shutil.which("wrk")


def load_generator_name() -> str:
    return "wrk (Lua script, distinct signed body per request)" if wrk_path() else \
        "python asyncio generator, bench/raw_http.py (wrk not installed)"


async def run_load(
    url: str, bodies_file: Path, *, seconds: float, connections: int
) -> LoadResult:
    """Load ``url`` for ``seconds`` with whichever generator is available."""
    if wrk_path():
        return await run_wrk(url, bodies_file, seconds=seconds, connections=connections)
    return await run_python(url, bodies_file, seconds=seconds, connections=connections)


async def run_wrk(
    url: str, bodies_file: Path, *, seconds: float, connections: int, threads: int = 1
) -> LoadResult:
    """One wrk thread by default: on two cores the server under test needs the other."""
    wrk = wrk_path()
    if wrk is None:
        raise FileNotFoundError("wrk is not installed")
    process = await asyncio.create_subprocess_exec(
        wrk, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
        "--timeout", "10s", "-s", str(WRK_SCRIPT), url, "--", str(bodies_file), str(threads),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = output.decode(errors="replace")
    line = next((x for x in text.splitlines() if x.startswith(RESULT_MARKER)), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (exit {process.returncode}):\n{text[-2000:]}")
    report = msgspec.json.decode(line.removeprefix(RESULT_MARKER), type=_WrkReport)
    return LoadResult(
        tool="wrk",
        requests=report.requests,
        duration_s=report.duration_us / 1e6,
        non2xx=report.non2xx,
        socket_errors=report.connect_errors + report.read_errors + report.write_errors
        + report.timeouts,
        wrapped=report.wrapped,
        p50_ms=report.p50_us / 1000,
        p99_ms=report.p99_us / 1000,
    )


def read_bodies_file(bodies_file: Path) -> list[tuple[str, bytes]]:
    items: list[tuple[str, bytes]] = []
    with bodies_file.open("rb") as lines:
        for line in lines:
            signature, _, body = line.rstrip(b"\n").partition(b" ")
            items.append((signature.decode(), body))
    return items


async def run_python(
    url: str, bodies_file: Path, *, seconds: float, connections: int
) -> LoadResult:
    """The fallback: ``connections`` coroutines posting back to back, one connection each."""
    bodies = await asyncio.to_thread(read_bodies_file, bodies_file)
    if not bodies:
        raise ValueError(f"{bodies_file} holds no bodies")
    parts = urlsplit(url)
    counter = itertools.count()
    latencies: list[float] = []
    non2xx = 0
    errors = 0

    async with RawHttpClient(parts.hostname or "127.0.0.1", parts.port or 80) as client:
        async def worker(deadline: float) -> None:
            nonlocal non2xx, errors
            while time.perf_counter() < deadline:
                index = next(counter)
                signature, body = bodies[index % len(bodies)]
                started = time.perf_counter()
                try:
                    status = await client.post(parts.path, body, {
                        "Content-Type": "application/json", "X-Hub-Signature-256": signature})
                except (OSError, HttpError):
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)
                if not 200 <= status < 300:
                    non2xx += 1

        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(worker(deadline) for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    sent = next(counter)
    return LoadResult(
        tool="python",
        requests=len(latencies),
        duration_s=elapsed,
        non2xx=non2xx,
        socket_errors=errors,
        wrapped=max(0, sent - len(bodies)),
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
    )
