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
from projections.content_rows import write_content_changes
from projections.row_changes import RowChanges, columns


@dataclass(frozen=True, slots=True)
class TableSet:
    users: str = "users"
    identities: str = "identities"
    messages: str = "messages"
    summaries: str = "summaries"
    unreadable: str = "unreadable_messages"
    statuses: str = "delivery_statuses"
    archive: str | None = "event_archive"  # None: replay does not re-archive
    user_keys: str | None = "user_keys"  # None: replay never writes keys (forget destroyed some)

    def __post_init__(self) -> None:
        """Refuse a set whose names could not enter SQL (ValueError), before any statement."""
        for name in (self.users, self.identities, self.messages, self.summaries,
                     self.unreadable, self.statuses, self.archive, self.user_keys):
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
            "(id, user_id, channel, channel_user_key, created_at, kind, parent_bsuid, username) "
            "SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], "
            "$5::timestamptz[], $6::text[], $7::text[], $8::text[]) ON CONFLICT (id) DO UPDATE "
            "SET parent_bsuid = COALESCE(EXCLUDED.parent_bsuid, "  # the first link never moves
            f"{q(tables.identities)}.parent_bsuid), "
            f"username = COALESCE(EXCLUDED.username, {q(tables.identities)}.username)",
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
            "reply_text = u.reply_text, reply_outbound_id = u.outbound_id "
            "FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[]) "
            "AS u(id, replied_at, reply_text, outbound_id) "
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
    if changes.unreadable:
        await connection.execute(
            f"INSERT INTO {q(tables.unreadable)} "  # noqa: S608
            "(event_id, received_at, reason, raw_message, raw_contacts) "
            "SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], "
            "$5::text[]) ON CONFLICT (event_id) DO UPDATE SET received_at = EXCLUDED.received_at, "
            "reason = EXCLUDED.reason, raw_message = EXCLUDED.raw_message, "
            "raw_contacts = EXCLUDED.raw_contacts",
            *columns(changes.unreadable),
        )
    if changes.recovered:
        await connection.execute(
            f"INSERT INTO {q(tables.unreadable)} (event_id, recovered_message_id) "  # noqa: S608
            "SELECT * FROM unnest($1::uuid[], $2::uuid[]) ON CONFLICT (event_id) "
            "DO UPDATE SET recovered_message_id = EXCLUDED.recovered_message_id",
            *columns({k: (v,) for k, v in changes.recovered.items()}),
        )
    if changes.statuses:
        await connection.execute(
            f"INSERT INTO {q(tables.statuses)} AS d "  # noqa: S608
            "(outbound_message_id, status, status_rank, status_at, recipient, recipient_bsuid, "
            "error_code, error_title, updated_at) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[], "
            "$5::text[], $6::text[], $7::int[], $8::text[], $9::timestamptz[]) "
            "ON CONFLICT (outbound_message_id) DO UPDATE SET status = EXCLUDED.status, "
            "status_rank = EXCLUDED.status_rank, status_at = EXCLUDED.status_at, "
            "recipient = EXCLUDED.recipient, recipient_bsuid = EXCLUDED.recipient_bsuid, "
            "error_code = EXCLUDED.error_code, error_title = EXCLUDED.error_title, "
            "updated_at = EXCLUDED.updated_at WHERE EXCLUDED.status_rank > d.status_rank",
            *columns(changes.statuses),
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
    await write_content_changes(connection, changes, messages=tables.messages,
                                summaries=tables.summaries, identities=tables.identities,
                                user_keys=tables.user_keys)
