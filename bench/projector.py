"""Projector drain vs raw asyncpg COPY of the same rows (and replay, once it exists).

1. N MessageReceived events, built by the ingress's own code (``events_from_texts``) from
   realistic messages of ``--users`` senders, are appended to a fresh stream as the ingress
   logs them (``bench.sealed_log``): a UserKeyIssued before each user's first message, and
   every message sealed with its user's content key, so the projector decrypts each one and
   writes the ``user_keys`` rows, as in production.
2. **projector** — ``python -m app.cli consume projector`` drains them into a fresh migrated
   database. The rate is taken between the first and the last checkpoint seen (polled every
   10 ms), so process start-up is not counted; events/s counts the MessageReceived events.
3. **COPY** — the rows the projector ends with (users, identities, messages with the opened
   text, user_keys), built by the projector's own ``RowChanges`` from the stream as logged
   before the clock starts, go into another fresh database with ``copy_records_to_table`` in
   one transaction: the practical limit for those rows.
4. **replay** — ``python -m app.cli replay`` (it opens the sealed archive too), timed if the
   command exists, against the same COPY without ``user_keys`` (replay never writes it).

``python -m bench.projector --events 100000``
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import re
import resource
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

from app.platform.checkpoints import PROJECTOR
from app.platform.eventlog.content_crypto import DataKey
from app.platform.eventlog.entries import entry_position
from app.platform.eventlog.keys import Keys
from bench.figures import Check, Figure, Target
from bench.numbered_messages import received_events
from bench.processes import (
    BenchError,
    ProcessSet,
    Service,
    clean_env,
    cpu_seconds,
    mecove_command,
    start_py_spy,
    work_directory,
)
from bench.scratch_space import DEFAULT_ADMIN_DATABASE_URL, DEFAULT_REDIS_URL, ScratchSpace
from bench.sealed_log import LoggedEntry, append_sealed, logged_entries
from bench.standalone import run_standalone
from projections.row_changes import RowChanges
from projections.write_rows import use_row_times
from schema.events import MessageReceived

POLL_S = 0.01
APPEND_BATCH = 2_000


@dataclass(frozen=True, slots=True)
class ProjectorOptions:
    events: int = 100_000
    users: int = 10_000
    rounds: int = 2
    drain_timeout_s: float = 600.0
    py_spy: Path | None = None  # profile the projector's first drain into this file
    batch_size: int | None = None  # MECOVE_BATCH_SIZE of the projector; None: its default
    admin_database_url: str = DEFAULT_ADMIN_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL


@dataclass(frozen=True, slots=True)
class Drain:
    events: int  # events applied between the first and the last checkpoint observation
    seconds: float
    wall_s: float  # from process start to the tail, start-up included
    cpu_s: float = 0.0  # projector process CPU over the same span
    backend_cpu_s: float = 0.0  # its PostgreSQL backends' CPU over the same span

    @property
    def per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def cpu_us_per_event(self) -> tuple[float, float]:
        """(projector, PostgreSQL backend) CPU microseconds per event."""
        if not self.events:
            return 0.0, 0.0
        return 1e6 * self.cpu_s / self.events, 1e6 * self.backend_cpu_s / self.events


async def backend_cpu(connection: asyncpg.Connection) -> float:
    """CPU seconds used so far by the other PostgreSQL backends of this database (the server
    runs on this machine: its processes are in /proc); 0 for a backend that is gone."""
    pids = await connection.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()"
    )
    return sum(cpu_seconds(int(r["pid"])) or 0.0 for r in pids)


async def checkpoint(connection: asyncpg.Connection) -> tuple[int, int] | None:
    row = await connection.fetchrow(
        "SELECT last_ms, last_seq FROM projection_checkpoints "
        "WHERE projection = $1 AND partition = 0",
        PROJECTOR,
    )
    return (int(row["last_ms"]), int(row["last_seq"])) if row else None


async def watch_drain(
    database_url: str, positions: Sequence[tuple[int, int]], service: Service, timeout_s: float
) -> Drain:
    """Poll the checkpoint until it reaches the last position; rate between first and last."""
    started = time.perf_counter()
    deadline = started + timeout_s
    tail = positions[-1]
    first: tuple[float, int] | None = None
    cpu_first = (0.0, 0.0)
    connection = await asyncpg.connect(database_url)
    try:
        while True:
            service.ensure_running()
            now = time.perf_counter()
            if now > deadline:
                raise BenchError(f"projector did not reach the tail within {timeout_s:g}s")
            seen = await checkpoint(connection)
            if seen is not None:
                applied = bisect.bisect_right(positions, seen)
                if first is None:
                    first = (now, applied)
                    cpu_first = (cpu_seconds(service.pid) or 0.0, await backend_cpu(connection))
                if seen >= tail:
                    cpu = (cpu_seconds(service.pid) or 0.0) - cpu_first[0]
                    backend = await backend_cpu(connection) - cpu_first[1]
                    return Drain(
                        len(positions) - first[1], now - first[0], now - started, cpu, backend
                    )
            await asyncio.sleep(POLL_S)
    finally:
        await connection.close()


async def count_rows(database_url: str) -> dict[str, int]:
    connection = await asyncpg.connect(database_url)
    try:
        return {
            table: int(await connection.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608 - fixed table names
            for table in ("users", "identities", "messages", "user_keys", "event_archive")
        }
    finally:
        await connection.close()


async def check_texts(database_url: str, records: CopyRecords) -> None:
    """The projector stored each message's text as the COPY has it (opened, not sealed or
    erased): the two sides write the same rows."""
    connection = await asyncpg.connect(database_url)
    try:
        stored = {
            r["id"]: r["text"]
            for r in await connection.fetch("SELECT id::text AS id, text FROM messages")
        }
    finally:
        await connection.close()
    expected = {str(row[0]): row[MESSAGE_COLUMNS.index("text")] for row in records.messages}
    if stored != expected:
        differ = sum(1 for k, v in expected.items() if stored.get(k) != v)
        raise BenchError(
            f"projector texts differ from the COPY's: {differ:,} of "
            f"{len(expected):,} messages ({len(stored):,} stored)"
        )


async def drain_with_projector(
    scratch: ScratchSpace,
    processes: ProcessSet,
    options: ProjectorOptions,
    prefix: str,
    positions: Sequence[tuple[int, int]],
    profile: Path | None = None,
) -> tuple[Drain, str]:
    database_url = await scratch.fresh_database("proj")
    env = clean_env(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": options.redis_url,
            "MECOVE_KEY_PREFIX": prefix,
            "MECOVE_CONSUMER_NAME": f"bench-projector-{prefix}",
            **({"MECOVE_BATCH_SIZE": str(options.batch_size)} if options.batch_size else {}),
        }
    )
    service = await processes.start("projector", mecove_command("consume", "projector"), env)
    spy = await start_py_spy(processes, service, profile) if profile else None
    try:
        drain = await watch_drain(database_url, positions, service, options.drain_timeout_s)
    finally:
        if spy is not None:
            await processes.stop(spy, sig=signal.SIGINT)
        await processes.stop(service)
    return drain, database_url


Records = list[tuple[object, ...]]


@dataclass(frozen=True, slots=True)
class CopyRecords:
    users: Records
    identities: Records
    messages: Records
    user_keys: Records
    archive: Records


def copy_records(entries: Sequence[LoggedEntry], keyring: dict[str, DataKey]) -> CopyRecords:
    """The rows the projector ends with, derived as it derives them: from the entries as logged
    (bodies archived as they are, content still sealed), the text opened with the users' keys."""
    changes = RowChanges(keyring=keyring)
    for entry in entries:
        changes.add(0, entry.entry_id, entry.event, entry.body)
    return CopyRecords(
        users=[(uid, created) for uid, created in changes.users.items()],
        identities=[(iid, *row) for iid, row in changes.identities.items()],
        messages=[(mid, *row) for mid, row in changes.messages.items()],
        user_keys=[(kid, *row) for kid, row in changes.user_keys.items()],
        archive=list(changes.archive),
    )


MESSAGE_COLUMNS = [
    "id",
    "user_id",
    "identity_id",
    "created_at",
    "client_timestamp",
    "content_type",
    "text",
    "raw_payload",
    "source_message_id",
]
IDENTITY_COLUMNS = [
    "id",
    "user_id",
    "channel",
    "channel_user_key",
    "created_at",
    "kind",
    "parent_bsuid",
    "username",
]
USER_KEY_COLUMNS = ["key_id", "user_id", "wrapped_key", "created_at"]
ARCHIVE_COLUMNS = [
    "event_id",
    "partition",
    "entry_ms",
    "entry_seq",
    "event_type",
    "schema_version",
    "occurred_at",
    "body",
]


@dataclass(frozen=True, slots=True)
class Copy:
    seconds: float
    cpu_s: float  # this process's CPU (asyncpg encoding the records)
    backend_cpu_s: float  # the PostgreSQL backend's
    user_keys_s: float  # of ``seconds``, the user_keys COPY (replay does not write user_keys)

    @property
    def seconds_without_keys(self) -> float:
        return self.seconds - self.user_keys_s

    def cpu_us_per_event(self, events: int) -> tuple[float, float]:
        return 1e6 * self.cpu_s / events, 1e6 * self.backend_cpu_s / events


async def copy_rows(database_url: str, records: CopyRecords, *, archive: bool) -> Copy:
    """COPY the rows in one transaction: its seconds and CPU. The rows are ``RowChanges``',
    times as integers: the connection takes them as the projector's does (``use_row_times``)."""
    connection = await asyncpg.connect(database_url)
    try:
        await use_row_times(connection)
        backend = int(await connection.fetchval("SELECT pg_backend_pid()"))
        backend_before = cpu_seconds(backend) or 0.0
        cpu_before = time.process_time()
        started = time.perf_counter()
        async with connection.transaction():
            keys_started = time.perf_counter()
            await connection.copy_records_to_table(
                "user_keys", records=records.user_keys, columns=USER_KEY_COLUMNS
            )
            keys_s = time.perf_counter() - keys_started
            await connection.copy_records_to_table(
                "users", records=records.users, columns=["id", "created_at"]
            )
            await connection.copy_records_to_table(
                "identities", records=records.identities, columns=IDENTITY_COLUMNS
            )
            await connection.copy_records_to_table(
                "messages", records=records.messages, columns=MESSAGE_COLUMNS
            )
            if archive:
                await connection.copy_records_to_table(
                    "event_archive", records=records.archive, columns=ARCHIVE_COLUMNS
                )
        return Copy(
            time.perf_counter() - started,
            time.process_time() - cpu_before,
            (cpu_seconds(backend) or 0.0) - backend_before,
            keys_s,
        )
    finally:
        await connection.close()


async def replay_available() -> bool:
    process = await asyncio.create_subprocess_exec(
        *mecove_command("replay", "--help"),
        env=clean_env({}),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await process.wait() == 0


@dataclass(frozen=True, slots=True)
class ReplayTiming:
    events: int
    seconds: float  # as ``mecove replay`` reports it, else the wall time
    wall_s: float  # process start to exit
    cpu_s: float = 0.0  # the replay process's CPU, start-up (imports) included
    backend_cpu_s: float = 0.0  # its PostgreSQL backends' CPU, last seen before they ended

    @property
    def per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


async def _backend_cpu_by_pid(connection: asyncpg.Connection, seen: dict[int, float]) -> None:
    """Record the CPU of every other backend of this database (the last reading wins)."""
    for row in await connection.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()"
    ):
        cpu = cpu_seconds(int(row["pid"]))
        if cpu is not None:
            seen[int(row["pid"])] = cpu


REPLAY_LINE = re.compile(r"applied (\d+) events in ([0-9.]+)s")


async def time_replay(
    processes: ProcessSet, options: ProjectorOptions, database_url: str, prefix: str
) -> ReplayTiming:
    """``mecove replay`` over the drained log: its own figure when it prints one."""
    env = clean_env(
        {"DATABASE_URL": database_url, "REDIS_URL": options.redis_url, "MECOVE_KEY_PREFIX": prefix}
    )
    started = time.perf_counter()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    service = await processes.start("replay", mecove_command("replay"), env)
    backends: dict[int, float] = {}
    watcher = await asyncpg.connect(database_url)
    try:
        deadline = started + options.drain_timeout_s
        while service.running() and time.perf_counter() < deadline:
            await _backend_cpu_by_pid(watcher, backends)
            await asyncio.sleep(POLL_S * 5)
    finally:
        await watcher.close()
    code = await asyncio.wait_for(service.process.wait(), timeout=options.drain_timeout_s)
    wall = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (
        children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime
    )
    await processes.stop(service)
    if code != 0:
        raise BenchError(
            f"mecove replay exited with {code}; log {service.log_path}:\n{service.log_tail()}"
        )
    found = REPLAY_LINE.search(service.log_path.read_text(errors="replace"))
    if found:
        return ReplayTiming(
            int(found.group(1)), float(found.group(2)), wall, cpu, sum(backends.values())
        )
    return ReplayTiming(options.events, wall, wall, cpu, sum(backends.values()))


async def run_projector_bench(options: ProjectorOptions) -> list[Figure]:
    batch = options.batch_size or "default"
    print(
        f"== projector: {options.events:,} sealed MessageReceived events from "
        f"{options.users:,} users (+ a UserKeyIssued each), {options.rounds} round(s), "
        f"projector batch size {batch}"
    )
    drains: list[Drain] = []
    copies: list[Copy] = []
    copies_archive: list[Copy] = []
    replay: ReplayTiming | None = None
    replay_note = "replay: not available yet"
    with work_directory("projector") as work_dir:
        async with ScratchSpace(options.admin_database_url, options.redis_url, "pj") as scratch:
            async with ProcessSet(work_dir / "logs") as processes:
                prefix = scratch.key_prefix("pj")
                stream = Keys(prefix, 1).stream(0)
                started = time.perf_counter()
                events = await asyncio.to_thread(
                    received_events, scratch.tag, 0, options.events, options.users
                )
                keyring = await append_sealed(
                    options.redis_url, Keys(prefix, 1), events, APPEND_BATCH
                )
                entries = await logged_entries(options.redis_url, stream)
                # The drain counts MessageReceived events; UserKeyIssued entries are its cost.
                positions = [
                    entry_position(e.entry_id)
                    for e in entries
                    if isinstance(e.event, MessageReceived)
                ]
                if len(positions) != len(events) or positions[-1] != entry_position(
                    entries[-1].entry_id
                ):
                    raise BenchError(
                        f"stream holds {len(positions):,} messages, expected "
                        f"{len(events):,}, the last entry last"
                    )
                records = await asyncio.to_thread(copy_records, entries, keyring)
                print(
                    f"built and appended {len(events):,} events, sealed, and "
                    f"{len(entries) - len(events):,} UserKeyIssued in "
                    f"{time.perf_counter() - started:.1f}s"
                )
                last_db = ""
                for round_ in range(1, options.rounds + 1):
                    await reset_group(options.redis_url, stream)
                    if last_db:
                        await scratch.drop_database(last_db)
                    drain, last_db = await drain_with_projector(
                        scratch,
                        processes,
                        options,
                        prefix,
                        positions,
                        options.py_spy.resolve() if options.py_spy and round_ == 1 else None,
                    )
                    drains.append(drain)
                    rows = await count_rows(last_db)
                    await check_texts(last_db, records)
                    own, backend = drain.cpu_us_per_event()
                    print(
                        f"round {round_}: projector {drain.per_s:,.0f} events/s "
                        f"({drain.events:,} events in {drain.seconds:.2f}s; "
                        f"{drain.wall_s:.2f}s from process start); CPU per event "
                        f"{own:.0f} us projector + {backend:.0f} us PostgreSQL; rows {rows}"
                    )
                    for archive, results in ((False, copies), (True, copies_archive)):
                        copy_db = await scratch.fresh_database("copy")
                        results.append(await copy_rows(copy_db, records, archive=archive))
                        await scratch.drop_database(copy_db)
                    plain, full = copies[-1], copies_archive[-1]
                    own, backend = plain.cpu_us_per_event(options.events)
                    own_a, backend_a = full.cpu_us_per_event(options.events)
                    print(
                        f"round {round_}: COPY {options.events / plain.seconds:,.0f} events/s "
                        f"({plain.seconds:.2f}s, {plain.user_keys_s:.2f}s of it user_keys; "
                        f"CPU per event {own:.0f} us client + {backend:.0f} us PostgreSQL), "
                        f"with event_archive {options.events / full.seconds:,.0f} events/s "
                        f"(CPU {own_a:.0f} + {backend_a:.0f} us)"
                    )
                if await replay_available():
                    replay = await time_replay(processes, options, last_db, prefix)
                    print(
                        f"replay: {replay.per_s:,.0f} events/s ({replay.events:,} events in "
                        f"{replay.seconds:.2f}s; {replay.wall_s:.2f}s with process start-up); "
                        f"CPU per event {1e6 * replay.cpu_s / replay.events:.0f} us replay "
                        f"process (start-up included) + "
                        f"{1e6 * replay.backend_cpu_s / replay.events:.0f} us PostgreSQL"
                    )
                else:
                    print(replay_note)
    # The round of the best drain, with that round's COPY: same machine conditions.
    best_round = max(range(len(drains)), key=lambda i: drains[i].per_s)
    copy_rate = options.events / copies[best_round].seconds
    # Replay opens the sealed archive but never writes user_keys: its COPY leaves them out.
    replay_copy_rate = options.events / copies[best_round].seconds_without_keys
    return [
        Figure(
            "projector drain events/s vs COPY",
            drains[best_round].per_s,
            "events/s",
            copy_rate,
            "COPY",
            Target(Check.RATIO_AT_LEAST, 0.6),
        ),
        Figure(
            "replay events/s vs COPY",
            replay.per_s if replay else None,
            "events/s",
            replay_copy_rate,
            "COPY w/o user_keys",
            Target(Check.RATIO_AT_LEAST, 0.6),
            note="" if replay else "not available yet",
        ),
        Figure(
            "COPY incl. event_archive (info)",
            options.events / copies_archive[best_round].seconds,
            "events/s",
            copy_rate,
            "COPY 4 tables",
        ),
    ]


async def reset_group(redis_url: str, stream: str) -> None:
    """A new round re-reads the same stream from the start: drop the projector's group."""
    redis = Redis.from_url(redis_url)
    try:
        if await redis.exists(stream):
            await redis.xgroup_destroy(stream, "projector")
    finally:
        await redis.aclose()


def add_arguments(parser: argparse.ArgumentParser, smoke: bool = False) -> None:
    defaults = smoke_projector_options() if smoke else ProjectorOptions()
    parser.add_argument("--events", type=int, default=defaults.events)
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="MECOVE_BATCH_SIZE for the projector (default: its own)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        help="profile the first drain (.svg flamegraph, .json speedscope, "
        "else raw collapsed stacks)",
    )


def smoke_projector_options() -> ProjectorOptions:
    return ProjectorOptions(events=2_000, users=200, rounds=1)


def options_from(args: argparse.Namespace, admin_url: str, redis_url: str) -> ProjectorOptions:
    return ProjectorOptions(
        events=args.events,
        users=min(args.users, args.events),
        rounds=args.rounds,
        py_spy=args.py_spy,
        batch_size=args.batch_size,
        admin_database_url=admin_url,
        redis_url=redis_url,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone(
        "projector", __doc__, argv, add_arguments, options_from, run_projector_bench
    )


if __name__ == "__main__":
    raise SystemExit(main())
