"""The ingress's latency tail and what the garbage collector does meanwhile.

``mecove api`` (one worker, real Redis) runs under ``bench.servers.gc_timed_api``, which times
every collection (``gc.callbacks``: wall time, and CPU time of the collecting thread, which
does not grow when other work shares the cores). wrk loads it as ``bench.ingress`` does
(closed loop, ``--connections``, a distinct signed body per request, ``--senders`` users);
the report covers the measured part only, per generation, next to the run's p50/p99 and the
api's CPU per request, max RSS and loaded modules::

    python -m bench.ingress_tail --seconds 10 --rounds 2

A full collection (generation 2) stalls every request in flight for as long as it takes:
its CPU time against the p99 tells whether the tail is the collector's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Sequence

import msgspec

from app.devtools.ports import free_port
from bench.load_generators import LoadResult, run_load
from bench.numbered_messages import APP_SECRET, WEBHOOK_PATH, signed_bodies, write_bodies_file
from bench.processes import ProcessSet, clean_env, cpu_seconds, wait_for_http, work_directory
from bench.scratch_space import DEFAULT_ADMIN_DATABASE_URL, DEFAULT_REDIS_URL, delete_matching_at
from bench.servers.gc_timed_api import Collection, GcReport

BODIES_PER_SECOND = 8_000  # more than one worker answers: no body is sent twice


def generation_lines(collections: Sequence[Collection]) -> list[str]:
    """One line per generation: count, CPU total / p50 / max, wall max, objects collected."""
    lines = []
    for generation in (0, 1, 2):
        found = [c for c in collections if c.generation == generation]
        if not found:
            lines.append(f"  gen{generation}: none")
            continue
        cpu = sorted(c.cpu_ms for c in found)
        lines.append(
            f"  gen{generation}: {len(found):>5} collections, CPU total {sum(cpu):7.1f} ms, "
            f"p50 {cpu[len(cpu) // 2]:6.2f} ms, max {cpu[-1]:6.2f} ms; wall max "
            f"{max(c.wall_ms for c in found):6.1f} ms; {sum(c.collected for c in found)} "
            "objects collected")
    return lines


async def measure(args: argparse.Namespace, round_: int) -> None:
    port = free_port()
    prefix = f"bench-tail-{uuid.uuid4().hex[:8]}"
    env = clean_env({"DATABASE_URL": args.database_url, "REDIS_URL": args.redis_url,
                     "MECOVE_PORT": str(port), "MECOVE_KEY_PREFIX": prefix,
                     "WHATSAPP_APP_SECRET": APP_SECRET})
    url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    try:
        with work_directory("tail") as folder:
            report_path = folder / "gc.json"
            warm_up, measured = folder / "warm-up.bodies", folder / "measured.bodies"
            count = int(BODIES_PER_SECOND * args.warmup_seconds)
            write_bodies_file(warm_up, signed_bodies(prefix[-8:], 0, count,
                                                     senders=args.senders))
            write_bodies_file(measured, signed_bodies(
                prefix[-8:], count, int(BODIES_PER_SECOND * args.seconds),
                senders=args.senders))
            async with ProcessSet(folder / "logs") as processes:
                argv = [sys.executable, "-m", "bench.servers.gc_timed_api", str(report_path),
                        "api", "--host", "127.0.0.1"]
                api = await processes.start("api", argv, env)
                await wait_for_http(api, f"http://127.0.0.1:{port}/health")
                await run_load(url, warm_up, seconds=args.warmup_seconds,
                               connections=args.connections)
                os.kill(api.pid, signal.SIGUSR1)  # the measured part starts
                before = cpu_seconds(api.pid) or 0.0
                load = await run_load(url, measured, seconds=args.seconds,
                                      connections=args.connections)
                cpu = (cpu_seconds(api.pid) or 0.0) - before
                await asyncio.sleep(1.0)  # the next report written
                api.ensure_running()
                report = msgspec.json.decode(report_path.read_bytes(), type=GcReport)
        print_round(round_, load, cpu, report)
    finally:
        await delete_matching_at(args.redis_url, f"{prefix}:*")


def print_round(round_: int, load: LoadResult, cpu_s: float, report: GcReport) -> None:
    requests = max(load.requests, 1)
    print(f"round {round_}: {load.requests_per_s:,.0f} req/s, p50 {load.p50_ms:.2f} ms, p99 "
          f"{load.p99_ms:.2f} ms, {cpu_s / requests * 1e6:.0f} us CPU/request, "
          f"non-2xx {load.non2xx}; api max RSS {report.max_rss_kb / 1024:.1f} MB, "
          f"{report.modules} modules, {report.frozen} objects frozen", flush=True)
    measured = [c for c in report.collections if c.measured]
    start_up = [c for c in report.collections if not c.measured and c.generation == 2]
    print(f"  collections while measured ({len(start_up)} full ones before, at start-up and "
          "warm-up):")
    print("\n".join(generation_lines(measured)), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--senders", type=int, default=1_000)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--database-url", default=DEFAULT_ADMIN_DATABASE_URL,
                        help="the ingress does not query it while answering webhooks")
    args = parser.parse_args(argv)
    for round_ in range(1, args.rounds + 1):
        asyncio.run(measure(args, round_))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
