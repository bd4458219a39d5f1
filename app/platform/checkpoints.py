"""Projection checkpoints: the last stream position a projection applied, per partition.

A checkpoint is the ``(ms, seq)`` position of an entry id (``entries.entry_position``);
every entry at or below it is applied, and archived in ``event_archive``. This module is the
only code that reads or writes the ``projection_checkpoints`` table; write inside the
transaction that applied the rows, so rows and checkpoint commit together.
"""

from __future__ import annotations

import asyncpg

from app.platform.eventlog.entries import Position, entry_position

__all__ = [
    "PROJECTOR",
    "checkpoint_covers",
    "read_checkpoint",
    "read_checkpoints",
    "read_checkpoints_at",
    "write_checkpoint",
]

PROJECTOR = "projector"  # the projection (and consumer group) that fills the live tables
NOTHING_APPLIED: Position = (0, 0)


async def read_checkpoint(
    connection: asyncpg.Connection, partition: int, projection: str = PROJECTOR
) -> Position:
    """The projection's checkpoint in ``partition``; ``(0, 0)`` before its first batch."""
    row = await connection.fetchrow(
        "SELECT last_ms, last_seq FROM projection_checkpoints "
        "WHERE projection = $1 AND partition = $2",
        projection, partition,
    )
    return (row["last_ms"], row["last_seq"]) if row else NOTHING_APPLIED


async def read_checkpoints(
    connection: asyncpg.Connection, projection: str = PROJECTOR
) -> dict[int, Position]:
    """partition -> checkpoint, for every partition the projection has applied entries of."""
    rows = await connection.fetch(
        "SELECT partition, last_ms, last_seq FROM projection_checkpoints WHERE projection = $1",
        projection,
    )
    return {r["partition"]: (r["last_ms"], r["last_seq"]) for r in rows}


async def read_checkpoints_at(database_url: str, projection: str = PROJECTOR
                              ) -> dict[int, Position]:
    """``read_checkpoints`` on a connection of its own (for operations commands)."""
    connection = await asyncpg.connect(database_url)
    try:
        return await read_checkpoints(connection, projection)
    finally:
        await connection.close()


async def write_checkpoint(
    connection: asyncpg.Connection, partition: int, position: Position,
    projection: str = PROJECTOR,
) -> None:
    """Set the projection's checkpoint in ``partition`` to ``position``."""
    await connection.execute(
        "INSERT INTO projection_checkpoints (projection, partition, last_ms, last_seq) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (projection, partition) DO UPDATE "
        "SET last_ms = EXCLUDED.last_ms, last_seq = EXCLUDED.last_seq",
        projection, partition, position[0], position[1],
    )


def checkpoint_covers(checkpoint: Position, entry_id: str) -> bool:
    """True when the entry is at or below the checkpoint, i.e. already applied."""
    return entry_position(entry_id) <= checkpoint
