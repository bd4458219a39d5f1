"""``mecove forget <phone or BSUID>``: erase one person's content everywhere (SPEC §16).

Crypto-shredding (docs/decisions/0010-erasure-by-crypto-shredding.md): the person's data keys
are destroyed (the Redis hash first, so no append seals with them any more, then
``user_keys``), which leaves every sealed copy unreadable: stream entries, dead letters, the
archive, turn hashes. What was never sealed is erased in place: the projections' plaintext
(``erase_user_rows``), the conversation context and summary-hash keys, events written before
sealing existed (their archive bodies rewritten with the content erased, their stream entries
deleted with XDEL), the wrapped key's own UserKeyIssued entry, and unreadable messages that
name the person. A ``UserForgotten`` event (no content) records it, and makes a lagging
projector erase what it projects from before. Identity links stay: they hold no content, and
a person who writes again resolves to the same user id, now with a new key.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import msgspec
from redis.asyncio import Redis, RedisCluster

from app.platform.clock import now_ms
from app.platform.eventlog.append import EventLog
from app.platform.eventlog.content_crypto import ERASED, erase_content, has_plaintext_content
from app.platform.eventlog.content_keys import ContentKeys
from app.platform.eventlog.conversation_keys import ConversationKeys
from app.platform.eventlog.entries import (
    UndecodableEvent,
    as_text,
    decode_event,
    from_dead_letter_copy,
)
from app.platform.eventlog.keys import Keys
from app.platform.identities import IdentityKeys
from app.platform.redis_client import RedisClient
from projections.content_rows import erase_user_rows
from projections.projector import SWAP_LOCK_KEY
from schema.events import (
    AnyEvent,
    MessageUnreadable,
    UserForgotten,
    UserKeyIssued,
    decode_body,
    encode_body,
)
from schema.ids import NAMESPACE

__all__ = ["ForgetReport", "UnknownPerson", "forget", "rewrite_append_only_files"]

SCAN_COUNT = 1_000
SUMMARY_HASH = "summary:hash:"  # consumers.summarizer.summary_keys.SummaryKeys.input_hash


class UnknownPerson(Exception):
    """No user has this phone or BSUID."""


@dataclass(slots=True)
class ForgetReport:
    user_id: str = ""
    keys_destroyed: int = 0
    messages_erased: int = 0
    summaries_erased: int = 0
    archive_rows_rewritten: int = 0
    stream_entries_deleted: int = 0
    redis_keys_deleted: int = 0
    unreadable_erased: int = 0


async def find_user(redis: Redis, key_prefix: str, connection: asyncpg.Connection,
                    identity: str) -> str:
    """The user id of a phone (E.164 with +) or a BSUID; raises UnknownPerson."""
    links = IdentityKeys(key_prefix)
    linked = await redis.get(links.phone(identity) if identity.startswith("+")
                             else links.bsuid(identity))
    if linked is not None:
        return as_text(linked)
    found = await connection.fetchval(
        "SELECT user_id FROM identities WHERE channel_user_key = $1 LIMIT 1", identity)
    if found is None:
        raise UnknownPerson(f"no user has the phone or BSUID {identity!r}")
    return str(found)


async def forget(redis: Redis, keys: Keys, content: ContentKeys | None, database_url: str,
                 identity: str, *, clock_ms: Callable[[], int] = now_ms) -> ForgetReport:
    """Erase the content of the person named by ``identity``; returns what was erased."""
    report = ForgetReport()
    connection = await asyncpg.connect(database_url)
    try:
        user_id = report.user_id = await find_user(redis, keys.prefix, connection, identity)
        partition = keys.partition_of(user_id)
        forgotten_at = clock_ms()
        key_hash = keys.key(partition, f"contentkey:{user_id}")
        current = await redis.hmget(key_hash, "id", "entry")
        await redis.delete(key_hash)  # from here on no append seals with the old key
        key_ids = {as_text(current[0])} if current[0] is not None else set()
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", SWAP_LOCK_KEY)
            key_ids |= {r["key_id"] for r in await connection.fetch(
                "DELETE FROM user_keys WHERE user_id = $1 RETURNING key_id", user_id)}
            report.messages_erased, report.summaries_erased = await erase_user_rows(
                connection, user_id, datetime.fromtimestamp(forgotten_at / 1000, tz=UTC))
            report.archive_rows_rewritten = await _rewrite_plaintext_archive(
                connection, partition, user_id, identity)
            report.unreadable_erased = await connection.fetchval(
                "WITH e AS (UPDATE unreadable_messages SET raw_message = $2, raw_contacts = NULL "
                "WHERE strpos(raw_message, $1) > 0 OR strpos(raw_contacts, $1) > 0 "
                "RETURNING 1) SELECT count(*) FROM e", identity, ERASED)
            message_ids = [str(r["id"]) for r in await connection.fetch(
                "SELECT id FROM messages WHERE user_id = $1", user_id)]
        report.keys_destroyed = len(key_ids)
        if content is not None:
            content.drop(user_id)
        report.redis_keys_deleted = await _delete_context(redis, keys, partition, user_id,
                                                          message_ids)
        report.stream_entries_deleted = await _delete_plaintext_entries(
            redis, keys, user_id, identity)
        await EventLog(redis, keys).append(UserForgotten(
            event_id=str(_event_id(user_id, forgotten_at)), occurred_at=forgotten_at,
            user_id=user_id, key_ids=sorted(key_ids), forgotten_at=forgotten_at),
            user_id=user_id)
    finally:
        await connection.close()
    return report


def _event_id(user_id: str, at_ms: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"event:UserForgotten:{user_id}:{at_ms}"))


def _owner(event: AnyEvent) -> str | None:
    return getattr(event, "user_id", None)


def _names_person(event: AnyEvent, identity: str) -> bool:
    return isinstance(event, MessageUnreadable) and (
        identity in event.raw_message or identity in (event.raw_contacts or ""))


async def _rewrite_plaintext_archive(connection: asyncpg.Connection, partition: int,
                                     user_id: str, identity: str) -> int:
    """Archive bodies of the user written before sealing (and unreadable messages naming the
    person, in any partition), rewritten with their content erased; returns how many."""
    rows = await connection.fetch(
        "SELECT event_id, body FROM event_archive WHERE (partition = $1 AND event_type = ANY("
        "$2::text[])) OR (event_type = 'MessageUnreadable' AND position($3 in body) > 0)",
        partition, ["MessageReceived", "ReplySent", "SummaryCreated"], identity.encode())
    rewritten = 0
    for row in rows:
        event = decode_body(row["body"])
        if _names_person(event, identity):
            erased: object = msgspec.structs.replace(event, raw_message=ERASED,
                                                     raw_contacts=None)
        elif _owner(event) == user_id and has_plaintext_content(event):
            erased = erase_content(event)
        else:
            continue
        await connection.execute("UPDATE event_archive SET body = $2 WHERE event_id = $1",
                                 row["event_id"], encode_body(erased))  # type: ignore[arg-type]
        rewritten += 1
    return rewritten


async def _delete_context(redis: Redis, keys: Keys, partition: int, user_id: str,
                          message_ids: list[str]) -> int:
    """The user's conversation context and summary hash: every key that held plaintext or
    could point at content."""
    conversation = ConversationKeys(keys)
    recent = conversation.recent(partition, user_id)
    tracking = conversation.tracking(partition, user_id)
    ids = set(message_ids) | {as_text(i) for i in await redis.lrange(recent, 0, -1)}
    ids |= {as_text(i) for i in await redis.zrange(tracking, 0, -1)}
    names = [recent, tracking, keys.key(partition, f"{SUMMARY_HASH}{user_id}"),
             *(conversation.turn(partition, i) for i in ids)]
    deleted = 0
    for start in range(0, len(names), SCAN_COUNT):
        deleted += int(await redis.delete(*names[start:start + SCAN_COUNT]))
    return deleted


async def _delete_plaintext_entries(redis: Redis, keys: Keys, user_id: str,
                                    identity: str) -> int:
    """XDEL what no key destruction covers: the user's entries written before sealing, their
    UserKeyIssued (it carries the wrapped key), unreadable messages naming the person; in
    the streams and the dead letters of every partition."""
    deleted = 0
    for partition in range(keys.partitions):
        for stream, in_dead_letters in ((keys.stream(partition), False),
                                        (keys.dead_letters(partition), True)):
            doomed: list[bytes] = []
            after = "-"
            while True:
                entries = await redis.xrange(stream, min=after, max="+", count=SCAN_COUNT)
                for entry_id, fields in entries:
                    try:
                        event = decode_event(from_dead_letter_copy(fields) if in_dead_letters
                                             else fields)
                    except UndecodableEvent:
                        continue
                    mine = _owner(event) == user_id and (
                        isinstance(event, UserKeyIssued) or has_plaintext_content(event))
                    if mine or _names_person(event, identity):
                        doomed.append(entry_id)
                if len(entries) < SCAN_COUNT:
                    break
                after = "(" + as_text(entries[-1][0])
            if doomed:
                deleted += int(await redis.xdel(stream, *doomed))
    return deleted


async def rewrite_append_only_files(redis: RedisClient) -> int:
    """``BGREWRITEAOF`` wherever a deleted key may still sit in an AOF: the one Redis, or every
    node of a cluster (masters and replicas; a keyless command reaches one node only unless
    told which). Returns how many nodes started a rewrite."""
    if not isinstance(redis, RedisCluster):
        await redis.bgrewriteaof()
        return 1
    await redis.initialize()
    nodes = redis.get_nodes()
    for node in nodes:
        await redis.bgrewriteaof(target_nodes=node)  # type: ignore[call-arg]
    return len(nodes)
