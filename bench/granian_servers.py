"""Bare Litestar and the ingress under uvicorn and under granian, in one window: a diagnostic.

Each of the four (server, target) pairs runs one worker; the same closed-loop load as
``bench.ingress`` (``--connections`` connections, a distinct signed body per request) for
``--seconds`` after a warm-up. CPU is that of the server's whole process tree (granian runs its
worker as a child process), user + system, from /proc. granian is not a dependency of
MeCove: ``pip install granian`` first; ``mecove api`` stays on uvicorn::

    python -m bench.granian_servers --seconds 10 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from app.devtools.ports import free_port
from bench.load_generators import run_load
from bench.numbered_messages import APP_SECRET, WEBHOOK_PATH, signed_bodies, write_bodies_file
from bench.processes import (
    ProcessSet,
    bare_litestar_command,
    clean_env,
    cpu_seconds,
    mecove_command,
    wait_for_http,
    work_directory,
)
from bench.scratch_space import DEFAULT_ADMIN_DATABASE_URL, DEFAULT_REDIS_URL, delete_matching_at

TARGETS = {  # target -> its ASGI factory, for granian
    "bare": "bench.servers.bare_litestar:create_bare_app",
    "ingress": "app.ingress.app_factory:create_app_from_environment",
}


def _tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants still running."""
    total = cpu_seconds(pid) or 0.0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        total += sum(_tree_cpu(int(child)) for child in children)
    return total


def _argv(server: str, target: str, port: int) -> list[str]:
    if server == "uvicorn":
        return (mecove_command("api", "--host", "127.0.0.1") if target == "ingress"
                else bare_litestar_command(port))
    granian = shutil.which("granian") or str(Path(sys.executable).with_name("granian"))
    return [granian, "--interface", "asgi", "--factory", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1", "--loop", "uvloop", "--no-ws",
            "--log-level", "warning", "--no-access-log", TARGETS[target]]


async def _run(server: str, target: str, args: argparse.Namespace, folder: Path,
               tag: str, start: int) -> tuple[float, float]:
    """req/s and CPU µs per request of one run."""
    port = free_port()
    prefix = f"bench-granian-{uuid.uuid4().hex[:8]}"
    env = clean_env({"DATABASE_URL": args.database_url, "REDIS_URL": args.redis_url,
                     "MECOVE_PORT": str(port), "MECOVE_KEY_PREFIX": prefix,
                     "WHATSAPP_APP_SECRET": APP_SECRET})
    warm_n = math.ceil(args.expected_rps * 2 * 1.5)
    run_n = math.ceil(args.expected_rps * args.seconds * 1.5)
    warm_file, run_file = folder / f"{tag}.warm", folder / f"{tag}.run"
    write_bodies_file(warm_file, signed_bodies(tag, start, warm_n, senders=args.senders))
    write_bodies_file(run_file, signed_bodies(tag, start + warm_n, run_n, senders=args.senders))
    url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    try:
        async with ProcessSet(folder) as processes:
            service = await processes.start(f"{server}-{target}", _argv(server, target, port),
                                            env)
            await wait_for_http(service, f"http://127.0.0.1:{port}/health")
            await run_load(url, warm_file, seconds=2, connections=args.connections)
            before = _tree_cpu(service.pid)
            load = await run_load(url, run_file, seconds=args.seconds,
                                  connections=args.connections)
            cpu = _tree_cpu(service.pid) - before
            service.ensure_running()
            if load.non2xx or load.socket_errors:
                raise RuntimeError(f"{server}/{target}: {load.non2xx} non-2xx, "
                                   f"{load.socket_errors} socket errors")
            return load.requests_per_s, cpu / load.requests * 1e6
    finally:
        await delete_matching_at(args.redis_url, f"{prefix}:*")


async def measure(args: argparse.Namespace) -> None:
    tag = uuid.uuid4().hex[:8]
    start = 0
    with work_directory("granian") as folder:
        for round_ in range(1, args.rounds + 1):
            for server in ("uvicorn", "granian"):
                for target in ("bare", "ingress"):
                    rps, cpu_us = await _run(server, target, args, folder, tag, start)
                    start += 10_000_000
                    print(f"round {round_} {server:<8} {target:<8} {rps:>8,.0f} req/s "
                          f"{cpu_us:>6,.0f} us CPU per request", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--expected-rps", type=float, default=8_000.0,
                        help="sizes the body files (bodies repeat when they run out)")
    parser.add_argument("--senders", type=int, default=500)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--database-url", default=DEFAULT_ADMIN_DATABASE_URL)
    args = parser.parse_args(argv)
    asyncio.run(measure(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
