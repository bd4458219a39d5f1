"""CPU per request of the fake Graph API process, as the end-to-end bench runs it.

Starts ``python -m tests.fakes.graph_api --port 0`` in ``--root`` (default: this checkout; give
another worktree for an A/B), sends ``--requests`` message sends over ``--connections``
keep-alive httpx connections (one thread each) and prints the fake process's user+system CPU
per request, read from /proc. Client CPU is not counted, so the figure holds while other
benchmarks share the machine.

    python -m bench.fake_server_cpu [--requests 4000] [--connections 4] [--root PATH]
"""

from __future__ import annotations

import argparse
import os
import select
import subprocess
import sys
import threading
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
MESSAGE = {"messaging_product": "whatsapp", "to": "+919130099484", "type": "text",
           "text": {"body": "hello there, how are you?"}}


def process_cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(base_url: str, count: int) -> None:
    with httpx.Client(base_url=base_url, headers={"Authorization": "Bearer t"}) as client:
        for _ in range(count):
            response = client.post("/v21.0/106540352242922/messages", json=MESSAGE)
            response.raise_for_status()


def measure(root: Path, requests: int, connections: int) -> float:
    """CPU ms per request of the fake in ``root``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.graph_api", "--port", "0"], cwd=root,
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 15)
        line = process.stdout.readline().strip() if ready else ""
        if not line.startswith("listening "):
            raise RuntimeError(f"fake did not start: {line!r}")
        base_url = line.removeprefix("listening ")
        drive(base_url, 50)  # warm-up: imports, first connection
        before = process_cpu_s(process.pid)
        per = requests // connections
        threads = [threading.Thread(target=drive, args=(base_url, per))
                   for _ in range(connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return (process_cpu_s(process.pid) - before) * 1000 / (per * connections)
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--root", type=Path, action="append",
                        help="checkout(s) to measure, in turn (default: this one)")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    for round_ in range(1, args.rounds + 1):
        for root in args.root or [ROOT]:
            cpu = measure(root.resolve(), args.requests, args.connections)
            print(f"round {round_}: {root}: fake-graph {cpu:.3f} CPU ms per request "
                  f"({args.requests} requests, {args.connections} connections)")


if __name__ == "__main__":
    main()
