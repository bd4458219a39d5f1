"""Row changes -> PostgreSQL: one bulk statement per table, inside the caller's transaction.

Statements use ``unnest`` over array parameters, so a batch of any size costs six round trips.
The table names come from ``TableSet`` (fixed names, checked when the set is made) and enter
the SQL through ``quote_identifier``, so replay can write the same statements into fresh
tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from app.platform.sql_identifier import quote_identifier as q
from projections.row_changes import RowChanges, columns


@dataclass(frozen=True, slots=True)
class TableSet:
    users: str = "users"
    identities: str = "identities"
    messages: str = "messages"
    summaries: str = "summaries"
    archive: str | None = "event_archive"  # None: replay does not re-archive

    def __post_init__(self) -> None:
        """Refuse a set whose names could not enter SQL (ValueError), before any statement."""
        for name in (self.users, self.identities, self.messages, self.summaries, self.archive):
            if name is not None:
                q(name)


LIVE_TABLES = TableSet()


async def write_row_changes(
    connection: asyncpg.Connection, changes: RowChanges, tables: TableSet = LIVE_TABLES
) -> None:
    """Apply ``changes`` idempotently: inserts skip existing keys, reply updates overwrite."""
    if changes.users:
        await connection.execute(
            f"INSERT INTO {q(tables.users)} (id, created_at) "  # noqa: S608 - fixed identifiers
            "SELECT * FROM unnest($1::uuid[], $2::timestamptz[]) ON CONFLICT (id) DO NOTHING",
            *columns({k: (v,) for k, v in changes.users.items()}),
        )
    if changes.identities:
        await connection.execute(
            f"INSERT INTO {q(tables.identities)} "  # noqa: S608
            "(id, user_id, channel, channel_user_key, created_at) "
            "SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], "
            "$5::timestamptz[]) ON CONFLICT DO NOTHING",
            *columns(changes.identities),
        )
    if changes.messages:
        await connection.execute(
            f"INSERT INTO {q(tables.messages)} "  # noqa: S608
            "(id, user_id, identity_id, created_at, client_timestamp, content_type, text, "
            "raw_payload, source_message_id) "
            "SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::timestamptz[], "
            "$5::timestamptz[], $6::text[], $7::text[], $8::jsonb[], $9::text[]) "
            "ON CONFLICT DO NOTHING",
            *columns(changes.messages),
        )
    if changes.replies:
        await connection.execute(
            f"UPDATE {q(tables.messages)} AS m SET replied_at = u.replied_at, "  # noqa: S608
            "reply_text = u.reply_text "
            "FROM unnest($1::uuid[], $2::timestamptz[], $3::text[]) "
            "AS u(id, replied_at, reply_text) "
            "WHERE m.id = u.id",
            *columns(changes.replies),
        )
    if changes.summaries:
        await connection.execute(
            f"INSERT INTO {q(tables.summaries)} "  # noqa: S608
            "(id, user_id, range_start, range_end, created_at, status, summary_text, model_name, "
            "prompt_version, input_messages_count, input_hash, error) "
            "SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::timestamptz[], "
            "$5::timestamptz[], $6::text[], $7::text[], $8::text[], $9::text[], $10::int[], "
            "$11::text[], $12::text[]) ON CONFLICT (id) DO NOTHING",
            *columns(changes.summaries),
        )
    if changes.archive and tables.archive is not None:
        rows = list(zip(*changes.archive, strict=True))
        await connection.execute(
            f"INSERT INTO {q(tables.archive)} "  # noqa: S608
            "(event_id, partition, entry_ms, entry_seq, event_type, schema_version, occurred_at, "
            "body) SELECT * FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::bigint[], "
            "$5::text[], $6::int[], $7::bigint[], $8::bytea[]) ON CONFLICT (event_id) DO NOTHING",
            *[list(column) for column in rows],
        )
