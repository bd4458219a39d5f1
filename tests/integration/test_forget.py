"""``mecove forget``: one person's content unreadable everywhere, the other's untouched.

The dumps read as an attacker holding everything would: every table row, every Redis key of
the deployment, and every sealed value opened with the master key and the keys still stored.
"""

from __future__ import annotations

import asyncio
import re
import time

import asyncpg
import msgspec
import pytest
from redis.asyncio import Redis

from app.devtools.webhook_bodies import delivery, encode, text_message
from app.ingress.parse_webhook import events_from_texts, parse_webhook
from app.operations.forget import UnknownPerson, forget
from app.platform.eventlog.append import EventLog, content_keys_for
from app.platform.eventlog.content_crypto import CONTENT_FIELDS, MasterKeys, open_value
from app.platform.eventlog.content_keys import durable_keys, master_keys_for
from app.platform.eventlog.keys import Keys
from app.platform.settings import Settings
from app.wiring.consumer_service import build_handler
from projections.replay import replay
from tests.fakes.graph_api import FakeGraphApi
from tests.fakes.groq_api import FakeGroqApi
from tests.integration.consumer_helpers import post_messages
from tests.service import consumers, eventually

ALICE, BOB = "15550007001", "15550007002"
ALICE_WORDS = ("zebrafinch", "marmalade", "oldplaintextword")
BOB_WORDS = ("quokka", "pumpernickel")
SEALED = re.compile(r"sealed:1:([0-9a-f]+):([A-Za-z0-9+/=]+)")
FIELD_NAMES = sorted({name for fields in CONTENT_FIELDS.values() for name in fields})


@pytest.fixture
def sealing(reply_settings: Settings, groq: FakeGroqApi) -> Settings:
    groq.responder = lambda body: "re: " + body["messages"][-1]["content"].splitlines()[-1]
    return msgspec.structs.replace(reply_settings, master_key=MasterKeys.generate_text())


async def _database_dump(url: str) -> str:
    """Every row of every table as text, bytea decoded as UTF-8 where it is."""
    connection = await asyncpg.connect(url)
    try:
        tables = [r["table_name"] for r in await connection.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
        parts = []
        for table in tables:
            for row in await connection.fetch(f'SELECT * FROM "{table}"'):  # noqa: S608
                parts += [v.decode(errors="replace") if isinstance(v, bytes) else str(v)
                          for v in row.values()]
        return "\n".join(parts)
    finally:
        await connection.close()


async def _redis_dump(redis: Redis, prefix: str) -> str:
    """Every key of the deployment, whatever its type, as text."""
    parts: list[str] = []
    async for name in redis.scan_iter(match=f"{prefix}:*", count=1_000):
        kind = (await redis.type(name)).decode()
        if kind == "stream":
            values = [v for _, f in await redis.xrange(name) for kv in f.items() for v in kv]
        elif kind == "string":
            values = [await redis.get(name)]
        elif kind == "hash":
            values = [v for kv in (await redis.hgetall(name)).items() for v in kv]
        elif kind == "list":
            values = await redis.lrange(name, 0, -1)
        elif kind == "set":
            values = list(await redis.smembers(name))
        else:
            values = [m for m, _ in await redis.zrange(name, 0, -1, withscores=True)]
        parts += [name.decode(), *(v.decode(errors="replace") for v in values)]
    return "\n".join(parts)


async def _opened(text: str, settings: Settings) -> str:
    """``text`` plus every sealed value in it opened with the keys left in user_keys."""
    master = master_keys_for(settings.master_key, None)
    assert master is not None
    connection = await asyncpg.connect(settings.database_url)
    try:
        ring = await durable_keys(connection, master,
                                  sorted({k for k, _ in SEALED.findall(text)}))
    finally:
        await connection.close()
    opened = []
    for key_id, body in SEALED.findall(text):
        value = f"\x1esealed:1:{key_id}:{body}"
        for field in FIELD_NAMES:
            plain = open_value(value, ring, field)
            if plain is not None:
                opened.append(plain)
    return text + "\n" + "\n".join(opened)


async def _everything(settings: Settings, redis: Redis) -> str:
    dump = await _database_dump(settings.database_url) + await _redis_dump(
        redis, settings.key_prefix)
    return await _opened(dump, settings)


def _assert_only_bob(dump: str) -> None:
    for word in ALICE_WORDS:
        assert word not in dump, word
    for word in BOB_WORDS:
        assert word in dump, word


async def _replied(pool: asyncpg.Pool, count: int) -> bool:
    async with pool.acquire() as connection:
        return await connection.fetchval(
            "SELECT count(*) FROM messages WHERE replied_at IS NOT NULL") >= count


async def test_forget_leaves_none_of_one_persons_words_and_all_of_the_others(
    sealing: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
) -> None:
    keys = Keys.from_settings(sealing)
    # Written before sealing existed: a plaintext event of Alice's.
    parsed = parse_webhook(encode(delivery(text_message(ALICE, "oldplaintextword here"))))
    await EventLog(redis, keys).append_messages(
        events_from_texts(parsed.texts, time.time_ns() // 1_000_000 - 5_000))
    await post_messages(sealing, text_message(ALICE, "zebrafinch and marmalade"))
    await post_messages(sealing, text_message(BOB, "quokka with pumpernickel"))
    handlers = [build_handler(group, sealing, pool, redis)
                for group in ("projector", "replier", "summarizer")]
    async with consumers(sealing, handlers):
        await eventually(lambda: _replied(pool, 3), timeout=20)
        await eventually(lambda: _summaries_made(pool, 2), timeout=20)
        before = await _everything(sealing, redis)
        assert all(w in before for w in ALICE_WORDS + BOB_WORDS)  # the dump does see content
        report = await forget(redis, keys, content_keys_for(sealing, redis),
                              sealing.database_url, "+" + ALICE)
        assert report.keys_destroyed == 1 and report.messages_erased == 2
        assert report.archive_rows_rewritten >= 1  # the plaintext event of before
        await eventually(lambda: _forgotten_projected(pool), timeout=10)
        _assert_only_bob(await _everything(sealing, redis))

        await replay(sealing.database_url, redis, keys,
                     master=master_keys_for(sealing.master_key, None))
        _assert_only_bob(await _everything(sealing, redis))

        await post_messages(sealing, text_message(ALICE, "hello again wombat"))
        await eventually(lambda: _replied(pool, 4), timeout=20)
    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT text, reply_text FROM messages WHERE text LIKE '%wombat%'")
    assert row is not None and row["reply_text"] == "re: User: hello again wombat"
    assert len(await asyncio.to_thread(graph.wait_for_sends, 4, 10)) >= 4


async def _summaries_made(pool: asyncpg.Pool, count: int) -> bool:
    async with pool.acquire() as connection:
        return await connection.fetchval(
            "SELECT count(*) FROM summaries WHERE summary_text IS NOT NULL") >= count


async def _forgotten_projected(pool: asyncpg.Pool) -> bool:
    async with pool.acquire() as connection:
        return await connection.fetchval(
            "SELECT count(*) FROM event_archive WHERE event_type = 'UserForgotten'") == 1


async def test_forgetting_someone_unknown_says_so(sealing: Settings, redis: Redis) -> None:
    with pytest.raises(UnknownPerson, match="no user has"):
        await forget(redis, Keys.from_settings(sealing), None, sealing.database_url,
                     "+15559990000")


async def test_forget_during_traffic_loses_no_message_of_other_users(
    sealing: Settings, redis: Redis, pool: asyncpg.Pool,
) -> None:
    keys = Keys.from_settings(sealing)
    await post_messages(sealing, text_message(ALICE, "zebrafinch"))
    others = [f"1555001{i:04d}" for i in range(20)]

    async def traffic() -> None:
        for n, sender in enumerate(others):
            await post_messages(sealing, text_message(sender, f"quokka {n}"))

    async with consumers(sealing, [build_handler("projector", sealing, pool, redis)]):
        sending = asyncio.create_task(traffic())
        await forget(redis, keys, content_keys_for(sealing, redis), sealing.database_url,
                     "+" + ALICE)
        await sending

        async def all_projected() -> bool:
            async with pool.acquire() as connection:
                return await connection.fetchval(
                    "SELECT count(*) FROM messages WHERE text LIKE 'quokka %'") == len(others)
        await eventually(all_projected, timeout=15)
    dump = await _everything(sealing, redis)
    assert "zebrafinch" not in dump
    assert all(f"quokka {n}" in dump for n in range(len(others)))

