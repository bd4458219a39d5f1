"""PostgreSQL backend CPU per event, by statement kind, of the projector's drain batches.

``bench.projector_trickle --from-start`` (the product's ``Projector``, ``prepare`` then
``handle`` per batch, no Redis reading), with every asyncpg call the projector makes timed by
the CPU its backend spent over it (``/proc/<pid>/schedstat``, ns), grouped by the statement's
kind (its first words and table). pg_stat_statements needs a server restart
(``shared_preload_libraries``); this works on a shared server. One call at a time (the
trickle does not overlap batches), so each delta is that statement's own.

    python -m bench.pg_statements --batches 20 --batch 5000 --users 10000
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg

from bench import projector_trickle

_totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])  # type: ignore[arg-type]


def _backend_ns(pid: int) -> int:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def _kind(method: str, args: tuple[Any, ...]) -> str:
    if method == "copy_records_to_table":
        return f"COPY {args[0]}"
    sql = re.sub(r"savepoint_\w+", "savepoint", " ".join(str(args[0]).split()))
    if sql.startswith("WITH w"):
        return "WITH … (few rows) " + re.sub(r"\$\d+", "$", sql[-60:])
    target = re.search(r"\b(INTO|UPDATE|FROM)\s+\"?(\w+)", sql)
    head = " ".join(sql.split()[:2])
    return f"{head} … {target.group(2)}" if target else sql[:60]


def _timed(method: str, original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def call(self: asyncpg.Connection, *args: Any, **kwargs: Any) -> Any:
        pid = self.get_server_pid()
        before, wall = _backend_ns(pid), time.perf_counter()
        try:
            return await original(self, *args, **kwargs)
        finally:
            entry = _totals[_kind(method, args)]
            entry[0] += (_backend_ns(pid) - before) / 1e9
            entry[1] += time.perf_counter() - wall
            entry[2] += 1
    return call


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--users", type=int, default=10000)
    args = parser.parse_args(argv)
    for method in ("execute", "fetch", "fetchrow", "fetchval", "copy_records_to_table"):
        setattr(asyncpg.Connection, method, _timed(method, getattr(asyncpg.Connection, method)))
    asyncio.run(projector_trickle.run(args.batches, args.batch, args.users, True, True))
    events = args.batches * args.batch
    print(f"PostgreSQL backend CPU per event by statement ({events:,} events):")
    total = 0.0
    for kind, (cpu, wall, calls) in sorted(_totals.items(), key=lambda kv: -kv[1][0]):
        total += cpu
        print(f"  {1e6 * cpu / events:6.2f} us cpu {1e6 * wall / events:6.2f} us wall "
              f"{calls:5d} calls  {kind}")
    print(f"  {1e6 * total / events:6.2f} us cpu in all")


if __name__ == "__main__":
    main()
