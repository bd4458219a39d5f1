"""The projection tables (the seed's §2.3) plus the checkpoint and the event archive.

Column names are snake_case versions of the seed's camelCase names. Unique keys and indexes
are created by the migration in ``schema/migrations``.
"""

from piccolo.columns import (
    JSONB,
    UUID,
    BigInt,
    Bytea,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table

from schema.piccolo_conf import DB


class User(Table, tablename="users", db=DB):
    id = UUID(primary_key=True)
    created_at = Timestamptz()


class Identity(Table, tablename="identities", db=DB):
    id = UUID(primary_key=True)
    user_id = ForeignKey(references=User, db_column_name="user_id")
    channel = Varchar(length=32)
    channel_user_key = Varchar(length=64)
    created_at = Timestamptz()


class Message(Table, tablename="messages", db=DB):
    id = UUID(primary_key=True)
    user_id = ForeignKey(references=User, db_column_name="user_id")
    identity_id = ForeignKey(references=Identity, db_column_name="identity_id")
    created_at = Timestamptz()
    client_timestamp = Timestamptz(null=True, default=None)
    content_type = Varchar(length=32)
    text = Text(null=True, default=None)
    raw_payload = JSONB(null=True, default=None)
    source_message_id = Varchar(length=255)
    replied_at = Timestamptz(null=True, default=None)
    reply_text = Text(null=True, default=None)


class Summary(Table, tablename="summaries", db=DB):
    id = UUID(primary_key=True)
    user_id = ForeignKey(references=User, db_column_name="user_id")
    range_start = Timestamptz()
    range_end = Timestamptz()
    created_at = Timestamptz()
    status = Varchar(length=32)
    summary_text = Text(null=True, default=None)
    model_name = Varchar(length=128, null=True, default=None)
    prompt_version = Varchar(length=64, null=True, default=None)
    input_messages_count = Integer(default=0)
    input_hash = Varchar(length=64, null=True, default=None)
    error = Text(null=True, default=None)


class ProjectionCheckpoint(Table, tablename="projection_checkpoints", db=DB):
    """Last stream entry applied, per projection and partition: (ms, seq) of the entry id."""

    projection = Varchar(length=64)
    partition = Integer()
    last_ms = BigInt()
    last_seq = BigInt()


class EventArchive(Table, tablename="event_archive", db=DB):
    """Every event ever applied, append-only, so the log outlives Redis memory and trimming."""

    event_id = UUID(primary_key=True)
    partition = Integer()
    entry_ms = BigInt()
    entry_seq = BigInt()
    event_type = Varchar(length=64)
    schema_version = Integer()
    occurred_at = BigInt()
    body = Bytea()
    archived_at = Timestamptz()
