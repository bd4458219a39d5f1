"""PostgreSQL: the connection pool of a process (migrations: ``migrations``, imported apart so
that a process which only opens the pool does not load Piccolo)."""

from __future__ import annotations

import asyncpg


async def open_database(
    database_url: str, *, min_size: int = 1, max_size: int = 10
) -> asyncpg.Pool:
    """An asyncpg pool owned by the caller (closed with ``await pool.close()``)."""
    pool = await asyncpg.create_pool(
        database_url, min_size=min_size, max_size=max_size, command_timeout=30
    )
    assert pool is not None
    return pool

