"""Initial tables: users, identities, messages, summaries, checkpoints, event archive."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from schema.migrations.ddl_migration import ddl_migration

ID = "2026-11-27T16:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "initial tables with their unique keys and indexes"

STATEMENTS = (
    """CREATE TABLE users (
        id uuid PRIMARY KEY,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE identities (
        id uuid PRIMARY KEY,
        user_id uuid NOT NULL REFERENCES users (id),
        channel varchar(32) NOT NULL,
        channel_user_key varchar(64) NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT identities_channel_key_unique UNIQUE (channel, channel_user_key)
    )""",
    """CREATE TABLE messages (
        id uuid PRIMARY KEY,
        user_id uuid NOT NULL REFERENCES users (id),
        identity_id uuid NOT NULL REFERENCES identities (id),
        created_at timestamptz NOT NULL DEFAULT now(),
        client_timestamp timestamptz,
        content_type varchar(32) NOT NULL,
        text text,
        raw_payload jsonb,
        source_message_id varchar(255) NOT NULL,
        replied_at timestamptz,
        reply_text text,
        CONSTRAINT messages_identity_source_unique UNIQUE (identity_id, source_message_id)
    )""",
    "CREATE INDEX messages_user_created_idx ON messages (user_id, created_at)",
    "CREATE INDEX messages_identity_created_idx ON messages (identity_id, created_at)",
    "CREATE INDEX messages_user_replied_idx ON messages (user_id, replied_at)",
    """CREATE TABLE summaries (
        id uuid PRIMARY KEY,
        user_id uuid NOT NULL REFERENCES users (id),
        range_start timestamptz NOT NULL,
        range_end timestamptz NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        status varchar(32) NOT NULL,
        summary_text text,
        model_name varchar(128),
        prompt_version varchar(64),
        input_messages_count integer NOT NULL DEFAULT 0,
        input_hash varchar(64),
        error text
    )""",
    "CREATE INDEX summaries_user_range_idx ON summaries (user_id, range_start, range_end)",
    """CREATE TABLE projection_checkpoints (
        projection varchar(64) NOT NULL,
        partition integer NOT NULL,
        last_ms bigint NOT NULL,
        last_seq bigint NOT NULL,
        PRIMARY KEY (projection, partition)
    )""",
    """CREATE TABLE event_archive (
        event_id uuid PRIMARY KEY,
        partition integer NOT NULL,
        entry_ms bigint NOT NULL,
        entry_seq bigint NOT NULL,
        event_type varchar(64) NOT NULL,
        schema_version integer NOT NULL,
        occurred_at bigint NOT NULL,
        body bytea NOT NULL,
        archived_at timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX event_archive_position_idx ON event_archive (partition, entry_ms, entry_seq)",
)


async def forwards() -> MigrationManager:
    return ddl_migration(ID, DESCRIPTION, STATEMENTS)
