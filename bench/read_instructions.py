"""Instructions per event of the consumer runtime's reading path, under callgrind.

What the projector's process spends per event before its handler sees it: XREADGROUP and its
reply's parse, turning entries into ``Delivery`` (decoding each event), the acknowledgement.
The handler here does nothing, so PostgreSQL, the rows and the content opening are left out.

1. Two streams of sealed MessageReceived events are appended as the ingress logs them
   (``bench.sealed_log``): a warm-up one of ``--warm-up`` events and the measured one of
   ``--events``.
2. A child process runs the product's ``OrderedRuntime`` (the projector's runtime, batch
   ``--batch-size``, no linger) with a handler that only counts, under ``valgrind
   --tool=callgrind``: it drains the warm-up stream, then the counters are zeroed
   (``callgrind_control -z``), it drains the measured stream, and they are dumped (``-d``).
   With ``--no-valgrind`` the child's CPU seconds for the measured drain are printed instead.

``python -m bench.read_instructions --events 20000``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from tempfile import TemporaryDirectory

import uvloop

from app.platform.eventlog.keys import Keys
from app.platform.redis_client import connect
from app.platform.runtime.handler import Delivery
from app.platform.runtime.ordered_runtime import OrderedRuntime
from app.platform.runtime.process import YOUNG_THRESHOLD
from app.platform.runtime.retry_policy import RetryPolicy
from app.platform.start_up_objects import start_up_objects_frozen
from bench.numbered_messages import received_events
from bench.scratch_space import DEFAULT_REDIS_URL, ScratchSpace
from bench.sealed_log import append_sealed
from bench.server_instructions import add_child_options, counted_child

GROUP = "read-bench"
APPEND_BATCH = 5_000
# The reader's socket timeout is the block plus 5 s: under callgrind a reply of 5,000 entries
# takes longer than that to read, and a timed-out read is adopted again (counted twice).
BLOCK_MS = 60_000


class CountingHandler:
    """An ordered handler that only counts what it is handed, and stops the runtime once it
    has seen ``expected`` deliveries."""

    group = GROUP
    min_batch_size = 1

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.seen = 0
        self.runtime: OrderedRuntime | None = None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def acquire_partition(self, partition: int, stop: asyncio.Event) -> bool:
        return True

    async def release_partition(self, partition: int) -> None:
        return None

    async def prepare(self, deliveries: list[Delivery]) -> None:
        return None

    async def handle(self, deliveries: list[Delivery]) -> list[BaseException | None]:
        self.seen += len(deliveries)
        if self.seen >= self.expected and self.runtime is not None:
            self.runtime.request_stop()
        return [None] * len(deliveries)

    async def on_dead_letter(self, delivery: Delivery, error: BaseException | str) -> None:
        return None


async def drain(redis_url: str, prefix: str, batch_size: int) -> int:
    """Run the ordered runtime over ``prefix``'s one stream until it has handled every entry."""
    redis = await connect(redis_url)
    keys = Keys(prefix, 1)
    try:
        handler = CountingHandler(await redis.xlen(keys.stream(0)))
        runtime = OrderedRuntime(
            linger_ms=0, redis=redis, redis_url=redis_url, keys=keys, handler=handler,
            consumer_name="bench", policy=RetryPolicy(max_attempts=3, base_delay_ms=1000),
            batch_size=batch_size, block_ms=BLOCK_MS)
        handler.runtime = runtime
        await runtime.run()
        return handler.seen
    finally:
        await redis.aclose()


class GcTime:
    """CPU seconds spent in the garbage collector, summed from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.count = 0
        self._started = 0.0

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started
            self.count += 1


async def child(args: argparse.Namespace) -> None:
    """Drain the warm-up stream, wait for a line, drain the measured one, report, wait."""
    await drain(args.redis_url, args.warm_prefix, args.batch_size)
    with start_up_objects_frozen(YOUNG_THRESHOLD):  # as ``run_until_signalled`` runs them
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        collecting = GcTime()
        gc.callbacks.append(collecting.on_gc)
        started = time.process_time()
        seen = await drain(args.redis_url, args.prefix, args.batch_size)
        cpu_s = time.process_time() - started
        gc.callbacks.remove(collecting.on_gc)
        print(json.dumps({"entries": seen, "cpu_s": cpu_s, "gc_s": collecting.seconds,
                          "collections": collecting.count}), flush=True)
    await asyncio.to_thread(sys.stdin.readline)


async def measure(args: argparse.Namespace) -> None:
    async with ScratchSpace("", args.redis_url, "rd") as scratch:
        prefixes = {}
        for label, count in (("warm", args.warm_up), ("measured", args.events)):
            prefixes[label] = scratch.key_prefix(label[0])
            events = received_events(scratch.tag + label[0], 0, count, args.users)
            await append_sealed(args.redis_url, Keys(prefixes[label], 1), events, APPEND_BATCH)
        with TemporaryDirectory(prefix="read-instructions-") as folder:
            out = (args.keep or Path(folder)) / "read.callgrind"
            argv = [sys.executable, "-m", "bench.read_instructions", "--child",
                    "--redis-url", args.redis_url, "--batch-size", str(args.batch_size),
                    "--warm-prefix", prefixes["warm"], "--prefix", prefixes["measured"]]
            report, instructions = await counted_child(argv, None if args.no_valgrind else out)
            entries = report["entries"]
            line = (f"{entries:,} entries (batch {args.batch_size}): "
                    f"{1e6 * report['cpu_s'] / entries:.2f} us CPU per entry, of it "
                    f"{1e6 * report['gc_s'] / entries:.2f} us in {report['collections']:,} "
                    f"garbage collections")
            if not args.no_valgrind:
                line += f", {instructions // entries:,} instructions per entry"
            print(line)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--warm-up", type=int, default=2_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=5_000)
    add_child_options(parser, "measured drain")
    parser.add_argument("--warm-prefix", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    uvloop.run(child(args) if args.child else measure(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
