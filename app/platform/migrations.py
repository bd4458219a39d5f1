"""PostgreSQL migrations (Piccolo), apart from the pool: importing Piccolo costs ~0.3 s of
start-up that only the commands which migrate need (``mecove replay`` and the other operator
commands open asyncpg directly)."""

from __future__ import annotations

from schema.piccolo_conf import DB

__all__ = ["run_migrations"]


async def run_migrations(database_url: str) -> None:
    """Apply every Piccolo migration of the ``mecove`` app that has not run yet."""
    import os

    from piccolo.apps.migrations.commands.forwards import run_forwards

    os.environ.setdefault("PICCOLO_CONF", "schema.piccolo_conf")  # how Piccolo finds our app
    DB.config = {"dsn": database_url}
    result = await run_forwards(app_name="mecove")
    if not result.success:
        raise RuntimeError(f"migrations failed: {result.message}")
