"""Identities by phone or BSUID, unreadable messages kept raw, delivery statuses of replies."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from schema.migrations.ddl_migration import ddl_migration

ID = "2026-12-01T10:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "identity kinds, unreadable_messages, delivery_statuses, reply outbound id"

STATEMENTS = (
    # A BSUID is a country code, a dot and up to 128 alphanumerics (ENT. for a parent).
    "ALTER TABLE identities ALTER COLUMN channel_user_key TYPE varchar(160)",
    "ALTER TABLE identities ADD COLUMN kind varchar(16) NOT NULL DEFAULT 'phone'",
    "ALTER TABLE identities ADD COLUMN parent_bsuid varchar(160)",
    "ALTER TABLE identities ADD COLUMN username varchar(128)",
    "ALTER TABLE messages ADD COLUMN reply_outbound_id varchar(255)",
    "CREATE INDEX messages_reply_outbound_idx ON messages (reply_outbound_id)",
    """CREATE TABLE unreadable_messages (
        event_id uuid PRIMARY KEY,
        received_at timestamptz,
        reason text,
        raw_message text,
        raw_contacts text,
        recovered_message_id uuid
    )""",
    """CREATE TABLE delivery_statuses (
        outbound_message_id varchar(255) PRIMARY KEY,
        status varchar(16) NOT NULL,
        status_rank integer NOT NULL,
        status_at timestamptz,
        recipient varchar(160),
        recipient_bsuid varchar(160),
        error_code integer,
        error_title text,
        updated_at timestamptz NOT NULL
    )""",
    "CREATE INDEX delivery_statuses_status_idx ON delivery_statuses (status)",
)


async def forwards() -> MigrationManager:
    return ddl_migration(ID, DESCRIPTION, STATEMENTS)
