"""Helpers for consumer tests: building handlers and reading what they appended."""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis

from app.platform.eventlog.entries import decode_event
from app.platform.eventlog.keys import Keys
from app.platform.runtime.handler import GroupHandler
from app.platform.settings import Settings
from app.wiring.consumer_service import build_handler

GRAPH_TOKEN = "test-permanent-token-0123456789"
GROQ_KEY = "gsk_test_key_0123456789"


def replier(settings: Settings, pool: asyncpg.Pool, redis: Redis) -> GroupHandler:
    """The replier as ``mecove consume replier`` builds it, on the test's pool and client."""
    return build_handler("replier", settings, pool, redis)


async def events_of_type(redis: Redis, settings: Settings, kind: str) -> list:
    entries = await redis.xrange(Keys.from_settings(settings).stream(0))
    return [decode_event(f) for _, f in entries if f.get(b"type") == kind.encode()]


async def dead_letters(redis: Redis, settings: Settings) -> list[dict[bytes, bytes]]:
    return [f for _, f in await redis.xrange(Keys.from_settings(settings).dead_letters(0))]
