"""The projection tables keep only the indexes a query reads (decision 0030): the queries the
product runs on ``messages`` still find theirs, ``user_keys`` probes compare bytewise, and
issued keys go in once whichever way they are written."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

from app.devtools.webhook_bodies import delivery, encode, text_message
from app.ingress.parse_webhook import events_from_texts, parse_webhook
from projections.row_changes import RowChanges
from projections.write_rows import FEW_ROWS, TableSet, prepare_staging, write_row_changes
from schema.events import ReplySent
from schema.ids import event_id_for

# The console's reply count per user (app/console/queries.py).
REPLY_COUNT = ("SELECT user_id, count(*) AS n FROM messages "
               "WHERE user_id = ANY($1::uuid[]) AND replied_at IS NOT NULL GROUP BY user_id")


async def _plan(connection: asyncpg.Connection, query: str, *args: object) -> str:
    rows = await connection.fetch(f"EXPLAIN (COSTS OFF) {query}", *args)
    return "\n".join(r[0] for r in rows)


async def _two_users_one_replied(connection: asyncpg.Connection) -> tuple[str, str]:
    """Two senders with two messages each; one reply, to the first sender's first message."""
    messages = [text_message(phone, f"words {n}", wamid=f"wamid.idx.{phone}.{n}")
                for phone in ("15550001111", "15550002222") for n in range(2)]
    events = events_from_texts(parse_webhook(encode(delivery(*messages))).texts,
                               1_700_000_000_000)
    changes = RowChanges()
    for n, event in enumerate(events):
        changes.add(0, f"1700000000000-{n}", event)
    first = events[0]
    changes.add(0, "1700000000001-0", ReplySent(
        event_id=event_id_for("reply", first.message_id), occurred_at=1_700_000_001_000,
        message_id=first.message_id, user_id=first.user_id, reply_text="re",
        replied_at=1_700_000_001_000, contextual=False, outbound_message_id="out.idx.0",
        model=None, fallback_used=False))
    await prepare_staging(connection)
    async with connection.transaction():
        await write_row_changes(connection, changes)
    return first.user_id, events[-1].user_id


async def test_messages_keep_the_indexes_queries_read(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        indexes = {r["indexname"] for r in await connection.fetch(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'messages'")}
        assert indexes == {"messages_pkey", "messages_identity_source_unique",
                           "messages_user_created_idx", "messages_replied_user_idx"}
        replied, other = await _two_users_one_replied(connection)
        counts = {str(r["user_id"]): r["n"]
                  for r in await connection.fetch(REPLY_COUNT, [replied, other])}
        assert counts == {replied: 1}  # a user with no reply has no row (the console's 0)
        async with connection.transaction():  # the tables are tiny: make the planner choose
            await connection.execute("SET LOCAL enable_seqscan = off")
            assert "messages_replied_user_idx" in await _plan(
                connection, REPLY_COUNT, [replied, other])
            assert "messages_user_created_idx" in await _plan(
                connection, "SELECT id FROM messages WHERE user_id = $1 "
                "ORDER BY created_at DESC LIMIT 10", replied)
    finally:
        await connection.close()


async def test_user_keys_are_probed_bytewise_by_text_arrays(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        assert await connection.fetchval(
            "SELECT collation_name FROM information_schema.columns "
            "WHERE table_name = 'user_keys' AND column_name = 'key_id'") == "C"
        await connection.execute(
            "INSERT INTO user_keys (key_id, user_id, wrapped_key, created_at) VALUES "
            "('k-B', gen_random_uuid(), 'w1', now()), ('k-a', gen_random_uuid(), 'w2', now())")
        query = "SELECT key_id FROM user_keys WHERE key_id = ANY($1::text[]) ORDER BY key_id"
        assert [r["key_id"] for r in await connection.fetch(query, ["k-a", "k-B", "k-c"])] \
            == ["k-B", "k-a"]  # bytewise: upper case first
        async with connection.transaction():
            await connection.execute("SET LOCAL enable_seqscan = off")
            assert "user_keys_pkey" in await _plan(connection, query, ["k-a"])
    finally:
        await connection.close()


def _keys(first: int, count: int) -> RowChanges:
    at = datetime(2026, 11, 30, tzinfo=UTC)
    changes = RowChanges()
    changes.user_keys = {f"key-{n}": (str(uuid.uuid4()), f"wrapped-{n}", at)
                         for n in range(first, first + count)}
    return changes


async def test_issued_keys_go_in_once_by_copy_or_by_few_rows(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await prepare_staging(connection)
        # Many (COPY straight in), again (a redelivery: COPY refused, staging path), with
        # new ones among them, then a few (one array statement).
        for first, count in ((0, FEW_ROWS + 8), (0, FEW_ROWS + 8), (20, FEW_ROWS + 8), (100, 3)):
            async with connection.transaction():
                await write_row_changes(connection, _keys(first, count))
        rows = await connection.fetch("SELECT key_id, wrapped_key FROM user_keys")
        expected = {f"key-{n}" for n in (*range(20 + FEW_ROWS + 8), 100, 101, 102)}
        assert {r["key_id"] for r in rows} == expected
        assert all(r["wrapped_key"] == "wrapped-" + r["key_id"][4:] for r in rows)
        async with connection.transaction():  # replay's tables: no user_keys written
            await write_row_changes(connection, _keys(200, FEW_ROWS + 8),
                                    TableSet(archive=None, user_keys=None))
        assert await connection.fetchval("SELECT count(*) FROM user_keys") == len(expected)
    finally:
        await connection.close()
