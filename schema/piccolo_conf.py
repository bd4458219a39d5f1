"""Piccolo's configuration. The engine's DSN is set at start-up by ``app.platform.database``.

Piccolo's engine connects to PostgreSQL as it is built, to check the server's version, and
prints "Unable to connect to database" when nothing answers; built here at import (every
process imports the tables), with no DSN yet, that check can only reach the wrong server.
Only migrations use this engine, with their DSN set first, so the check is skipped.
"""

from piccolo.conf.apps import AppRegistry
from piccolo.engine.postgres import PostgresEngine


class MigrationEngine(PostgresEngine):
    """Piccolo's PostgreSQL engine without the version check it makes when built."""

    async def check_version(self) -> None:
        return None


DB = MigrationEngine(config={})

APP_REGISTRY = AppRegistry(apps=["schema.piccolo_app"])
