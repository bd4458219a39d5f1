"""Messages keep only the indexes a query reads (decision 0030): each one cost the projector's
COPY 1.3-4 us of PostgreSQL CPU per message.

- ``(identity_id, created_at)``: no query filters messages by identity (the foreign key to
  ``identities`` is served by the unique ``(identity_id, source_message_id)``).
- ``(reply_outbound_id)``: statuses join from a message (its primary key) to
  ``delivery_statuses``' primary key, never the other way.
- ``(user_id, replied_at)`` becomes ``(user_id) WHERE replied_at IS NOT NULL``: the console's
  reply count per user reads it the same way (index-only scan); a new message, not replied
  yet, adds no entry.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from schema.migrations.ddl_migration import ddl_migration

ID = "2026-12-20T10:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "messages: only the indexes a query reads"

STATEMENTS = (
    "DROP INDEX IF EXISTS messages_identity_created_idx",
    "DROP INDEX IF EXISTS messages_reply_outbound_idx",
    "CREATE INDEX messages_replied_user_idx ON messages (user_id) WHERE replied_at IS NOT NULL",
    "DROP INDEX IF EXISTS messages_user_replied_idx",
)


async def forwards() -> MigrationManager:
    return ddl_migration(ID, DESCRIPTION, STATEMENTS)
