"""Replay over one drained database, again and again, alternating checkouts (A/B in one window).

The set-up of ``bench.projector`` (N sealed MessageReceived events of ``--users`` senders, each
user's UserKeyIssued first, drained by ``mecove consume projector``), then ``mecove replay``
``--rounds`` times per checkout, the checkouts taking turns. Replay swaps in tables equal to
the ones it replaced, so every run starts from the same state. Each checkout is a directory
holding ``app/`` (say a ``git worktree`` of the base commit); it goes first on PYTHONPATH;
``PATH::ARGS`` adds arguments to its ``mecove replay``.
Printed per run: events/s as replay reports it, CPU per event of the replay process (start-up
included) and of its PostgreSQL backends, and at the end the mean CPU per checkout.

``python -m bench.replay_ab --events 100000 --checkout /path/to/base --checkout .``
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from app.platform.eventlog.entries import entry_position
from app.platform.eventlog.keys import Keys
from bench.numbered_messages import received_events
from bench.processes import (
    BenchError,
    ProcessSet,
    clean_env,
    mecove_command,
    py_spy_path,
    work_directory,
)
from bench.projector import (
    APPEND_BATCH,
    POLL_S,
    ProjectorOptions,
    _backend_cpu_by_pid,
    drain_with_projector,
)
from bench.scratch_space import DEFAULT_ADMIN_DATABASE_URL, DEFAULT_REDIS_URL, ScratchSpace
from bench.sealed_log import append_sealed, logged_entries
from schema.events import MessageReceived


async def _one_replay(processes: ProcessSet, variant: str, database_url: str, redis_url: str,
                      prefix: str, profile: Path | None = None
                      ) -> tuple[float, float, float, float]:
    """(events, seconds as replay reports them, process CPU s, backends' CPU s)."""
    checkout, _, args = variant.partition("::")
    env = clean_env({"DATABASE_URL": database_url, "REDIS_URL": redis_url,
                     "MECOVE_KEY_PREFIX": prefix})
    env["PYTHONPATH"] = f"{checkout}:{env['PYTHONPATH']}"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    service = await processes.start("replay", mecove_command("replay", *args.split()), env)
    spy = None
    if profile is not None:  # the worker processes too
        spy = await processes.start("py-spy", [
            py_spy_path(), "record", "--pid", str(service.pid), "--subprocesses", "--output",
            str(profile), "--rate", "200", "--format", "raw"], clean_env({}))
    backends: dict[int, float] = {}
    watcher = await asyncpg.connect(database_url)
    try:
        while service.running():
            await _backend_cpu_by_pid(watcher, backends)
            await asyncio.sleep(POLL_S * 5)
    finally:
        await watcher.close()
    code = await service.process.wait()
    if spy is not None:
        await spy.process.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    await processes.stop(service)
    if code != 0:
        raise BenchError(f"replay exited with {code}:\n{service.log_tail()}")
    found = re.search(r"applied (\d+) events in ([0-9.]+)s", service.log_path.read_text())
    if found is None:
        raise BenchError(f"replay printed no figure:\n{service.log_tail()}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return float(found.group(1)), float(found.group(2)), cpu, sum(backends.values())


async def run(events: int, users: int, rounds: int, variants: Sequence[str],
              py_spy: Path | None = None) -> None:
    options = ProjectorOptions(events=events, users=users, rounds=1)
    with work_directory("replay_ab") as work_dir:
        async with ScratchSpace(DEFAULT_ADMIN_DATABASE_URL, DEFAULT_REDIS_URL, "ra") as scratch:
            async with ProcessSet(work_dir / "logs") as processes:
                prefix = scratch.key_prefix("ra")
                stream = Keys(prefix, 1).stream(0)
                made = await asyncio.to_thread(received_events, scratch.tag, 0, events, users)
                await append_sealed(DEFAULT_REDIS_URL, Keys(prefix, 1), made, APPEND_BATCH)
                entries = await logged_entries(DEFAULT_REDIS_URL, stream)
                positions = [entry_position(e.entry_id) for e in entries
                             if isinstance(e.event, MessageReceived)]
                _, database_url = await drain_with_projector(
                    scratch, processes, options, prefix, positions)
                cpu: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
                for round_ in range(1, rounds + 1):
                    for number, variant in enumerate(variants):
                        n, seconds, own, backend = await _one_replay(
                            processes, variant, database_url, DEFAULT_REDIS_URL, prefix,
                            py_spy / f"replay-{round_}-{number}.txt" if py_spy else None)
                        cpu[variant].append((1e6 * own / n, 1e6 * backend / n))
                        print(f"round {round_} {variant}: {n / seconds:,.0f} events/s "
                              f"({n:,.0f} in {seconds:.2f}s); CPU per event "
                              f"{1e6 * own / n:.1f} us replay + {1e6 * backend / n:.1f} us "
                              "PostgreSQL", flush=True)
                for variant, figures in cpu.items():
                    print(f"mean {variant}: "
                          f"{statistics.fmean(f[0] for f in figures):.1f} us replay + "
                          f"{statistics.fmean(f[1] for f in figures):.1f} us PostgreSQL")


def _resolved(variant: str) -> str:
    path, sep, args = variant.partition("::")
    return f"{Path(path).resolve()}{sep}{args}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay_ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--checkout", action="append", required=True,
                        help='a checkout, optionally with replay arguments: "PATH::--workers 0"')
    parser.add_argument("--py-spy", type=Path, default=None,
                        help="a directory: py-spy (raw collapsed stacks) of every replay")
    args = parser.parse_args(argv)
    try:
        asyncio.run(run(args.events, min(args.users, args.events), args.rounds,
                        [_resolved(c) for c in args.checkout],
                        args.py_spy.resolve() if args.py_spy else None))
    except BenchError as exc:
        print(f"bench.replay_ab: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
