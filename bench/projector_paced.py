"""Projector CPU per event at a steady low rate: the real ``mecove consume projector``
process (Redis reads, read-ahead, linger) fed sealed messages of returning users at
``--rate`` per second, for each ``--linger-ms`` value in turn (alternating over ``--rounds``,
so the values share the machine's window). Prints per run: CPU per event of the projector
process and of its PostgreSQL backends (/proc), and the batches it handled (its /metrics).

    python -m bench.projector_paced --rate 200 --seconds 10 --linger-ms 0 10 20 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

import httpx
from redis.asyncio import Redis

from app.devtools.ports import free_port
from app.platform.eventlog.entries import decode_event
from app.platform.eventlog.keys import Keys
from bench.e2e import projector_batches
from bench.numbered_messages import received_events
from bench.processes import ProcessSet, clean_env, cpu_seconds, mecove_command, work_directory
from bench.projector_trickle import database_backends
from bench.scratch_space import DEFAULT_ADMIN_DATABASE_URL, DEFAULT_REDIS_URL, ScratchSpace
from bench.sealed_log import append_sealed
from schema.events import UserKeyIssued

USERS = 50


async def _processed_reaches(port: int, count: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (await projector_batches(port))[1] < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the projector did not handle {count} events in {timeout_s}s")
        await asyncio.sleep(0.05)


async def _metrics_up(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await projector_batches(port)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def one_run(scratch: ScratchSpace, processes: ProcessSet, linger_ms: int, rate: float,
                  seconds: float) -> None:
    # The events, sealed, appended to a staging stream, then copied at the pace wanted.
    staging = Keys(scratch.key_prefix("pps"), 1)
    count = round(rate * seconds)
    await append_sealed(DEFAULT_REDIS_URL, staging,
                        received_events(scratch.tag, 0, count + USERS, USERS), 500)
    redis = Redis.from_url(DEFAULT_REDIS_URL)
    keys = Keys(scratch.key_prefix("pp"), 1)
    database_url = await scratch.fresh_database("paced")
    port = free_port()
    try:
        fields = [f for _id, f in await redis.xrange(staging.stream(0))]
        # Keys and every user's first message at once (the warm-up), the rest paced.
        first = USERS + 1 + max(i for i, f in enumerate(fields)
                                if isinstance(decode_event(f), UserKeyIssued))
        async with redis.pipeline(transaction=False) as pipe:
            for entry in fields[:first]:
                pipe.xadd(keys.stream(0), entry)
            await pipe.execute()
        env = clean_env({"DATABASE_URL": database_url, "REDIS_URL": DEFAULT_REDIS_URL,
                         "MECOVE_KEY_PREFIX": keys.prefix, "MECOVE_METRICS_PORT": str(port),
                         "MECOVE_PROJECTOR_LINGER_MS": str(linger_ms)})
        service = await processes.start(f"projector-{linger_ms}",
                                        mecove_command("consume", "projector"), env)
        try:
            await _metrics_up(port)
            await _processed_reaches(port, first)
            paced = fields[first:]
            before_batches, before_events = await projector_batches(port)
            backends_before = {p: cpu_seconds(p) or 0.0
                               for p in await database_backends(database_url)}
            cpu_before = cpu_seconds(service.pid) or 0.0
            start = time.perf_counter()
            for index, entry in enumerate(paced):
                delay = start + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await redis.xadd(keys.stream(0), entry)
            await _processed_reaches(port, before_events + len(paced))
            cpu = (cpu_seconds(service.pid) or 0.0) - cpu_before
            backend = sum((cpu_seconds(p) or 0.0) - backends_before.get(p, 0.0)
                          for p in await database_backends(database_url))
            batches, events = await projector_batches(port)
        finally:
            await processes.stop(service)
        batches -= before_batches
        events -= before_events
        print(f"linger {linger_ms} ms: {events} events at {rate:.0f}/s in {batches} batches "
              f"({events / max(batches, 1):.1f} per batch); CPU per event "
              f"{1e6 * cpu / events:.0f} us projector + {1e6 * backend / events:.0f} us "
              f"PostgreSQL", flush=True)
    finally:
        await redis.delete(staging.stream(0), keys.stream(0))
        await redis.aclose()
        await scratch.drop_database(database_url)


async def run(rate: float, seconds: float, lingers: Sequence[int], rounds: int) -> None:
    async with ScratchSpace(DEFAULT_ADMIN_DATABASE_URL, DEFAULT_REDIS_URL, "pp") as scratch:
        with work_directory("paced") as logs:
            async with ProcessSet(logs) as processes:
                for _round in range(rounds):
                    for linger in lingers:
                        await one_run(scratch, processes, linger, rate, seconds)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--linger-ms", type=int, nargs="+", default=[0, 10])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    asyncio.run(run(args.rate, args.seconds, args.linger_ms, args.rounds))


if __name__ == "__main__":
    main()
