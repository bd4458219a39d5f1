"""The projection tables (users, identities, messages, summaries…), the checkpoint and the
event archive. Column names are snake_case; unique keys and indexes are created by the
migrations in ``schema/migrations``.
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
    channel_user_key = Varchar(length=160)  # E.164 with +, or a business-scoped user id
    created_at = Timestamptz()
    kind = Varchar(length=16, default="phone")  # "phone" or "bsuid"
    parent_bsuid = Varchar(length=160, null=True, default=None)
    username = Varchar(length=128, null=True, default=None)  # latest seen; display only


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
    reply_outbound_id = Varchar(length=255, null=True, default=None)  # Meta's id of our reply


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


class UnreadableMessage(Table, tablename="unreadable_messages", db=DB):
    """Message objects kept raw because the version that received them could not read them.

    ``recovered_message_id`` is set once a later version turned one into a message.
    """

    event_id = UUID(primary_key=True)
    received_at = Timestamptz(null=True, default=None)
    reason = Text(null=True, default=None)
    raw_message = Text(null=True, default=None)
    raw_contacts = Text(null=True, default=None)
    recovered_message_id = UUID(null=True, default=None)


class DeliveryStatus(Table, tablename="delivery_statuses", db=DB):
    """The furthest status Meta reported for each reply we sent (sent < delivered < read <
    failed), so statuses arriving in any order give the same row."""

    outbound_message_id = Varchar(length=255, primary_key=True)
    status = Varchar(length=16)
    status_rank = Integer()
    status_at = Timestamptz(null=True, default=None)
    recipient = Varchar(length=160, null=True, default=None)
    recipient_bsuid = Varchar(length=160, null=True, default=None)
    error_code = Integer(null=True, default=None)
    error_title = Text(null=True, default=None)
    updated_at = Timestamptz()


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


class UserKey(Table, tablename="user_keys", db=DB):
    """Each user's content keys, wrapped by the master key; ``mecove forget`` deletes them."""

    key_id = Varchar(length=64, primary_key=True)
    user_id = UUID()
    wrapped_key = Text()
    created_at = Timestamptz()
