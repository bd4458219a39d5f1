"""Data for the console's tests: events appended to the log the way the service appends them,
then projected by the real projector, so the pages read real rows and a real archive."""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from app.devtools.webhook_bodies import delivery, encode, text_message, username_text_message
from app.ingress.parse_webhook import (
    DeliveryStatus,
    events_from_texts,
    parse_webhook,
    status_event,
)
from app.platform.clock import now_ms
from app.platform.eventlog.append import EventLog
from app.platform.eventlog.entries import EVENT_ID, dead_letter_copy
from app.platform.eventlog.keys import Keys
from app.platform.settings import Settings
from consumers.replier.reply_outcome import ReplyOutcomes
from projections.projector import Projector
from schema.events import MessageReceived, ReplyFailed, ReplySent, SummaryCreated
from schema.ids import event_id_for
from tests.service import consumers, eventually

CONSOLE_TOKEN = "console-test-token-0123456789abcdef"


def console_settings(settings: Settings) -> Settings:
    """``settings`` with the console on."""
    import msgspec

    return msgspec.structs.replace(settings, console_token=CONSOLE_TOKEN)


async def receive(redis: Redis, settings: Settings, phone: str, texts: list[str],
                  received_ms: int | None = None) -> list[MessageReceived]:
    """One webhook from ``phone`` carrying ``texts``, appended as the ingress appends it."""
    at = received_ms if received_ms is not None else now_ms()
    parsed = parse_webhook(encode(delivery(*[
        text_message(phone, text, wamid=f"wamid.{uuid.uuid4().hex}") for text in texts])))
    events = events_from_texts(parsed.texts, at)
    await EventLog.from_settings(settings, redis).append_messages(events)
    return events


async def receive_from_username(redis: Redis, settings: Settings, bsuid: str, texts: list[str],
                                username: str) -> list[MessageReceived]:
    """One webhook from a user Meta names only by ``bsuid`` (and ``username``), appended as
    the ingress appends a first sighting."""
    parsed = parse_webhook(encode(delivery(
        *[username_text_message(bsuid, text) for text in texts], usernames={bsuid: username})))
    events = events_from_texts(parsed.texts, now_ms())
    await EventLog.from_settings(settings, redis).append_messages(events)
    return events


async def reply(redis: Redis, settings: Settings, message: MessageReceived, text: str, *,
                contextual: bool = False, fallback: bool = False, at_ms: int | None = None
                ) -> str:
    """Record a sent reply to ``message`` the way the replier records it; returns the reply's
    outbound (Meta) id."""
    at = at_ms if at_ms is not None else message.received_at + 1_000
    outbound_id = f"wamid.out.{uuid.uuid4().hex}"
    await ReplyOutcomes.from_settings(settings, redis).record(ReplySent(
        event_id=event_id_for("ReplySent", message.message_id), occurred_at=at,
        message_id=message.message_id, user_id=message.user_id, reply_text=text,
        replied_at=at, contextual=contextual, outbound_message_id=outbound_id,
        model="test-model", fallback_used=fallback))
    return outbound_id


async def report_status(redis: Redis, settings: Settings, outbound_id: str, status: str, *,
                        error_code: int | None = None, error_title: str | None = None) -> None:
    """Append Meta's ``status`` of the reply ``outbound_id`` the way the ingress appends it."""
    at = now_ms()
    event = status_event(DeliveryStatus(
        outbound_message_id=outbound_id, status=status, status_at=at // 1000, recipient=None,
        recipient_bsuid=None, error_code=error_code, error_title=error_title), at)
    await EventLog.from_settings(settings, redis).append(event, user_id=event.event_id)


async def fail_reply(redis: Redis, settings: Settings, message: MessageReceived) -> None:
    """Record that the replier gave up on ``message``."""
    await ReplyOutcomes.from_settings(settings, redis).record(ReplyFailed(
        event_id=event_id_for("ReplyFailed", message.message_id),
        occurred_at=message.received_at + 2_000, message_id=message.message_id,
        user_id=message.user_id, attempts=3, error="graph api: 131047 re-engagement",
        retryable=False))


async def summarize(redis: Redis, settings: Settings, message: MessageReceived, text: str
                    ) -> None:
    summary_id = str(uuid.uuid4())
    await EventLog.from_settings(settings, redis).append(SummaryCreated(
        event_id=event_id_for("SummaryCreated", summary_id), occurred_at=message.received_at + 5,
        summary_id=summary_id, user_id=message.user_id, range_start=message.received_at - 1,
        range_end=message.received_at + 5, status="success", summary_text=text,
        model_name="test-model", prompt_version="s1", input_messages_count=1,
        input_hash="0" * 64, error=None), user_id=message.user_id)


async def dead_letter(redis: Redis, settings: Settings, message: MessageReceived,
                      group: str = "replier") -> str:
    """Dead-letter ``message``'s stream entry for ``group`` (a record as the runtime writes
    it); returns the dead letter's id."""
    keys = Keys.from_settings(settings)
    partition = keys.partition_of(message.user_id)
    for entry_id, fields in await redis.xrange(keys.stream(partition)):
        if fields.get(EVENT_ID) == message.event_id.encode():
            record = {b"entry_id": entry_id, b"stream": keys.stream(partition).encode(),
                      b"group": group.encode(), b"attempts": b"3",
                      b"error": b"RetryableError: graph api unavailable",
                      b"at": str(now_ms()).encode(), **dead_letter_copy(fields)}
            return (await redis.xadd(keys.dead_letters(partition), record)).decode()
    raise AssertionError(f"no entry for {message.message_id}")


async def _projected(redis: Redis, settings: Settings) -> bool:
    keys = Keys.from_settings(settings)
    for stream in keys.streams():
        tail = await redis.xrevrange(stream, count=1)
        if not tail:
            continue
        groups = {g["name"]: g for g in await redis.xinfo_groups(stream)}
        group = groups.get(b"projector")
        if group is None or group["pending"] or group["last-delivered-id"] != tail[0][0]:
            return False
    return True


async def project(redis: Redis, settings: Settings) -> None:
    """Run the projector until every appended entry is in the tables."""
    async with consumers(settings, [Projector.from_settings(settings)]):
        await eventually(lambda: _projected(redis, settings), timeout=30)
