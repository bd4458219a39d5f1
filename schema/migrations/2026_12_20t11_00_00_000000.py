"""``user_keys.key_id`` compares bytewise (``COLLATE "C"``; decision 0030).

Every projector batch looks up each key its events name (~3,900 for 5,000 messages of 10,000
senders), one primary-key probe each; under the database's collation (e.g. ``C.UTF-8`` or
``en_US.UTF-8``) each comparison went through ``strcoll``. Key ids are ASCII and nothing
orders by them, so bytewise order changes no result; the table is one row per key, so the
rewrite is short.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from schema.migrations.ddl_migration import ddl_migration

ID = "2026-12-20T11:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "user_keys.key_id: bytewise comparisons"

STATEMENTS = (
    'ALTER TABLE user_keys ALTER COLUMN key_id TYPE varchar(64) COLLATE "C"',
)


async def forwards() -> MigrationManager:
    return ddl_migration(ID, DESCRIPTION, STATEMENTS)
