"""Every read of the console against PostgreSQL: one function per view, each bounded.

The projection tables are read as they are (``schema/tables.py``): identities of both kinds
(phone, BSUID) with the username last seen, and the furthest delivery status Meta reported
for each reply (joined through ``messages.reply_outbound_id``, one query per page). Reply
details the tables do not keep (contextual, fallback, dry-run, given up) come from the event
archive, looked up by the deterministic event id of a message's ReplySent / ReplyFailed
(primary-key reads, one per page).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import msgspec

from schema.events import ReplyFailed, ReplySent, decode_body
from schema.ids import event_id_for

__all__ = [
    "CONVERSATIONS_PAGE_SIZE",
    "MESSAGES_PAGE_SIZE",
    "ConversationRow",
    "DeliveryStatusRow",
    "IdentityRow",
    "MessageRow",
    "RateCounts",
    "ReplyFacts",
    "SummaryRow",
    "conversation_messages",
    "conversation_summary",
    "conversations_page",
    "delivery_statuses_of",
    "failed_deliveries_since",
    "failed_replies_since",
    "rate_counts",
    "reply_facts",
    "user_identities",
]

CONVERSATIONS_PAGE_SIZE = 50
MESSAGES_PAGE_SIZE = 50
SEARCH_MATCHES_CAP = 200  # a search that matches more is asked to be narrower
RATE_EVENTS_CAP = 100_000  # the chart reads at most this many archived events


@dataclass(frozen=True, slots=True)
class IdentityRow:
    channel: str
    channel_user_key: str
    kind: str = "phone"  # "phone" (E.164) or "bsuid"
    username: str | None = None  # the latest username Meta gave with this BSUID


@dataclass(frozen=True, slots=True)
class DeliveryStatusRow:
    """The furthest status Meta reported for a reply: sent, delivered, read or failed."""

    status: str
    status_at: datetime | None
    error_code: int | None
    error_title: str | None


@dataclass(frozen=True, slots=True)
class ConversationRow:
    user_id: str
    identities: list[IdentityRow]
    last_message_at: datetime
    messages: int
    replies: int


@dataclass(frozen=True, slots=True)
class MessageRow:
    message_id: str
    created_at: datetime
    content_type: str
    text: str | None
    replied_at: datetime | None
    reply_text: str | None


@dataclass(frozen=True, slots=True)
class ReplyFacts:
    """What the archive knows of a message's reply beyond its text."""

    sent: ReplySent | None
    failed: ReplyFailed | None


@dataclass(frozen=True, slots=True)
class SummaryRow:
    created_at: datetime
    range_start: datetime
    range_end: datetime
    status: str
    summary_text: str | None
    input_messages_count: int
    model_name: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class RateCounts:
    """Archived events per time bucket: ``{bucket index: count}`` for messages and replies."""

    messages: dict[int, int]
    replies: dict[int, int]
    capped: bool


def _search_keys(search: str) -> list[str]:
    """The identity keys a search may mean: as typed, and a phone with and without its +."""
    typed = search.strip()
    digits = typed.lstrip("+")
    keys = {typed}
    if digits.isdigit():
        keys.update({digits, "+" + digits})
    return sorted(keys)


async def _matching_users(connection: asyncpg.Connection, search: str) -> list[str]:
    """Users whose identity key equals or starts with ``search``, or whose id it is."""
    keys = _search_keys(search)
    prefix = keys[-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = await connection.fetch(
        "SELECT DISTINCT user_id FROM identities "
        "WHERE channel_user_key = ANY($1::text[]) OR channel_user_key LIKE $2 LIMIT $3",
        keys, prefix, SEARCH_MATCHES_CAP,
    )
    users = [str(r["user_id"]) for r in rows]
    try:
        users.append(str(uuid.UUID(search.strip())))
    except ValueError:
        pass
    return users


async def _identities_of(connection: asyncpg.Connection, user_ids: list[str]
                         ) -> dict[str, list[IdentityRow]]:
    rows = await connection.fetch(
        "SELECT user_id, channel, channel_user_key, kind, username FROM identities "
        "WHERE user_id = ANY($1::uuid[]) ORDER BY created_at, channel_user_key",
        user_ids,
    )
    out: dict[str, list[IdentityRow]] = {}
    for r in rows:
        out.setdefault(str(r["user_id"]), []).append(IdentityRow(
            channel=r["channel"], channel_user_key=r["channel_user_key"], kind=r["kind"],
            username=r["username"]))
    return out


async def conversations_page(connection: asyncpg.Connection, *, page: int, search: str = ""
                             ) -> tuple[list[ConversationRow], bool]:
    """One page (from 0) of users, latest message first, and whether a next page exists.

    With ``search`` (a phone with or without +, a key prefix, or a user id) only the matching
    users are listed.
    """
    limit = CONVERSATIONS_PAGE_SIZE
    users: list[str] | None = await _matching_users(connection, search) if search else None
    rows = await connection.fetch(
        "SELECT user_id, max(created_at) AS last_at, count(*) AS messages FROM messages "
        "WHERE $1::uuid[] IS NULL OR user_id = ANY($1::uuid[]) "
        "GROUP BY user_id ORDER BY last_at DESC, user_id DESC LIMIT $2 OFFSET $3",
        users, limit + 1, page * limit,
    )
    has_next = len(rows) > limit
    rows = rows[:limit]
    page_users = [str(r["user_id"]) for r in rows]
    replies = {str(r["user_id"]): int(r["n"]) for r in await connection.fetch(
        "SELECT user_id, count(*) AS n FROM messages "
        "WHERE user_id = ANY($1::uuid[]) AND replied_at IS NOT NULL GROUP BY user_id",
        page_users,
    )}
    identities = await _identities_of(connection, page_users)
    return [
        ConversationRow(
            user_id=user, identities=identities.get(user, []), last_message_at=r["last_at"],
            messages=int(r["messages"]), replies=replies.get(user, 0),
        )
        for user, r in zip(page_users, rows, strict=True)
    ], has_next


async def user_identities(connection: asyncpg.Connection, user_id: str) -> list[IdentityRow]:
    """The identities of one user (empty for an unknown user)."""
    return (await _identities_of(connection, [user_id])).get(user_id, [])


async def conversation_messages(
    connection: asyncpg.Connection, user_id: str, *, before: tuple[datetime, str] | None = None
) -> tuple[list[MessageRow], bool]:
    """The user's latest messages (newest first), older than ``before`` (created_at, id) when
    given, and whether older ones exist."""
    limit = MESSAGES_PAGE_SIZE
    rows = await connection.fetch(
        "SELECT id, created_at, content_type, text, replied_at, reply_text FROM messages "
        "WHERE user_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid)) "
        "ORDER BY created_at DESC, id DESC LIMIT $4",
        user_id, before[0] if before else None, before[1] if before else None, limit + 1,
    )
    return [
        MessageRow(
            message_id=str(r["id"]), created_at=r["created_at"], content_type=r["content_type"],
            text=r["text"], replied_at=r["replied_at"], reply_text=r["reply_text"],
        )
        for r in rows[:limit]
    ], len(rows) > limit


async def reply_facts(connection: asyncpg.Connection, message_ids: list[str]
                      ) -> dict[str, ReplyFacts]:
    """message id -> its archived ReplySent / ReplyFailed, for the messages that have one."""
    wanted = {event_id_for(kind, m): m for m in message_ids for kind in ("ReplySent",
                                                                          "ReplyFailed")}
    rows = await connection.fetch(
        "SELECT body FROM event_archive WHERE event_id = ANY($1::uuid[])", list(wanted))
    sent: dict[str, ReplySent] = {}
    failed: dict[str, ReplyFailed] = {}
    for r in rows:
        try:
            event = decode_body(bytes(r["body"]))
        except msgspec.DecodeError:
            continue  # an archived body this version cannot read shows as "no details"
        if isinstance(event, ReplySent):
            sent[event.message_id] = event
        elif isinstance(event, ReplyFailed):
            failed[event.message_id] = event
    return {m: ReplyFacts(sent=sent.get(m), failed=failed.get(m))
            for m in set(sent) | set(failed)}


async def delivery_statuses_of(connection: asyncpg.Connection, message_ids: list[str]
                               ) -> dict[str, DeliveryStatusRow]:
    """message id -> the furthest status Meta reported for its reply, for the messages whose
    reply has one (one primary-key join per message)."""
    rows = await connection.fetch(
        "SELECT m.id, d.status, d.status_at, d.error_code, d.error_title FROM messages m "
        "JOIN delivery_statuses d ON d.outbound_message_id = m.reply_outbound_id "
        "WHERE m.id = ANY($1::uuid[])",
        message_ids,
    )
    return {str(r["id"]): DeliveryStatusRow(status=r["status"], status_at=r["status_at"],
                                            error_code=r["error_code"],
                                            error_title=r["error_title"]) for r in rows}


async def conversation_summary(connection: asyncpg.Connection, user_id: str
                               ) -> SummaryRow | None:
    """The user's latest summary, or None."""
    r = await connection.fetchrow(
        "SELECT created_at, range_start, range_end, status, summary_text, input_messages_count, "
        "model_name, error FROM summaries WHERE user_id = $1 ORDER BY created_at DESC LIMIT 1",
        user_id,
    )
    if r is None:
        return None
    return SummaryRow(
        created_at=r["created_at"], range_start=r["range_start"], range_end=r["range_end"],
        status=r["status"], summary_text=r["summary_text"],
        input_messages_count=int(r["input_messages_count"]), model_name=r["model_name"],
        error=r["error"],
    )


async def rate_counts(connection: asyncpg.Connection, partitions: int, *, since_ms: int,
                      bucket_ms: int) -> RateCounts:
    """Messages received and replies sent per bucket since ``since_ms``, from the archive
    (what the projector applied), reading at most ``RATE_EVENTS_CAP`` events."""
    rows = await connection.fetch(
        "SELECT (entry_ms - $2) / $3 AS bucket, event_type, count(*) AS n FROM ("
        "  SELECT entry_ms, event_type FROM event_archive"
        "  WHERE partition = ANY($1::int[]) AND entry_ms >= $2 LIMIT $4"
        ") recent GROUP BY 1, 2",
        list(range(partitions)), since_ms, bucket_ms, RATE_EVENTS_CAP,
    )
    counts: dict[str, dict[int, int]] = {"MessageReceived": {}, "ReplySent": {}}
    for r in rows:
        if r["event_type"] in counts:
            counts[r["event_type"]][int(r["bucket"])] = int(r["n"])
    return RateCounts(messages=counts["MessageReceived"], replies=counts["ReplySent"],
                      capped=sum(int(r["n"]) for r in rows) >= RATE_EVENTS_CAP)


async def failed_replies_since(connection: asyncpg.Connection, partitions: int,
                               since_ms: int, cap: int = 1_000) -> int:
    """How many replies were given up on (ReplyFailed archived) since ``since_ms``, up to
    ``cap``."""
    return int(await connection.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM event_archive WHERE partition = ANY($1::int[]) "
        "AND entry_ms >= $2 AND event_type = 'ReplyFailed' LIMIT $3) failed",
        list(range(partitions)), since_ms, cap,
    ))


async def failed_deliveries_since(connection: asyncpg.Connection, since: datetime,
                                  cap: int = 1_000) -> int:
    """How many replies Meta reported failed (their status received since ``since``), up to
    ``cap``."""
    return int(await connection.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM delivery_statuses WHERE status = 'failed' "
        "AND updated_at >= $1 LIMIT $2) failed",
        since, cap,
    ))
