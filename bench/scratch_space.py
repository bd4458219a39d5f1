"""Fresh databases and Redis key prefixes for one benchmark run, removed afterwards.

Databases are copies of one migrated template (``CREATE DATABASE ... TEMPLATE``), so each
costs a file copy, not a migration run. Every name carries the run's tag.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from redis.asyncio import Redis

from app.platform.migrations import run_migrations
from bench.closed_on_exit import ClosedOnExit

DEFAULT_ADMIN_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def database_url_for(admin_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``admin_url``."""
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def new_tag() -> str:
    return uuid.uuid4().hex[:8]


class ScratchSpace(ClosedOnExit):
    """Databases and key prefixes of one run; ``async with`` drops and deletes them all."""

    def __init__(self, admin_database_url: str, redis_url: str, label: str) -> None:
        self.admin_database_url = admin_database_url
        self.redis_url = redis_url
        self.tag = f"{label}{new_tag()}"
        self._template: str | None = None
        self._databases: list[str] = []
        self._prefixes: list[str] = []
        self._patterns: list[str] = []

    async def _admin(self, statement: str) -> None:
        connection = await asyncpg.connect(self.admin_database_url)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    async def _template_name(self) -> str:
        if self._template is None:
            name = f"mecove_bench_{self.tag}_tpl"
            await self._admin(f'CREATE DATABASE "{name}"')
            self._databases.append(name)
            await run_migrations(database_url_for(self.admin_database_url, name))
            self._template = name
        return self._template

    async def fresh_database(self, label: str) -> str:
        """URL of a new, migrated, empty database."""
        template = await self._template_name()
        name = f"mecove_bench_{self.tag}_{label}_{new_tag()}"
        await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        self._databases.append(name)
        return database_url_for(self.admin_database_url, name)

    async def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        if name in self._databases:
            await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self._databases.remove(name)

    def key_prefix(self, label: str) -> str:
        """A fresh mecove key prefix; every key under it is deleted at the end."""
        prefix = f"bench{self.tag}{label}{new_tag()}"
        self._prefixes.append(prefix)
        return prefix

    def delete_later(self, pattern: str) -> None:
        """Also delete the keys matching ``pattern`` at the end (e.g. a peer's job keys)."""
        self._patterns.append(pattern)

    async def delete_keys(self, pattern: str) -> int:
        return await delete_matching_at(self.redis_url, pattern)

    async def aclose(self) -> None:
        """Delete the run's keys, then drop its databases (the template last)."""
        for pattern in [f"{p}:*" for p in self._prefixes] + self._patterns:
            await self.delete_keys(pattern)
        self._prefixes.clear()
        self._patterns.clear()
        for name in list(reversed(self._databases)):
            await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self._databases.remove(name)


async def delete_matching(redis: Redis, pattern: str) -> int:
    """Delete every key matching ``pattern``, one UNLINK per scan page; how many went."""
    deleted = 0
    page: list[bytes] = []
    async for key in redis.scan_iter(match=pattern, count=5_000):
        page.append(key)
        if len(page) >= 5_000:
            deleted += await redis.unlink(*page)
            page = []
    if page:
        deleted += await redis.unlink(*page)
    return deleted


async def delete_matching_at(redis_url: str, pattern: str) -> int:
    """``delete_matching`` on a client of its own, opened and closed here."""
    redis = Redis.from_url(redis_url)
    try:
        return await delete_matching(redis, pattern)
    finally:
        await redis.aclose()
