"""Every event of the log, as one msgspec tagged union, and its JSON body.

How an event is laid out in a Redis stream entry is the event log's business
(``app/platform/eventlog/entries.py``); here is only what an event is and its body's codec.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

SCHEMA_VERSION = 1


class Event(msgspec.Struct, frozen=True, tag_field="type", forbid_unknown_fields=False):
    """Base of every event; ``event_id`` is deterministic where it can be."""

    event_id: str
    occurred_at: int  # ms since the epoch


class MessageReceived(Event, frozen=True, tag="MessageReceived"):
    user_id: str
    identity_id: str
    message_id: str
    channel: str
    channel_user_key: str  # E.164 with +
    source_message_id: str  # Meta's wamid
    content_type: str
    text: str
    client_timestamp: int | None  # seconds since the epoch, as Meta sends it
    received_at: int  # server ms
    tracking_score: float  # score in the user's tracking ZSET (received_at plus a tie-break)
    raw_payload: dict[str, Any] | None = None


class ReplySent(Event, frozen=True, tag="ReplySent"):
    message_id: str
    user_id: str
    reply_text: str
    replied_at: int  # ms
    contextual: bool
    outbound_message_id: str | None
    model: str | None
    fallback_used: bool
    dry_run: bool = False


class ReplyFailed(Event, frozen=True, tag="ReplyFailed"):
    message_id: str
    user_id: str
    attempts: int
    error: str
    retryable: bool


class SummaryRequested(Event, frozen=True, tag="SummaryRequested"):
    user_id: str
    range: Literal["last_7_days"] = "last_7_days"


class SummaryCreated(Event, frozen=True, tag="SummaryCreated"):
    summary_id: str
    user_id: str
    range_start: int  # ms
    range_end: int  # ms
    status: str
    summary_text: str | None
    model_name: str | None
    prompt_version: str | None
    input_messages_count: int
    input_hash: str | None
    error: str | None


AnyEvent = MessageReceived | ReplySent | ReplyFailed | SummaryRequested | SummaryCreated

EVENT_TYPES: tuple[type[Event], ...] = (
    MessageReceived,
    ReplySent,
    ReplyFailed,
    SummaryRequested,
    SummaryCreated,
)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)


def event_type_name(event: Event) -> str:
    """The event's tag, e.g. ``"MessageReceived"``."""
    return type(event).__struct_config__.tag  # type: ignore[return-value]


def encode_body(event: Event) -> bytes:
    """Event -> JSON body (tag included)."""
    return _encoder.encode(event)


def decode_body(body: bytes) -> AnyEvent:
    """JSON body -> event; raises msgspec.DecodeError when it is not one."""
    return _decoder.decode(body)
