"""A Piccolo migration made of plain SQL statements, run in order."""

from collections.abc import Sequence

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from schema.piccolo_conf import DB


def ddl_migration(migration_id: str, description: str, statements: Sequence[str]
                  ) -> MigrationManager:
    """The manager of migration ``migration_id``: runs ``statements`` one after the other."""
    manager = MigrationManager(migration_id=migration_id, app_name="mecove",
                               description=description)

    async def apply() -> None:
        for statement in statements:
            await DB.run_ddl(statement)

    manager.add_raw(apply)
    return manager
