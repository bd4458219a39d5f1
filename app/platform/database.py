"""PostgreSQL: the connection pool of a process, and migrations (Piccolo)."""

from __future__ import annotations

import asyncpg

from schema.piccolo_conf import DB


async def open_database(
    database_url: str, *, min_size: int = 1, max_size: int = 10
) -> asyncpg.Pool:
    """An asyncpg pool owned by the caller (closed with ``await pool.close()``)."""
    pool = await asyncpg.create_pool(
        database_url, min_size=min_size, max_size=max_size, command_timeout=30
    )
    assert pool is not None
    return pool


async def run_migrations(database_url: str) -> None:
    """Apply every Piccolo migration of the ``mecove`` app that has not run yet."""
    import os

    from piccolo.apps.migrations.commands.forwards import run_forwards

    os.environ.setdefault("PICCOLO_CONF", "schema.piccolo_conf")  # how Piccolo finds our app
    DB.config = {"dsn": database_url}
    result = await run_forwards(app_name="mecove")
    if not result.success:
        raise RuntimeError(f"migrations failed: {result.message}")
