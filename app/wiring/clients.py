"""The clients a process opens from its settings: Redis, the PostgreSQL pool, the event log.

The event log comes from ``EventLog.from_settings``. Imports ``app.platform`` only, so the
ingress, the operator's commands and dev tooling can open what they need here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from app.platform.database import open_database
from app.platform.eventlog.append import EventLog
from app.platform.redis_client import RedisClient, connect
from app.platform.settings import Settings

__all__ = ["Clients", "open_clients", "redis_client"]


@dataclass(frozen=True, slots=True)
class Clients:
    """What a process talks to: pooled Redis, a PostgreSQL pool, and the event log on Redis."""

    redis: RedisClient
    pool: asyncpg.Pool
    event_log: EventLog


@asynccontextmanager
async def redis_client(settings: Settings, *,
                       must_answer: bool = False) -> AsyncIterator[RedisClient]:
    """A pooled client for ``settings.redis_url`` (a cluster client when the node belongs to a
    Redis Cluster), closed on exit. ``must_answer``: a Redis that does not answer now is an
    error (one-shot commands), not something to wait for (services)."""
    redis = await connect(settings.redis_url, must_answer=must_answer)
    try:
        yield redis
    finally:
        await redis.aclose()


@asynccontextmanager
async def open_clients(settings: Settings, *, pool_max_size: int = 10,
                       must_answer: bool = False) -> AsyncIterator[Clients]:
    """Redis, a PostgreSQL pool of at most ``pool_max_size`` and the event log; all closed on
    exit (the pool first, then Redis)."""
    async with redis_client(settings, must_answer=must_answer) as redis:
        pool = await open_database(settings.database_url, min_size=1, max_size=pool_max_size)
        event_log = EventLog.from_settings(settings, redis)
        try:
            yield Clients(redis, pool, event_log)
        finally:
            await event_log.aclose()
            await pool.close()
