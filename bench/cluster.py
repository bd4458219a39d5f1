"""Issue 14's measures: ingress req/s with more workers, on a 3-master cluster, and with WAIT 1.

Every run starts ``mecove api`` (six partitions, signed text webhooks) and loads it the way
``bench/ingress.py`` does (same generator, fixed connections, a distinct signed body per
request), in one process run so the ratios compare like with like:

* ``--workers`` 1, 2 and 4 against one Redis (the single-worker run is the baseline);
* one worker against a private cluster (three masters, three replicas, started here and
  removed afterwards) with ``MECOVE_REDIS_MIN_REPLICAS`` 0 and then 1 (a ``WAIT 1`` after each
  write), against the one-Redis single-worker run.

Then ``consume projector`` drains the streams of the one-Redis and the cluster single-worker
runs into fresh databases (events/s between the first and the last message row seen).

``python -m bench.cluster --seconds 5``
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from redis.asyncio import Redis, RedisCluster

from app.devtools.ports import free_port
from app.devtools.private_cluster import PrivateCluster
from app.platform.checkpoints import PROJECTOR
from app.platform.eventlog.entries import as_text, entry_position
from app.platform.eventlog.keys import Keys
from bench.figures import Figure
from bench.load_generators import LoadResult, load_generator_name, run_load
from bench.numbered_messages import APP_SECRET, WEBHOOK_PATH, signed_bodies, write_bodies_file
from bench.processes import (
    BenchError,
    ProcessSet,
    clean_env,
    mecove_command,
    wait_for_http,
    work_directory,
)
from bench.scratch_space import DEFAULT_ADMIN_DATABASE_URL, DEFAULT_REDIS_URL, ScratchSpace
from bench.standalone import run_standalone

PARTITIONS = 6
DRAIN_TIMEOUT_S = 120.0
FIRST_GUESS_RPS = 4_000  # sizes the bodies of the first run; later runs use the best so far


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    seconds: float = 5.0
    warmup_seconds: float = 1.0
    connections: int = 32
    senders: int = 1_000
    admin_database_url: str = DEFAULT_ADMIN_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL


@dataclass(frozen=True, slots=True)
class Setup:
    """One configuration of ``mecove api``: its name, worker count, Redis and WAIT replicas."""

    name: str
    workers: int
    on_cluster: bool
    min_replicas: int = 0


SETUPS = (
    Setup("1 worker, one Redis", 1, False),
    Setup("2 workers, one Redis", 2, False),
    Setup("4 workers, one Redis", 4, False),
    Setup("1 worker, cluster k=0", 1, True),
    Setup("1 worker, cluster k=1", 1, True, 1),
)


@dataclass(frozen=True, slots=True)
class Run:
    setup: Setup
    load: LoadResult
    landed: int  # entries added to the partition streams during the measured load
    prefix: str
    redis_url: str


class _Runner:
    def __init__(self, options: ClusterOptions, scratch: ScratchSpace, processes: ProcessSet,
                 database_url: str, cluster_url: str) -> None:
        self.options = options
        self.scratch = scratch
        self.processes = processes
        self.database_url = database_url
        self.cluster_url = cluster_url
        self.next_body = 0
        self.best_rps = FIRST_GUESS_RPS

    async def measure(self, setup: Setup) -> Run:
        """Start the api for ``setup``, warm it up, load it for ``seconds``, stop it."""
        port = free_port()
        prefix = self.scratch.key_prefix("cl")
        redis_url = self.cluster_url if setup.on_cluster else self.options.redis_url
        env = clean_env({
            "DATABASE_URL": self.database_url,
            "REDIS_URL": redis_url,
            "MECOVE_PORT": str(port),
            "MECOVE_KEY_PREFIX": prefix,
            "MECOVE_PARTITIONS": str(PARTITIONS),
            "MECOVE_REDIS_MIN_REPLICAS": str(setup.min_replicas),
            "WHATSAPP_APP_SECRET": APP_SECRET,
        })
        argv = mecove_command("api", "--host", "127.0.0.1", "--workers", str(setup.workers))
        service = await self.processes.start("api", argv, env)
        try:
            await wait_for_http(service, f"http://127.0.0.1:{port}/health")
            url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
            seconds, warmup = self.options.seconds, self.options.warmup_seconds
            await run_load(url, self.bodies(math.ceil(self.best_rps * warmup * 1.5)),
                           seconds=warmup, connections=self.options.connections)
            measured = self.bodies(math.ceil(self.best_rps * seconds * 2)
                                   + self.options.connections)
            before = await self.landed(redis_url, prefix)
            load = await run_load(url, measured, seconds=seconds,
                                  connections=self.options.connections)
            service.ensure_running()
            after = await self.landed(redis_url, prefix)
            self.best_rps = max(self.best_rps, math.ceil(load.requests_per_s))
            return Run(setup, load, after - before, prefix, redis_url)
        finally:
            await self.processes.stop(service)

    def bodies(self, count: int) -> Path:
        path = self.processes.log_dir.parent / "bodies"
        write_bodies_file(path, signed_bodies(self.scratch.tag, self.next_body, count,
                                              senders=self.options.senders))
        self.next_body += count
        return path

    async def drain(self, run: Run) -> Drain:
        """``consume projector`` on ``run``'s streams into a fresh database; the rate is taken
        between the first message row seen and every checkpoint at its stream's tail (polled), so
        start-up is not counted; the rate counts message rows (a new sender adds an event)."""
        tails = await self.tails(run.redis_url, run.prefix)
        database_url = await self.scratch.fresh_database("drain")
        env = clean_env({
            "DATABASE_URL": database_url,
            "REDIS_URL": run.redis_url,
            "MECOVE_KEY_PREFIX": run.prefix,
            "MECOVE_PARTITIONS": str(PARTITIONS),
            "MECOVE_CONSUMER_NAME": f"bench-projector-{run.prefix}",
        })
        service = await self.processes.start("projector", mecove_command("consume", "projector"),
                                             env)
        connection = await asyncpg.connect(database_url)
        try:
            first: tuple[float, int] | None = None
            deadline = time.perf_counter() + DRAIN_TIMEOUT_S
            while True:
                service.ensure_running()
                now = time.perf_counter()
                if now > deadline:
                    raise BenchError(f"projector did not reach the stream tails {tails} "
                                     f"within {DRAIN_TIMEOUT_S:g}s")
                rows = int(await connection.fetchval("SELECT count(*) FROM messages"))
                if rows and first is None:
                    first = (now, rows)
                if first is not None and await drained(connection, tails):
                    return Drain(rows - first[1], now - first[0])
                await asyncio.sleep(0.02)
        finally:
            await connection.close()
            await self.processes.stop(service)

    def client(self, redis_url: str) -> Redis | RedisCluster:
        return RedisCluster.from_url(redis_url) if redis_url == self.cluster_url \
            else Redis.from_url(redis_url)

    async def tails(self, redis_url: str, prefix: str) -> dict[int, tuple[int, int]]:
        """The last entry id of each partition's stream, as (ms, seq)."""
        redis = self.client(redis_url)
        try:
            keys = Keys(prefix, PARTITIONS)
            return {p: entry_position(as_text(
                (await redis.xrevrange(keys.stream(p), count=1))[0][0]))
                    for p in range(PARTITIONS)}
        finally:
            await redis.aclose()

    async def landed(self, redis_url: str, prefix: str) -> int:
        """Entries in the ``PARTITIONS`` streams under ``prefix``."""
        redis = self.client(redis_url)
        try:
            keys = Keys(prefix, PARTITIONS)
            return sum([int(await redis.xlen(keys.stream(p))) for p in range(PARTITIONS)])
        finally:
            await redis.aclose()


async def drained(connection: asyncpg.Connection, tails: dict[int, tuple[int, int]]) -> bool:
    """Whether the projector's checkpoint of every partition reached that stream's tail."""
    rows = await connection.fetch(
        "SELECT partition, last_ms, last_seq FROM projection_checkpoints WHERE projection = $1",
        PROJECTOR)
    seen = {int(r["partition"]): (int(r["last_ms"]), int(r["last_seq"])) for r in rows}
    return all(seen.get(p, (0, -1)) >= tail for p, tail in tails.items())


@dataclass(frozen=True, slots=True)
class Drain:
    events: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


RUN_HEADER = (f"{'setup':<24} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} "
              f"{'sock err':>8} {'landed':>8}")


def run_row(run: Run) -> str:
    load = run.load
    return (f"{run.setup.name:<24} {load.requests_per_s:>8,.0f} {load.p50_ms:>8.2f} "
            f"{load.p99_ms:>8.2f} {load.non2xx:>8} {load.socket_errors:>8} {run.landed:>8}")


def figures_from(runs: Sequence[Run], drains: Sequence[Drain]) -> list[Figure]:
    """Req/s of each setup against its baseline; WAIT 1 as microseconds added per request."""
    by_name = {run.setup.name: run for run in runs}
    base = by_name[SETUPS[0].name].load.requests_per_s
    cluster_k0 = by_name[SETUPS[3].name].load
    figures = [Figure(f"ingress req/s, {run.setup.name}", run.load.requests_per_s, "req/s",
                      base, SETUPS[0].name) for run in runs[1:4]]
    k1 = by_name[SETUPS[4].name].load
    figures.append(Figure(f"ingress req/s, {SETUPS[4].name}", k1.requests_per_s, "req/s",
                          cluster_k0.requests_per_s, SETUPS[3].name))
    # Closed loop: the p50 difference is the time WAIT 1 adds to one request.
    figures.append(Figure("WAIT 1: p50 added per request, cluster", k1.p50_ms - cluster_k0.p50_ms,
                          "ms"))
    figures.append(Figure("WAIT 1: p50 latency, cluster k=1", k1.p50_ms, "ms",
                          cluster_k0.p50_ms, "cluster k=0"))
    failures = sum(r.load.non2xx + r.load.socket_errors for r in runs)
    figures.append(Figure("non-2xx + socket errors (all runs)", float(failures), ""))
    single, on_cluster = drains
    figures.append(Figure("projector messages/s, cluster (6 partitions)", on_cluster.per_s,
                          "msg/s", single.per_s, "one Redis"))
    return figures


async def run_cluster_bench(options: ClusterOptions) -> list[Figure]:
    """Start a private cluster, measure every setup once, print each run; return the figures."""
    print(f"== cluster: {options.seconds:g}s per run after {options.warmup_seconds:g}s warm-up, "
          f"{options.connections} connections, {PARTITIONS} partitions")
    print(f"load generator: {load_generator_name()}")
    cluster = PrivateCluster()
    runs: list[Run] = []
    drains: list[Drain] = []
    try:
        await asyncio.to_thread(cluster.start)
        with work_directory("cluster") as work_dir:
            async with ScratchSpace(options.admin_database_url, options.redis_url,
                                    "cl") as scratch:
                async with ProcessSet(work_dir / "logs") as processes:
                    runner = _Runner(options, scratch, processes,
                                     await scratch.fresh_database("cluster"), cluster.url)
                    print(RUN_HEADER)
                    for setup in SETUPS:
                        run = await runner.measure(setup)
                        runs.append(run)
                        print(run_row(run), flush=True)
                    for run in (runs[0], runs[3]):
                        drain = await runner.drain(run)
                        drains.append(drain)
                        print(f"projector drain, {run.setup.name}: {drain.events} events in "
                              f"{drain.seconds:.2f}s = {drain.per_s:,.0f}/s", flush=True)
    finally:
        await asyncio.to_thread(cluster.destroy)
    return figures_from(runs, drains)


def add_arguments(parser: argparse.ArgumentParser, smoke: bool = False) -> None:
    defaults = ClusterOptions(seconds=1.0, warmup_seconds=0.5) if smoke else ClusterOptions()
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--warmup-seconds", type=float, default=defaults.warmup_seconds)
    parser.add_argument("--connections", type=int, default=defaults.connections)
    parser.add_argument("--senders", type=int, default=defaults.senders)


def options_from(args: argparse.Namespace, admin_url: str, redis_url: str) -> ClusterOptions:
    return ClusterOptions(seconds=args.seconds, warmup_seconds=args.warmup_seconds,
                          connections=args.connections, senders=args.senders,
                          admin_database_url=admin_url, redis_url=redis_url)


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone("cluster", __doc__, argv, add_arguments, options_from,
                          run_cluster_bench)


if __name__ == "__main__":
    raise SystemExit(main())
