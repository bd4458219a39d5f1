"""The user's recent turns, read from Redis (written atomically with each event), so the
context is right even while the projector lags; PostgreSQL is the fallback once the Redis
copy has expired. Texts come sealed (the event's and the turn hashes' alike) and are opened
here with the user's key; a turn whose key was destroyed reads as erased.

The ``queue_*`` methods add a read to a pipeline the caller runs, so the replier asks Redis
for several things of one user in one round trip; the caller hands the answers back.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from app.platform.eventlog.content_crypto import ERASED, Keyring, open_value, sealed_key_id
from app.platform.eventlog.content_keys import ContentKeys
from app.platform.eventlog.conversation_keys import ConversationKeys
from app.platform.eventlog.entries import as_text
from app.platform.eventlog.keys import Keys
from consumers.replier.conversation_prompt import CONTEXT_MESSAGES, Turn
from schema.events import MessageReceived


class ConversationStore:
    def __init__(self, redis: Redis, keys: Keys, pool: asyncpg.Pool,
                 content: ContentKeys | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.conversation = ConversationKeys(keys)
        self.pool = pool
        self.content = content

    async def _opener(self, user_id: str, values: list[str | None]
                      ) -> Callable[[str | None, str], str | None]:
        """A function that opens the user's sealed values (plaintext passes through)."""
        ring: Keyring = {}
        sealed = {k: user_id for v in values if (k := sealed_key_id(v)) is not None}
        if sealed and self.content is not None:
            ring = await self.content.keyring((), also=sealed, database=self.pool)

        def opened(value: str | None, field: str) -> str | None:
            return None if value is None else open_value(value, ring, field) or ERASED
        return opened

    def queue_recent_ids(self, pipe: Pipeline, message: MessageReceived) -> None:
        """Add the read of the user's recent message ids (for ``queue_turns``) to ``pipe``."""
        partition = self.keys.partition_of(message.user_id)
        pipe.lrange(self.conversation.recent(partition, message.user_id), 0, -1)

    def queue_turns(self, pipe: Pipeline, message: MessageReceived,
                    recent_ids: list[bytes]) -> list[str]:
        """Add the reads of the turns up to ``message`` to ``pipe`` (one per message id of the
        returned window, in order; none when Redis no longer lists the message)."""
        partition = self.keys.partition_of(message.user_id)
        ids = [as_text(i) for i in recent_ids]
        if message.message_id not in ids:
            return []
        window = ids[: ids.index(message.message_id) + 1][-CONTEXT_MESSAGES:]
        for message_id in window:
            pipe.hmget(self.conversation.turn(partition, message_id), "t", "r")
        return window

    def queue_key(self, pipe: Pipeline, message: MessageReceived) -> str | None:
        """Add the read of the key that sealed ``message`` to ``pipe`` when this process has
        not cached it (so ``turns_from`` needs no round trip of its own for it); returns its
        key id, to pass with the answer to ``key_from``, or None when nothing was queued."""
        key_id = sealed_key_id(message.text)
        if key_id is None or self.content is None or self.content.is_cached(key_id):
            return None
        self.content.queue_read(pipe, message.user_id)
        return key_id

    def key_from(self, key_id: str, answer: object) -> None:
        """Keep the key a ``queue_key`` read found (nothing when it was destroyed)."""
        if self.content is not None:
            self.content.learn(key_id, answer)

    async def turns_from(self, message: MessageReceived, window: list[str],
                         rows: list[list[bytes | None]]) -> list[Turn]:
        """The turns read by ``queue_turns`` (its window and the pipeline's answers for it);
        from PostgreSQL when Redis no longer has them all."""
        if window and all(row[0] is not None for row in rows):
            texts = [as_text(v) for row in rows for v in row]
            opened = await self._opener(message.user_id, texts)
            return [Turn(mid, opened(as_text(t), "text") or ERASED,
                         opened(as_text(r), "reply_text"))
                    for mid, (t, r) in zip(window, rows, strict=True)]
        return await self._from_database(message)

    async def _from_database(self, message: MessageReceived) -> list[Turn]:
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                "SELECT id, text, reply_text FROM messages WHERE user_id = $1 AND id <> $2 "
                "AND text IS DISTINCT FROM $5 "
                "AND created_at <= to_timestamp($3 / 1000.0) "
                "ORDER BY created_at DESC LIMIT $4",
                message.user_id, message.message_id, message.received_at, CONTEXT_MESSAGES - 1,
                ERASED,
            )
        earlier = [Turn(str(r["id"]), r["text"] or "", r["reply_text"]) for r in reversed(rows)]
        opened = await self._opener(message.user_id, [message.text])
        return [*earlier, Turn(message.message_id, opened(message.text, "text") or ERASED, None)]

    def messages_after_inputs(self, message: MessageReceived) -> tuple[str, str]:
        """The user's tracking zset and the (exclusive) lower bound that counts the messages
        that came after this one."""
        partition = self.keys.partition_of(message.user_id)
        return (self.conversation.tracking(partition, message.user_id),
                f"({message.tracking_score}")

    def queue_messages_after(self, pipe: Pipeline, message: MessageReceived) -> None:
        """Add the count of the user's tracked messages that came after this one to ``pipe``
        (its answer is an int)."""
        tracking, after = self.messages_after_inputs(message)
        pipe.zcount(tracking, after, "+inf")

    async def already_replied_in_database(self, message_id: str) -> bool:
        async with self.pool.acquire() as connection:
            return bool(await connection.fetchval(
                "SELECT replied_at IS NOT NULL FROM messages WHERE id = $1", message_id))
