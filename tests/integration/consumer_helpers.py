"""Helpers for consumer tests: building handlers and reading what they appended."""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis

from app.devtools.webhook_bodies import delivery, encode, signed_headers
from app.platform.eventlog.content_crypto import MasterKeys
from app.platform.eventlog.content_keys import master_keys_for
from app.platform.eventlog.entries import decode_event
from app.platform.eventlog.keys import Keys
from app.platform.runtime.handler import GroupHandler
from app.platform.settings import Settings
from app.wiring.consumer_service import build_handler
from tests.service import ingress

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


async def drained(redis: Redis, settings: Settings, group: str) -> bool:
    """Whether ``group`` has been given the last entry of the (one) stream and acked it all."""
    stream = Keys(settings.key_prefix, 1).stream(0)
    info = {g["name"].decode(): g for g in await redis.xinfo_groups(stream)}
    tail = await redis.xrevrange(stream, count=1)
    return group in info and info[group]["pending"] == 0 and \
        info[group]["last-delivered-id"] == tail[0][0]


async def post_messages(settings: Settings, *messages: dict) -> None:
    """Post ``messages`` as one signed webhook delivery to the real ingress; 200 expected."""
    raw = encode(delivery(*messages))
    async with ingress(settings) as client:
        response = await client.post("/webhooks/whatsapp", content=raw,
                                     headers=signed_headers(raw, "test-app-secret"))
    assert response.status_code == 200


def master_of(settings: Settings) -> MasterKeys | None:
    """The master keys of ``settings``, as ``mecove replay`` would use them."""
    return master_keys_for(settings.master_key, settings.previous_master_key)


async def fetch_rows(database_url: str, sql: str) -> list[asyncpg.Record]:
    """The rows ``sql`` returns, on a connection of its own."""
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetch(sql)
    finally:
        await connection.close()
