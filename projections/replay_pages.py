"""Replay's pages: archived events read, opened and turned into binary COPY data, and written.

A page is the archived events in a range of log positions. ``PageBuilder.build`` reads them,
opens their sealed content with the keys ``user_keys`` holds (decision 0010: asked for every
page), folds them with the projector's row logic (``RowChanges``) and encodes each kind of row
as binary COPY data (``copy_binary``). Building a page depends on nothing earlier pages wrote,
so pages may be built anywhere (another process: ``replay_workers``) and in any order;
``write_page`` applies them, in log order, with the same statements as ``write_row_changes``:
each kind COPYed into its staging table and moved in by its ``ON CONFLICT`` statement (new
messages straight into their table), then the page's erasures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from app.platform.eventlog.content_crypto import MasterKeys
from app.platform.eventlog.content_keys import durable_keyring
from app.platform.eventlog.entries import entry_id_of
from app.platform.eventlog.unwrapped_keys import UnwrappedKeys
from app.platform.sql_identifier import quote_identifier as q
from projections.content_rows import write_content_changes
from projections.copy_binary import column_types, encode_rows, encoders_for
from projections.row_changes import RowChanges
from projections.write_rows import _KINDS, TableSet
from schema.events import decode_body

__all__ = ["PageBuilder", "Position", "ReadyPage", "write_page"]

Position = tuple[int, int, int]  # partition, entry ms, entry seq


_AFTER = ("SELECT partition, entry_ms, entry_seq, body FROM event_archive "
          "WHERE (partition, entry_ms, entry_seq) > ($1, $2, $3) "
          "ORDER BY partition, entry_ms, entry_seq LIMIT $4")
_BETWEEN = ("SELECT partition, entry_ms, entry_seq, body FROM event_archive "
            "WHERE (partition, entry_ms, entry_seq) > ($1, $2, $3) "
            "AND (partition, entry_ms, entry_seq) <= ($4, $5, $6) "
            "ORDER BY partition, entry_ms, entry_seq LIMIT $7")


@dataclass(frozen=True, slots=True)
class ReadyPage:
    """One page, ready to write: binary COPY data per kind of row (by its index in the
    projector's kinds, in their order), the page's erasures, its last position and size."""

    copies: list[tuple[int, bytes]]
    forgotten: dict[str, tuple[list[str], datetime]] = field(default_factory=dict)
    last: Position = (-1, 0, 0)
    count: int = 0


class PageBuilder:
    """Builds pages on one connection (reading ``event_archive`` and ``user_keys``)."""

    def __init__(self, connection: asyncpg.Connection, master: MasterKeys | None) -> None:
        self.connection = connection
        self.master = master
        # Keys unwrapped once per builder; each page still asks user_keys (decision 0010).
        self.unwrapped = UnwrappedKeys(master) if master is not None else None
        self._encoders: list[list] | None = None  # type: ignore[type-arg]

    async def _kind_encoders(self) -> list[list]:  # type: ignore[type-arg]
        if self._encoders is None:
            self._encoders = [
                encoders_for(await column_types(self.connection, kind.shaped_after,
                                                kind.columns))
                for kind in _KINDS]
        return self._encoders

    async def build(self, after: Position, upto: Position | None = None,
                    limit: int | None = None) -> ReadyPage | None:
        """The archived events after ``after`` (up to ``upto`` included, at most ``limit``)
        as a page; None when there are none."""
        encoders = await self._kind_encoders()
        # Two statements, not one with an optional bound: the index scan must stop at
        # ``upto``. Both with a LIMIT, which keeps the planner on the ordered index scan.
        if upto is None:
            rows = await self.connection.fetch(_AFTER, *after, limit)
        else:
            rows = await self.connection.fetch(_BETWEEN, *after, *upto, limit)
        if not rows:
            return None
        events = [decode_body(row[3]) for row in rows]
        changes = RowChanges(keyring=await durable_keyring(events, self.connection, self.master,
                                                           self.unwrapped),
                             archiving=False)
        add = changes.add
        for row, event in zip(rows, events, strict=True):
            add(row[0], entry_id_of((row[1], row[2])), event)
        copies = [(i, encode_rows(encoders[i], records))
                  for i, kind in enumerate(_KINDS) if (records := kind.records(changes))]
        last = rows[-1]
        return ReadyPage(copies, changes.forgotten, (last[0], last[1], last[2]), len(rows))


async def write_page(connection: asyncpg.Connection, page: ReadyPage, tables: TableSet) -> None:
    """Apply ``page`` inside the caller's transaction, on a connection ``prepare_staging``
    readied (the effect of ``write_row_changes`` for the same events). The data goes as a
    memoryview: asyncpg takes ``bytes`` for a file path."""
    for index, data in page.copies:
        kind = _KINDS[index]
        target = kind.new_rows_go_to(tables) if kind.new_rows_go_to else None
        if target is not None and await _copy_if_all_new(connection, target, kind.columns,
                                                         data):
            continue
        await connection.copy_to_table(kind.stage, source=memoryview(data),
                                       columns=list(kind.columns), format="binary")
        await connection.execute(kind.apply(tables, q(kind.stage)))
    if page.forgotten:
        await write_content_changes(connection, RowChanges(forgotten=page.forgotten),
                                    messages=tables.messages, summaries=tables.summaries,
                                    identities=tables.identities, user_keys=tables.user_keys)


async def _copy_if_all_new(connection: asyncpg.Connection, table: str, columns: tuple[str, ...],
                           data: bytes) -> bool:
    """COPY ``data`` straight into ``table`` under a savepoint; False, with nothing written,
    when one of its rows exists already."""
    try:
        async with connection.transaction():
            await connection.copy_to_table(table, source=memoryview(data), columns=list(columns),
                                           format="binary")
    except asyncpg.UniqueViolationError:
        return False
    return True
