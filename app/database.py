"""The PostgreSQL pool. Piccolo's engine owns it, so Piccolo queries and raw asyncpg share it."""

from __future__ import annotations

import asyncpg

from schema.piccolo_conf import DB


async def open_database(
    database_url: str, *, min_size: int = 1, max_size: int = 10
) -> asyncpg.Pool:
    """Point Piccolo's engine at ``database_url`` and open its pool."""
    await close_database()
    DB.config = {"dsn": database_url}
    await DB.start_connection_pool(min_size=min_size, max_size=max_size)
    assert DB.pool is not None
    return DB.pool


async def close_database() -> None:
    if DB.pool is not None:
        await DB.close_connection_pool()
        DB.pool = None


async def run_migrations(database_url: str) -> None:
    """Apply every Piccolo migration of the ``mecove`` app that has not run yet."""
    import os

    from piccolo.apps.migrations.commands.forwards import run_forwards

    os.environ.setdefault("PICCOLO_CONF", "schema.piccolo_conf")  # how Piccolo finds our app
    DB.config = {"dsn": database_url}
    result = await run_forwards(app_name="mecove")
    if not result.success:
        raise RuntimeError(f"migrations failed: {result.message}")
