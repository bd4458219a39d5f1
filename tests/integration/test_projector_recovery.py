"""The projector's exactly-once effect: crashes between commit and XACK change nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest
from redis.asyncio import Redis

from app.devtools.webhook_bodies import delivery, encode, text_message
from app.ingress.parse_webhook import events_from_texts, parse_webhook
from app.platform.checkpoints import read_checkpoint
from app.platform.eventlog.append import EventLog, content_keys_for
from app.platform.eventlog.content_crypto import ERASED
from app.platform.eventlog.entries import Position, decode_event
from app.platform.eventlog.keys import Keys
from app.platform.runtime.consumer_group import ensure_group
from app.platform.runtime.handler import Delivery
from app.platform.settings import Settings
from consumers.replier.reply_outcome import ReplyOutcomes
from projections.projector import Projector
from schema.events import ReplySent, SummaryCreated, UserForgotten, UserKeyIssued
from schema.ids import event_id_for
from tests.integration.consumer_helpers import fetch_rows
from tests.service import consumers, eventually


async def _append_texts(redis: Redis, settings: Settings, count: int, sender: str) -> list:
    log = EventLog(redis, Keys(settings.key_prefix, 1))
    messages = [text_message(sender, f"text {i}", wamid=f"wamid.{sender}.{i}")
                for i in range(count)]
    events = events_from_texts(parse_webhook(encode(delivery(*messages))).texts, 1_700_000_000_000)
    await log.append_messages(events)
    return events


async def _checkpoint_once_projected(settings: Settings, *, messages: int) -> Position:
    """Run a projector until ``messages`` message rows exist, stop it; its checkpoint then."""
    async with consumers(settings, [Projector.from_settings(settings)]):
        async def projected() -> bool:
            rows = await fetch_rows(settings.database_url, "SELECT id FROM messages")
            return len(rows) == messages
        await eventually(projected)
    connection = await asyncpg.connect(settings.database_url)
    try:
        return await read_checkpoint(connection, 0)
    finally:
        await connection.close()


async def test_projector_dying_after_commit_before_ack_has_no_duplicate_effect(
    settings: Settings, redis: Redis
) -> None:
    await _append_texts(redis, settings, 5, "15550002001")
    keys = Keys(settings.key_prefix, 1)
    await ensure_group(redis, keys.stream(0), "projector")
    # A first projector reads the batch and commits it, then "dies" before XACK.
    response = await redis.xreadgroup("projector", "doomed", {keys.stream(0): ">"}, count=10)
    deliveries = [Delivery(0, e[0].decode(), decode_event(e[1]), 1) for e in response[0][1]]
    doomed = Projector.from_settings(settings)
    await doomed.handle(deliveries)
    await doomed.close()
    pending = await redis.xpending(keys.stream(0), "projector")
    assert pending["pending"] == 5
    archived_before = await fetch_rows(settings.database_url, "SELECT event_id FROM event_archive")

    # A new projector adopts the dead one's pending entries: skipped by the checkpoint, acked.
    async with consumers(settings, [Projector.from_settings(settings)]):
        async def acked() -> bool:
            return (await redis.xpending(keys.stream(0), "projector"))["pending"] == 0
        await eventually(acked)
    messages = await fetch_rows(settings.database_url, "SELECT id FROM messages")
    archived_after = await fetch_rows(settings.database_url, "SELECT event_id FROM event_archive")
    assert len(messages) == 5
    assert sorted(archived_after) == sorted(archived_before)


async def test_restarted_projector_resumes_from_its_checkpoint(
    settings: Settings, redis: Redis
) -> None:
    await _append_texts(redis, settings, 3, "15550002002")
    first_checkpoint = await _checkpoint_once_projected(settings, messages=3)

    await _append_texts(redis, settings, 4, "15550002003")
    second_checkpoint = await _checkpoint_once_projected(settings, messages=7)
    tail = await redis.xrevrange(Keys(settings.key_prefix, 1).stream(0), count=1)
    last_ms, last_seq = (int(x) for x in tail[0][0].decode().split("-"))
    assert first_checkpoint < second_checkpoint == (last_ms, last_seq)
    archived = await fetch_rows(settings.database_url, "SELECT count(*) AS n FROM event_archive")
    assert archived[0]["n"] == 7


async def test_reply_sent_and_summary_created_are_projected(
    settings: Settings, redis: Redis
) -> None:
    events = await _append_texts(redis, settings, 2, "15550002004")
    log = EventLog(redis, Keys(settings.key_prefix, 1))
    target = events[0]
    await ReplyOutcomes(redis, log.keys).record(ReplySent(
        event_id=event_id_for("ReplySent", target.message_id), occurred_at=1_700_000_001_000,
        message_id=target.message_id, user_id=target.user_id, reply_text="Got it, thanks!",
        replied_at=1_700_000_001_000, contextual=False, outbound_message_id="wamid.out1",
        model="openai/gpt-oss-20b", fallback_used=False,
    ))
    await log.append(SummaryCreated(
        event_id=event_id_for("SummaryCreated", "s1"), occurred_at=1_700_000_002_000,
        summary_id="1b4e28ba-2fa1-41d2-883f-0016d3cca427", user_id=target.user_id,
        range_start=1_699_395_200_000, range_end=1_700_000_002_000, status="success",
        summary_text="Two messages.", model_name="openai/gpt-oss-20b", prompt_version="s1",
        input_messages_count=2, input_hash="ab" * 32, error=None,
    ), user_id=target.user_id)
    async with consumers(settings, [Projector.from_settings(settings)]):
        async def projected() -> bool:
            rows = await fetch_rows(settings.database_url, "SELECT id FROM summaries")
            return len(rows) == 1
        await eventually(projected)
    replied = await fetch_rows(settings.database_url,
                          "SELECT id, reply_text, replied_at FROM messages WHERE replied_at "
                          "IS NOT NULL")
    summary = (await fetch_rows(settings.database_url, "SELECT * FROM summaries"))[0]
    assert [(str(r["id"]), r["reply_text"]) for r in replied] == [
        (target.message_id, "Got it, thanks!")]
    assert summary["input_messages_count"] == 2
    assert summary["summary_text"] == "Two messages."
    assert summary["prompt_version"] == "s1"


async def test_second_projector_stands_by_while_the_first_holds_the_lease(
    settings: Settings, redis: Redis
) -> None:
    await _append_texts(redis, settings, 4, "15550002005")
    first = Projector.from_settings(settings)
    second = Projector.from_settings(settings)
    async with consumers(settings, [first, second]):
        async def four() -> bool:
            return len(await fetch_rows(settings.database_url, "SELECT id FROM messages")) == 4
        await eventually(four)
        holders = [p for p in (first, second) if p._connections]
        assert len(holders) == 1


async def _sealed_deliveries(redis: Redis, settings: Settings, sender: str, count: int
                             ) -> list[Delivery]:
    """A new sender's messages appended sealed: the key's UserKeyIssued first, then them."""
    keys = Keys(settings.key_prefix, 1)
    log = EventLog(redis, keys, content=content_keys_for(settings, redis))
    messages = [text_message(sender, f"sealed words {i}", wamid=f"wamid.{sender}.{i}")
                for i in range(count)]
    await log.append_messages(events_from_texts(
        parse_webhook(encode(delivery(*messages))).texts, 1_700_000_000_000))
    await ensure_group(redis, keys.stream(0), "projector")
    response = await redis.xreadgroup("projector", "test", {keys.stream(0): ">"}, count=100)
    return [Delivery(0, e[0].decode(), decode_event(e[1]), 1, body=e[1][b"body"])
            for e in response[0][1]]


@contextlib.asynccontextmanager
async def _leased(settings: Settings) -> AsyncIterator[Projector]:
    """A projector holding partition 0's lease, closed after."""
    projector = Projector.from_settings(settings)
    try:
        assert await projector.acquire_partition(0, asyncio.Event())
        yield projector
    finally:
        await projector.close()


@pytest.mark.parametrize("issued_built_ahead", [False, True])
async def test_rows_built_ahead_open_content_sealed_with_a_key_the_batch_before_stores(
    settings: Settings, redis: Redis, issued_built_ahead: bool
) -> None:
    # The runtime builds a batch's rows while the batch before it is written: here the batch
    # before stores the key (UserKeyIssued) the next one's content is sealed with. Built ahead
    # too, that batch lends its key to the next, whose rows then stand (checked against
    # user_keys in its transaction) instead of being built again.
    sender = "15550002012" if issued_built_ahead else "15550002010"
    issued, *received = await _sealed_deliveries(redis, settings, sender, 3)
    assert isinstance(issued.event, UserKeyIssued)
    async with _leased(settings) as projector:
        if issued_built_ahead:
            await projector.prepare([issued])
        await projector.prepare(received)  # user_keys does not hold the key yet
        lent = [k for p in projector._prepared.values() for k in p.pending_keys]
        assert lent == ([issued.event.key_id] if issued_built_ahead else [])
        assert await projector.handle([issued]) == [None]
        assert await projector.handle(received) == [None, None, None]
    texts = await fetch_rows(settings.database_url, "SELECT text FROM messages ORDER BY text")
    assert [t["text"] for t in texts] == [f"sealed words {i}" for i in range(3)]


async def test_rows_built_ahead_are_the_rows_built_in_the_transaction(
    settings: Settings, redis: Redis
) -> None:
    issued, *received = await _sealed_deliveries(redis, settings, "15550002011", 4)
    async with _leased(settings) as projector:
        assert await projector.handle([issued]) == [None]
        await projector.prepare(received[:2])  # the key is in user_keys now
        assert await projector.handle(received[:2]) == [None, None]
        assert await projector.handle(received[2:]) == [None, None]  # built in its transaction
    rows = await fetch_rows(settings.database_url,
                            "SELECT text, raw_payload IS NOT NULL AS raw FROM messages "
                            "ORDER BY text")
    assert [(r["text"], r["raw"]) for r in rows] == [(f"sealed words {i}", True)
                                                      for i in range(4)]
    archived = await fetch_rows(settings.database_url, "SELECT body FROM event_archive")
    assert len(archived) == 4
    assert all(b"sealed words" not in bytes(r["body"]) for r in archived)  # archived sealed


async def test_rows_built_with_a_key_user_keys_never_got_are_built_again(
    settings: Settings, redis: Redis
) -> None:
    # The batch carrying the key is never written: the rows built ahead with its key are
    # dropped, and the transaction, finding no key, erases the content.
    issued, *received = await _sealed_deliveries(redis, settings, "15550002013", 2)
    async with _leased(settings) as projector:
        await projector.prepare([issued])
        await projector.prepare(received)
        assert await projector.handle(received) == [None, None]
    texts = await fetch_rows(settings.database_url, "SELECT text FROM messages")
    assert [t["text"] for t in texts] == [ERASED, ERASED]


async def _delete_stored_key(settings: Settings, key_id: str) -> None:
    """What ``mecove forget`` does to ``user_keys`` (before its UserForgotten is projected)."""
    connection = await asyncpg.connect(settings.database_url)
    try:
        await connection.execute("DELETE FROM user_keys WHERE key_id = $1", key_id)
    finally:
        await connection.close()


@pytest.mark.parametrize("built_ahead", [False, True])
async def test_a_key_unwrapped_by_an_earlier_batch_is_not_used_once_user_keys_lost_it(
    settings: Settings, redis: Redis, built_ahead: bool
) -> None:
    # The projector keeps the keys it unwrapped across batches, but each batch still asks
    # user_keys: once forget deleted the key there, content sealed with it (a lagging or
    # retried entry) is written erased, and the kept key is dropped.
    sender = "15550002015" if built_ahead else "15550002014"
    issued, first, *later = await _sealed_deliveries(redis, settings, sender, 3)
    async with _leased(settings) as projector:
        assert await projector.handle([issued, first]) == [None, None]
        assert projector._unwrapped is not None
        assert issued.event.key_id in projector._unwrapped
        await _delete_stored_key(settings, issued.event.key_id)
        if built_ahead:
            await projector.prepare(later)
        assert await projector.handle(later) == [None, None]
        assert issued.event.key_id not in projector._unwrapped
    texts = await fetch_rows(settings.database_url, "SELECT text FROM messages ORDER BY text")
    assert sorted(t["text"] for t in texts) == [ERASED, ERASED, "sealed words 0"]


async def test_a_key_is_unwrapped_once_for_the_batches_that_use_it(
    settings: Settings, redis: Redis
) -> None:
    issued, *received = await _sealed_deliveries(redis, settings, "15550002016", 4)
    async with _leased(settings) as projector:
        assert projector.master is not None
        unwrapped: list[str] = []
        raw_key = projector.master.raw_key

        def counting(wrapped: str, key_id: str) -> bytes:
            unwrapped.append(key_id)
            return raw_key(wrapped, key_id)

        projector.master.raw_key = counting  # type: ignore[method-assign]
        assert await projector.handle([issued]) == [None]
        for i, delivery_ in enumerate(received):  # built ahead or in the transaction
            if i % 2:
                await projector.prepare([delivery_])
            assert await projector.handle([delivery_]) == [None]
    assert unwrapped == [issued.event.key_id]
    texts = await fetch_rows(settings.database_url, "SELECT text FROM messages ORDER BY text")
    assert [t["text"] for t in texts] == [f"sealed words {i}" for i in range(4)]


async def test_a_kept_key_is_dropped_when_an_erasure_naming_it_is_folded(
    settings: Settings, redis: Redis
) -> None:
    issued, first = await _sealed_deliveries(redis, settings, "15550002017", 1)
    assert isinstance(issued.event, UserKeyIssued)
    async with _leased(settings) as projector:
        assert await projector.handle([issued, first]) == [None, None]
        assert projector._unwrapped is not None
        assert issued.event.key_id in projector._unwrapped
        forgotten = UserForgotten(event_id=event_id_for("forgotten", issued.event.user_id),
                                  occurred_at=1_700_000_001_000, user_id=issued.event.user_id,
                                  key_ids=[issued.event.key_id], forgotten_at=1_700_000_001_000)
        await projector.prepare([Delivery(0, "1700000001000-0", forgotten, 1)])
        assert issued.event.key_id not in projector._unwrapped


async def test_a_small_batch_of_kept_keys_asks_user_keys_in_its_transaction_only(
    settings: Settings, redis: Redis
) -> None:
    # Built ahead with a kept key, a small batch asks nothing before its transaction (no key
    # reader opened); the key is pending, checked with the checkpoint, and the rows stand.
    issued, first, *later = await _sealed_deliveries(redis, settings, "15550002018", 3)
    async with _leased(settings) as projector:
        assert await projector.handle([issued, first]) == [None, None]
        await projector.prepare(later)
        assert 0 not in projector._key_readers
        assert [k for p in projector._prepared.values() for k in p.pending_keys] == [
            issued.event.key_id]
        assert await projector.handle(later) == [None, None]
        assert not projector._prepared  # taken, not built again
    texts = await fetch_rows(settings.database_url, "SELECT text FROM messages ORDER BY text")
    assert [t["text"] for t in texts] == [f"sealed words {i}" for i in range(3)]
