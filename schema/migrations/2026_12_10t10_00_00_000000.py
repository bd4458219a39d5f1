"""Per-user content keys, wrapped by the master key (crypto-shredding, SPEC §16)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from schema.migrations.ddl_migration import ddl_migration

ID = "2026-12-10T10:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "user_keys: each user's content keys, wrapped"

STATEMENTS = (
    """CREATE TABLE user_keys (
        key_id varchar(64) PRIMARY KEY,
        user_id uuid NOT NULL,
        wrapped_key text NOT NULL,
        created_at timestamptz NOT NULL
    )""",
    "CREATE INDEX user_keys_user_idx ON user_keys (user_id)",
)


async def forwards() -> MigrationManager:
    return ddl_migration(ID, DESCRIPTION, STATEMENTS)
