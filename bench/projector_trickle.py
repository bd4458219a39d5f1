"""Projector CPU per small batch: what a projector that keeps up pays per event.

At a low rate each XREADGROUP returns one or a few entries, so a batch's fixed costs (its
transaction, checkpoint, key lookups, one statement or COPY per kind of row) are paid per
event. This drives the product's ``Projector`` in this process, the way the ordered runtime
does (``prepare`` the batch, then ``handle`` it), over sealed messages of returning users
(their keys issued and projected first), ``--batch`` entries at a time, and prints CPU per
batch: this process (``time.process_time``: the projector's work, no Redis reading) and its
PostgreSQL backends (/proc). CPU time, not wall time: it holds on a shared machine.

    python -m bench.projector_trickle --batches 400 --batch 1
    python -m bench.projector_trickle --batches 20 --batch 5000 --users 10000 --from-start

The second: a drain's batches one after the other (no overlap, no Redis reading).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Sequence

import asyncpg

from app.platform.eventlog.content_keys import master_keys_for
from app.platform.eventlog.keys import Keys
from app.platform.runtime.handler import Delivery
from bench.numbered_messages import received_events
from bench.processes import cpu_seconds
from bench.scratch_space import DEFAULT_ADMIN_DATABASE_URL, DEFAULT_REDIS_URL, ScratchSpace
from bench.sealed_log import BENCH_MASTER_KEY, append_sealed, logged_entries
from projections.projector import Projector
from schema.events import UserKeyIssued


async def database_backends(database_url: str) -> list[int]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()")
        return [int(r["pid"]) for r in rows]
    finally:
        await connection.close()


async def run(batches: int, batch: int, users: int = 50, from_start: bool = False,
              freeze: bool = False) -> None:
    async with ScratchSpace(DEFAULT_ADMIN_DATABASE_URL, DEFAULT_REDIS_URL, "pt") as scratch:
        prefix = scratch.key_prefix("pt")
        keys = Keys(prefix, 1)
        events = received_events(scratch.tag, 0, batches * batch + users, users)
        await append_sealed(DEFAULT_REDIS_URL, keys, events, 500)
        entries = await logged_entries(DEFAULT_REDIS_URL, keys.stream(0))
        deliveries = [Delivery(0, e.entry_id, e.event, 1, body=e.body) for e in entries]
        database_url = await scratch.fresh_database("trickle")
        projector = Projector(database_url, prefix, master_keys_for(BENCH_MASTER_KEY, None))
        try:
            assert await projector.acquire_partition(0, asyncio.Event())
            rest = deliveries
            if not from_start:  # keys and first messages projected: the users return
                first = 1 + max(i for i, d in enumerate(deliveries)
                                if isinstance(d.event, UserKeyIssued))
                await projector.handle(deliveries[:first])
                rest = deliveries[first:]
            if freeze:  # the set-up's entries, held to the end, are left out of collections
                gc.collect()
                gc.freeze()
            before = {p: cpu_seconds(p) or 0.0 for p in await database_backends(database_url)}
            cpu_before = time.process_time()
            done = 0
            for start in range(0, len(rest), batch):
                chunk = rest[start:start + batch]
                await projector.prepare(chunk)
                await projector.handle(chunk)
                done += 1
            cpu = time.process_time() - cpu_before
            # Backends opened meanwhile (the key reader) count from zero.
            backend = sum((cpu_seconds(p) or 0.0) - before.get(p, 0.0)
                          for p in await database_backends(database_url))
        finally:
            await projector.close()
            await scratch.drop_database(database_url)
            gc.unfreeze()
    whose = "users, keys issued along the way" if from_start else "returning users"
    print(f"projector, {done} batches of {batch} sealed message(s) of {users} {whose}: "
          f"CPU per batch {1e6 * cpu / done:.0f} us projector + {1e6 * backend / done:.0f} us "
          f"PostgreSQL")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--from-start", action="store_true",
                        help="measure from the first entry (as a drain: keys issued on the way)")
    parser.add_argument("--freeze", action="store_true",
                        help="gc.freeze() the set-up before measuring: without it the run's "
                             "full collections walk every entry the bench holds (a process "
                             "that reads its batches does not hold them), and whether one "
                             "falls in the measured part moves the figure by ~15 %%")
    args = parser.parse_args(argv)
    asyncio.run(run(args.batches, args.batch, args.users, args.from_start, args.freeze))


if __name__ == "__main__":
    main()
