"""Rebuild every projection from the log while the service runs, then swap atomically.

1. Fresh ``*_rebuild`` tables (same columns, keys and indexes as the live ones) are filled from
   the event archive, in log order, with the projector's own row logic. Live tables are not
   touched, so an interrupted replay changes nothing (its leftovers are dropped next time).
   They are loaded with their unique indexes only; the other indexes and the foreign keys are
   built once loaded (on both connections), before step 2. A second connection reads and
   decodes the next page of the archive while the current one is written, yielding to the
   event loop every 200 events so the write goes on; users and identities rows an earlier
   page wrote are left out (``KnownRows``), and the cyclic GC is kept out of the run
   (decision 0024).
2. One transaction takes the projection swap lock exclusively (every projector batch holds
   it shared, so in-flight batches finish and new ones wait), applies what was archived since
   step 1 plus the stream tail beyond the projector's checkpoint (archiving it and advancing
   the checkpoint, exactly as the projector would), renames live → ``*_replaced`` and
   rebuild → live, drops the replaced tables, and commits. Readers see the old tables until
   the commit and the new ones after it; never a partial state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
from redis.asyncio import Redis

from app.platform.checkpoints import read_checkpoint, write_checkpoint
from app.platform.eventlog.content_crypto import MasterKeys
from app.platform.eventlog.content_keys import durable_keyring
from app.platform.eventlog.entries import (
    ONLY_GROUP,
    UndecodableEvent,
    as_text,
    decode_event,
    entry_id_of,
    entry_position,
)
from app.platform.eventlog.keys import Keys
from app.platform.eventlog.unwrapped_keys import UnwrappedKeys
from app.platform.sql_identifier import quote_identifier as q
from app.platform.start_up_objects import start_up_objects_frozen
from projections.known_rows import KnownRows
from projections.projector import SWAP_LOCK_KEY, YIELD_EVERY
from projections.replay_keys import ReplayKeys
from projections.row_changes import RowChanges
from projections.write_rows import TableSet, prepare_staging, write_row_changes
from schema.events import AnyEvent, decode_body

log = logging.getLogger("mecove.replay")

LIVE = ("users", "identities", "messages", "summaries", "unreadable_messages",
        "delivery_statuses")
REBUILD = TableSet(users="users_rebuild", identities="identities_rebuild",
                   messages="messages_rebuild", summaries="summaries_rebuild",
                   unreadable="unreadable_messages_rebuild",
                   statuses="delivery_statuses_rebuild", archive=None, user_keys=None)
FOREIGN_KEYS = (
    ("identities", "user_id", "users"),
    ("messages", "user_id", "users"),
    ("messages", "identity_id", "identities"),
    ("summaries", "user_id", "users"),
)

Position = tuple[int, int, int]  # partition, entry ms, entry seq

# A page is decoded and turned into rows ``YIELD_EVERY`` events at a time (the projector's),
# yielding to the event loop between: the page being written sends each statement as soon as
# its reply comes, so PostgreSQL works on page N while Python builds N+1 (decision 0018).
# Users and identities ids per kind a run remembers as written (about 30 MB): past it, the
# memory starts over and rows are written again (``ON CONFLICT`` makes that harmless).
KNOWN_ROWS_LIMIT = 100_000
# During a run a young collection waits for this many net allocations (CPython's default:
# 700): a page's rows are freed by reference counting (decision 0024).
GC_THRESHOLD = 50_000


@dataclass
class ReplayReport:
    archived_events: int = 0
    events_by_type: dict[str, int] = field(default_factory=dict)
    tail_events: int = 0
    applied: int = 0
    seconds: float = 0.0
    swapped: bool = False


class Progress:
    """A tqdm bar on a terminal, a log line every 10 % otherwise."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.done = 0
        self._next_log = 0.1
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="ev", desc="replay", file=sys.stderr)

    def advance(self, count: int) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
        elif self.done / self.total >= self._next_log:
            log.info("replay progress", extra={"fields": {"done": self.done,
                                                          "total": self.total}})
            while self._next_log <= self.done / self.total:
                self._next_log += 0.1

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


async def _count_archive(connection: asyncpg.Connection) -> dict[str, int]:
    rows = await connection.fetch(
        "SELECT event_type, count(*) AS n FROM event_archive GROUP BY event_type ORDER BY 1")
    return {r["event_type"]: int(r["n"]) for r in rows}


async def _tail(redis: Redis, keys: Keys, connection: asyncpg.Connection, partition: int
                ) -> list[tuple[str, dict[bytes, bytes]]]:
    """Stream entries past the projector's checkpoint in one partition."""
    checkpoint = await read_checkpoint(connection, partition)
    entries = await redis.xrange(keys.stream(partition), min=f"({entry_id_of(checkpoint)}",
                                 max="+")
    return [(as_text(entry_id), fields) for entry_id, fields in entries]


async def _drop_rebuild_tables(connection: asyncpg.Connection) -> None:
    for name in reversed(LIVE):
        await connection.execute(f"DROP TABLE IF EXISTS {q(name + '_rebuild')} CASCADE")


async def _create_rebuild_tables(connection: asyncpg.Connection, *, erasures: bool
                                 ) -> list[str]:
    """Fresh ``*_rebuild`` tables shaped like the live ones, ready for the bulk load: their
    unique indexes (the row logic's ``ON CONFLICT`` needs them) but not the others, nor the
    foreign keys. Returns the definitions of the indexes left out, for ``_finish_rebuild_tables``.

    With ``erasures`` (the log holds ``UserForgotten``), indexes led by ``user_id`` stay: each
    erasure looks the user's rows up by them."""
    await _drop_rebuild_tables(connection)
    deferred: list[str] = []
    for name in LIVE:
        rebuild = name + "_rebuild"
        await connection.execute(f"CREATE TABLE {q(rebuild)} (LIKE {q(name)} INCLUDING ALL)")
        for index in await connection.fetch(
                "SELECT c.relname AS name, pg_get_indexdef(x.indexrelid) AS definition, "
                "a.attname AS leading FROM pg_index x "
                "JOIN pg_class c ON c.oid = x.indexrelid "
                "LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0] "
                "WHERE x.indrelid = $1::regclass AND NOT x.indisunique", q(rebuild)):
            if erasures and index["leading"] == "user_id":
                continue
            deferred.append(index["definition"])
            await connection.execute(f"DROP INDEX {q(index['name'])}")
    return deferred


async def _finish_rebuild_tables(connections: Sequence[asyncpg.Connection],
                                 deferred: list[str]) -> None:
    """Once loaded: build the indexes left out (one sorted pass each, cheaper than keeping
    them up to date row by row), shared among ``connections`` (two builds run at once: each
    takes a share lock, which does not block the other), then add the foreign keys on the
    first (checked in one pass each)."""
    async def build(connection: asyncpg.Connection, definitions: list[str]) -> None:
        for definition in definitions:
            await connection.execute(definition)

    count = len(connections)
    outcomes = await asyncio.gather(
        *(build(c, deferred[n::count]) for n, c in enumerate(connections)),
        return_exceptions=True)  # every build over before a failure ends the run
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    for table, column, target in FOREIGN_KEYS:
        await connections[0].execute(
            f"ALTER TABLE {q(table + '_rebuild')} ADD FOREIGN KEY ({q(column)}) "
            f"REFERENCES {q(target + '_rebuild')} (id)")


@dataclass(frozen=True, slots=True)
class _Page:
    """Archived events read and turned into row changes, ready to write."""

    changes: RowChanges
    last: Position
    count: int


async def _read_page(connection: asyncpg.Connection, after: Position, batch_size: int,
                     master: MasterKeys | None, unwrapped: UnwrappedKeys | None = None,
                     known: KnownRows | None = None) -> _Page | None:
    """The next ``batch_size`` archived events after ``after``, as row changes; None at the end.

    With ``known``, the users and identities rows earlier pages hold already are left out
    (they would change nothing), and this page's are remembered: pages are built and written
    in log order, and a page that fails to write ends the run (its tables are dropped)."""
    rows = await connection.fetch(
        "SELECT partition, entry_ms, entry_seq, body FROM event_archive "
        "WHERE (partition, entry_ms, entry_seq) > ($1, $2, $3) "
        "ORDER BY partition, entry_ms, entry_seq LIMIT $4",
        after[0], after[1], after[2], batch_size,
    )
    if not rows:
        return None
    events: list[AnyEvent] = []
    for start in range(0, len(rows), YIELD_EVERY):
        events.extend(decode_body(row["body"]) for row in rows[start:start + YIELD_EVERY])
        await asyncio.sleep(0)
    changes = RowChanges(keyring=await durable_keyring(events, connection, master, unwrapped),
                         archiving=False)
    for start in range(0, len(rows), YIELD_EVERY):
        for row, event in zip(rows[start:start + YIELD_EVERY],
                              events[start:start + YIELD_EVERY], strict=True):
            changes.add(row["partition"], entry_id_of((row["entry_ms"], row["entry_seq"])),
                        event)
        await asyncio.sleep(0)
    last = rows[-1]
    if known is not None:
        known.leave_out_unchanged(changes)
        known.committed(changes, (last["entry_ms"], last["entry_seq"]))
    return _Page(changes, (last["partition"], last["entry_ms"], last["entry_seq"]), len(rows))


async def _apply_archive(connection: asyncpg.Connection, after: Position, batch_size: int,
                         progress: Progress | None, master: MasterKeys | None,
                         reader: asyncpg.Connection | None = None,
                         unwrapped: UnwrappedKeys | None = None,
                         known: KnownRows | None = None) -> tuple[Position, int]:
    """Apply archived events after ``after`` to the rebuild tables; returns the new position.

    With a ``reader`` connection, the next page is read and turned into rows on it while
    ``connection`` writes the current one."""
    source = reader or connection
    applied = 0
    page = await _read_page(source, after, batch_size, master, unwrapped, known)
    while page is not None:
        ahead = (asyncio.create_task(_read_page(source, page.last, batch_size, master,
                                              unwrapped, known))
                 if reader is not None else None)
        try:
            async with connection.transaction():
                await write_row_changes(connection, page.changes, REBUILD)
        except BaseException:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError, asyncpg.PostgresError,
                                         OSError):
                    await ahead
            raise
        after = page.last
        applied += page.count
        if progress is not None:
            progress.advance(page.count)
        page = await (ahead or _read_page(source, after, batch_size, master, unwrapped, known))
    return after, applied


async def replay(
    database_url: str,
    redis: Redis,
    keys: Keys,
    *,
    dry_run: bool = False,
    batch_size: int = 5_000,
    before_swap: Callable[[], object] | None = None,
    master: MasterKeys | None,
) -> ReplayReport:
    """Rebuild users, identities, messages and summaries from the log and swap them in.

    Sealed content opens with the keys left in ``user_keys`` (``master`` unwraps them); the
    content of forgotten users comes back erased.
    """
    with start_up_objects_frozen(GC_THRESHOLD):  # decision 0024
        return await _replay(database_url, redis, keys, dry_run=dry_run, batch_size=batch_size,
                             before_swap=before_swap, master=master)


async def _replay(database_url: str, redis: Redis, keys: Keys, *, dry_run: bool,
                  batch_size: int, before_swap: Callable[[], object] | None,
                  master: MasterKeys | None) -> ReplayReport:
    started = time.monotonic()
    report = ReplayReport()
    connection = await asyncpg.connect(database_url)
    try:
        report.events_by_type = await _count_archive(connection)
        report.archived_events = sum(report.events_by_type.values())
        tails = {p: await _tail(redis, keys, connection, p) for p in range(keys.partitions)}
        report.tail_events = sum(len(t) for t in tails.values())
        if dry_run:
            return report
        await prepare_staging(connection)
        # Keys unwrapped (and their AES-GCM objects made) once for the run; each page still
        # asks user_keys (decision 0010).
        unwrapped = ReplayKeys(master) if master is not None else None
        # Users and identities rows already written this run (the rebuild tables are this
        # run's alone): a later page's row for them is left out.
        known = KnownRows(limit=KNOWN_ROWS_LIMIT)
        progress = Progress(report.archived_events)
        reader = await asyncpg.connect(database_url)
        try:
            try:
                deferred = await _create_rebuild_tables(
                    connection, erasures=report.events_by_type.get("UserForgotten", 0) > 0)
                position, report.applied = await _apply_archive(
                    connection, (-1, 0, 0), batch_size, progress, master, reader, unwrapped, known)
            finally:
                progress.close()
            await _finish_rebuild_tables((connection, reader), deferred)
        finally:
            await reader.close()
        if before_swap is not None:
            before_swap()
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", SWAP_LOCK_KEY)
            position, caught_up = await _apply_archive(connection, position, batch_size, None,
                                                       master, unwrapped=unwrapped, known=known)
            report.applied += caught_up
            report.applied += await _apply_tail(connection, redis, keys, master, unwrapped)
            for name in LIVE:
                await connection.execute(
                    f"ALTER TABLE {q(name)} RENAME TO {q(name + '_replaced')}")
                await connection.execute(
                    f"ALTER TABLE {q(name + '_rebuild')} RENAME TO {q(name)}")
            for name in reversed(LIVE):
                await connection.execute(f"DROP TABLE {q(name + '_replaced')} CASCADE")
        report.swapped = True
    except BaseException:
        if not connection.is_closed():
            try:
                await _drop_rebuild_tables(connection)
            except (asyncpg.PostgresError, OSError):
                log.warning("could not drop the rebuild tables; the next replay will")
        raise
    finally:
        report.seconds = time.monotonic() - started
        await connection.close()
    return report


async def _apply_tail(connection: asyncpg.Connection, redis: Redis, keys: Keys,
                      master: MasterKeys | None, unwrapped: UnwrappedKeys | None = None) -> int:
    """Under the swap lock: project the stream beyond the checkpoint, as the projector would."""
    tables = TableSet(users=REBUILD.users, identities=REBUILD.identities,
                      messages=REBUILD.messages, summaries=REBUILD.summaries,
                      unreadable=REBUILD.unreadable, statuses=REBUILD.statuses,
                      archive="event_archive", user_keys="user_keys")
    applied = 0
    for partition in range(keys.partitions):
        tail = await _tail(redis, keys, connection, partition)
        if not tail:
            continue
        last = (0, 0)
        decoded = []
        for entry_id, fields in tail:
            last = max(last, entry_position(entry_id))
            if ONLY_GROUP in fields:
                continue  # a dead-letter retry aimed at another group
            try:
                decoded.append((entry_id, decode_event(fields)))
            except UndecodableEvent:
                continue  # the projector dead-letters it
        changes = RowChanges(keyring=await durable_keyring(
            (e for _, e in decoded), connection, master, unwrapped))
        for entry_id, event in decoded:
            changes.add(partition, entry_id, event)
            applied += 1
        await write_row_changes(connection, changes, tables)
        await write_checkpoint(connection, partition, last)
    return applied
