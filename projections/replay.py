"""Rebuild every projection from the log while the service runs, then swap atomically.

1. Fresh ``*_rebuild`` tables (same columns, keys and indexes as the live ones) are filled from
   the event archive, in log order, with the projector's own row logic. Live tables are not
   touched, so an interrupted replay changes nothing (its leftovers are dropped next time).
   They are loaded with their unique indexes only; the other indexes and the foreign keys are
   built once loaded, before step 2. Pages are built (read, opened, encoded as binary COPY
   data: ``replay_pages``) ahead of the one being written: by a worker process for a large
   archive (``replay_workers``), else on a second connection.
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
from collections import deque
from collections.abc import Awaitable, Callable
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
from projections.projector import SWAP_LOCK_KEY
from projections.replay_pages import PageBuilder, Position, ReadyPage, write_page
from projections.replay_workers import PageWorkers
from projections.row_changes import RowChanges
from projections.write_rows import TableSet, prepare_staging, write_row_changes

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


async def _finish_rebuild_tables(connection: asyncpg.Connection, deferred: list[str]) -> None:
    """Once loaded: build the indexes left out (one sorted pass each, cheaper than keeping
    them up to date row by row) and add the foreign keys (checked in one pass each)."""
    for definition in deferred:
        await connection.execute(definition)
    for table, column, target in FOREIGN_KEYS:
        await connection.execute(
            f"ALTER TABLE {q(table + '_rebuild')} ADD FOREIGN KEY ({q(column)}) "
            f"REFERENCES {q(target + '_rebuild')} (id)")


START: Position = (-1, 0, 0)
# Worker processes building pages (``replay_workers``) when the archive holds more than this
# many pages; a smaller one is not worth their start (a second or so of imports each).
WORKERS_FROM_PAGES = 4


async def _page_bounds(connection: asyncpg.Connection, batch_size: int) -> list[Position]:
    """The last position of every ``batch_size`` archived events, and the archive's last."""
    rows = await connection.fetch(
        "SELECT partition, entry_ms, entry_seq FROM (SELECT partition, entry_ms, entry_seq, "
        "row_number() OVER (ORDER BY partition, entry_ms, entry_seq) AS n, "
        "count(*) OVER () AS total FROM event_archive) AS a "
        "WHERE n % $1 = 0 OR n = total ORDER BY n", batch_size)
    return [(r[0], r[1], r[2]) for r in rows]


Build = Callable[[Position, Position, int], Awaitable[ReadyPage | None]]


async def _load_archive(connection: asyncpg.Connection, bounds: list[Position], build: Build,
                        batch_size: int, ahead: int, progress: Progress
                        ) -> tuple[Position, int]:
    """Write the pages ending at ``bounds`` into the rebuild tables, each in a transaction, in
    log order, while ``build`` makes up to ``ahead`` of the next ones; returns the position
    reached and the events applied."""
    ranges = iter(zip([START, *bounds], bounds, strict=False))
    pending: deque[asyncio.Future[ReadyPage | None]] = deque()

    def fill() -> None:
        while len(pending) < ahead and (span := next(ranges, None)) is not None:
            pending.append(asyncio.ensure_future(build(*span, batch_size)))

    position, applied = START, 0
    try:
        fill()
        for upto in bounds:
            page = await pending.popleft()
            fill()
            if page is not None:
                async with connection.transaction():
                    await write_page(connection, page, REBUILD)
                applied += page.count
                progress.advance(page.count)
            position = upto
    except BaseException:
        for future in pending:
            future.cancel()
        for future in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await future
        raise
    return position, applied


async def _catch_up(connection: asyncpg.Connection, position: Position, batch_size: int,
                    master: MasterKeys | None) -> tuple[Position, int]:
    """Under the swap lock: what was archived after ``position`` since the bulk load."""
    builder = PageBuilder(connection, master)
    applied = 0
    while (page := await builder.build(position, None, batch_size)) is not None:
        await write_page(connection, page, REBUILD)
        position = page.last
        applied += page.count
    return position, applied


async def replay(
    database_url: str,
    redis: Redis,
    keys: Keys,
    *,
    dry_run: bool = False,
    batch_size: int = 5_000,
    before_swap: Callable[[], object] | None = None,
    master: MasterKeys | None,
    workers: int | None = None,
) -> ReplayReport:
    """Rebuild users, identities, messages and summaries from the log and swap them in.

    Sealed content opens with the keys left in ``user_keys`` (``master`` unwraps them); the
    content of forgotten users comes back erased. ``workers``: processes building the pages
    (``replay_workers``); None: one when the archive is large enough to repay its start.
    """
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
        bounds = await _page_bounds(connection, batch_size)
        if workers is None:
            workers = 1 if len(bounds) > WORKERS_FROM_PAGES else 0
        progress = Progress(report.archived_events)
        try:
            deferred = await _create_rebuild_tables(
                connection, erasures=report.events_by_type.get("UserForgotten", 0) > 0)
            if workers > 0:
                async with PageWorkers(database_url, master, workers) as pool:
                    position, report.applied = await _load_archive(
                        connection, bounds, pool.build, batch_size, 2 * workers, progress)
            else:  # a second connection builds the next page while this one writes
                reader = await asyncpg.connect(database_url)
                try:
                    position, report.applied = await _load_archive(
                        connection, bounds, PageBuilder(reader, master).build, batch_size, 1,
                        progress)
                finally:
                    await reader.close()
        finally:
            progress.close()
        await _finish_rebuild_tables(connection, deferred)
        if before_swap is not None:
            before_swap()
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", SWAP_LOCK_KEY)
            position, caught_up = await _catch_up(connection, position, batch_size, master)
            report.applied += caught_up
            report.applied += await _apply_tail(connection, redis, keys, master)
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
