"""Instructions per event of the projector's own process, under callgrind: ``prepare`` then
``handle`` of a drain's batches (rows built, keys asked and opened, COPY records encoded,
statements sent), with no Redis reading (``bench.read_instructions`` counts that part).

1. ``--users`` senders' sealed MessageReceived are appended as the ingress logs them
   (``bench.sealed_log``, keys issued along the way), ``--warm-up`` batches plus ``--batches``
   batches of ``--batch`` events, into a fresh database's projector.
2. A child process, under ``valgrind --tool=callgrind``, reads the log back, projects the
   warm-up batches (the keys and first rows), then the counters are zeroed
   (``callgrind_control -z``), it projects the measured batches (``prepare`` the batch, then
   ``handle`` it, as ``bench.projector_trickle`` does) and they are dumped (``-d``).
   PostgreSQL's instructions are not counted; ``prepare``'s timeout is lifted (see ``child``).
   With ``--no-valgrind``: the child's CPU only.
   The child's peak RSS is printed too (it holds the whole log: compare two versions).

``python -m bench.projector_instructions --batches 4 --batch 5000 --users 10000``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from tempfile import TemporaryDirectory

from app.platform.eventlog.content_keys import master_keys_for
from app.platform.eventlog.keys import Keys
from app.platform.runtime.handler import Delivery
from bench.numbered_messages import received_events
from bench.scratch_space import DEFAULT_ADMIN_DATABASE_URL, DEFAULT_REDIS_URL, ScratchSpace
from bench.sealed_log import append_sealed, logged_entries
from bench.server_instructions import add_child_options, counted_child
from projections import projector as projector_module
from projections.projector import Projector


async def _project(projector: Projector, deliveries: list[Delivery], batch: int) -> None:
    for start in range(0, len(deliveries), batch):
        chunk = deliveries[start:start + batch]
        await projector.prepare(chunk)
        await projector.handle(chunk)


async def child(args: argparse.Namespace) -> None:
    """Project the warm-up batches, wait for a line, project the measured ones, report."""
    # A page of 10,000 entries takes longer than redis-py's default to read under callgrind.
    slow = f"{args.redis_url}{'&' if '?' in args.redis_url else '?'}socket_timeout=600"
    entries = await logged_entries(slow, Keys(args.prefix, 1).stream(0))
    deliveries = [Delivery(0, e.entry_id, e.event, 1, body=e.body) for e in entries]
    del entries
    warm = len(deliveries) - args.batches * args.batch
    # Under callgrind a batch's key query in ``prepare`` can outlast its timeout, and the
    # batch is then built again in ``handle``: counted twice, as often as the machine is busy.
    projector_module.PREPARE_TIMEOUT_S = 3_600
    # The parent's master key (``clean_env`` passes it): the one the log was sealed with.
    master = master_keys_for(os.environ["MECOVE_MASTER_KEY"], None)
    projector = Projector(args.database_url, args.prefix, master)
    assert await projector.acquire_partition(0, asyncio.Event())
    try:
        await _project(projector, deliveries[:warm], args.batch)
        gc.collect()
        gc.freeze()  # the log held for the run is not the projector's garbage
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        started = time.process_time()
        await _project(projector, deliveries[warm:], args.batch)
        cpu_s = time.process_time() - started
        max_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"entries": len(deliveries) - warm, "cpu_s": cpu_s,
                          "max_rss_kb": max_rss_kb}), flush=True)
        await asyncio.to_thread(sys.stdin.readline)
    finally:
        await projector.close()


async def measure(args: argparse.Namespace) -> None:
    async with ScratchSpace(DEFAULT_ADMIN_DATABASE_URL, args.redis_url, "pi") as scratch:
        prefix = scratch.key_prefix("pi")
        measured = args.batches * args.batch
        warm = args.warm_up * args.batch
        events = received_events(scratch.tag, 0, warm + measured, args.users)
        await append_sealed(args.redis_url, Keys(prefix, 1), events, 500)
        database_url = await scratch.fresh_database("instructions")
        try:
            with TemporaryDirectory(prefix="projector-instructions-") as folder:
                out = (args.keep or Path(folder)) / "projector.callgrind"
                argv = [sys.executable, "-m", "bench.projector_instructions", "--child",
                        "--redis-url", args.redis_url, "--database-url", database_url,
                        "--prefix", prefix, "--batches", str(args.batches),
                        "--batch", str(args.batch)]
                report, instructions = await counted_child(
                    argv, None if args.no_valgrind else out)
                entries = report["entries"]
                line = (f"{entries:,} events in batches of {args.batch} of {args.users} users: "
                        f"{1e6 * report['cpu_s'] / entries:.2f} us CPU per event, "
                        f"max RSS {report['max_rss_kb'] / 1024:.0f} MB (the log held too)")
                if not args.no_valgrind:
                    line += f", {instructions // entries:,} instructions per event"
                print(line)
        finally:
            await scratch.drop_database(database_url)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--warm-up", type=int, default=2, help="batches before the counting")
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--users", type=int, default=10_000)
    add_child_options(parser, "measured batches")
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    asyncio.run(child(args) if args.child else measure(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
