"""Helpers for consumer tests: building handlers and reading what they appended."""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis

from app.platform.runtime.consumer_runtime import GroupHandler
from app.platform.settings import Settings
from app.wiring.clients import keys_for
from app.wiring.consumer_service import build_handler
from schema.events import decode_event

GRAPH_TOKEN = "test-permanent-token-0123456789"
GROQ_KEY = "gsk_test_key_0123456789"


def replier(settings: Settings, pool: asyncpg.Pool, redis: Redis) -> GroupHandler:
    """The replier as ``mecove consume replier`` builds it, on the test's pool and client."""
    return build_handler("replier", settings, pool, redis)


async def events_of_type(redis: Redis, settings: Settings, kind: str) -> list:
    entries = await redis.xrange(keys_for(settings).stream(0))
    return [decode_event(f) for _, f in entries if f.get(b"type") == kind.encode()]


async def dead_letters(redis: Redis, settings: Settings) -> list[dict[bytes, bytes]]:
    return [f for _, f in await redis.xrange(keys_for(settings).dead_letters(0))]
