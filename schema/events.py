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
    channel_user_key: str  # the identity the message came from: E.164 with +, else the BSUID
    source_message_id: str  # Meta's wamid
    content_type: str
    text: str
    client_timestamp: int | None  # seconds since the epoch, as Meta sends it
    received_at: int  # server ms
    tracking_score: float  # score in the user's tracking ZSET (received_at plus a tie-break)
    # A str once sealed (content_crypto). The ingress builds it as ``msgspec.Raw``, the message
    # object's JSON as received (encoded verbatim, sealed without encoding it again); read
    # back from the log it is a dict (or the sealed str).
    raw_payload: dict[str, Any] | str | msgspec.Raw | None = None
    # Identities of ``user_id`` decided at ingress (replay copies them, never re-decides).
    # Events written before identities existed carry none: ``channel_user_key`` says it all.
    phone: str | None = None  # E.164 with +, when Meta gave one and it belongs to this user
    bsuid: str | None = None  # business-scoped user id, e.g. ``US.13491208655302741918``
    parent_bsuid: str | None = None  # ``CC.ENT.…`` when the business has parent BSUIDs
    username: str | None = None  # display only: users may change it
    recovered_from: str | None = None  # event id of the MessageUnreadable this one reads

    @property
    def sender_phone(self) -> str | None:
        """The sender's phone (events written before BSUIDs name it only as their user key)."""
        if self.phone is not None or self.bsuid is not None:
            return self.phone
        return self.channel_user_key if self.channel_user_key.startswith("+") else None

    @property
    def sender_bsuid(self) -> str | None:
        if self.bsuid is not None:
            return self.bsuid
        return None if self.channel_user_key.startswith("+") else self.channel_user_key


class MessageUnreadable(Event, frozen=True, tag="MessageUnreadable"):
    """A message object of an acknowledged webhook that this version could not read.

    Kept whole so that a later version can turn it into a MessageReceived (``mecove replay``).
    """

    reason: str
    raw_message: str  # the message object's JSON, exactly as received
    raw_contacts: str | None  # the ``contacts`` of the same change, JSON, when present
    received_at: int  # server ms


class DeliveryStatusReceived(Event, frozen=True, tag="DeliveryStatusReceived"):
    """Meta's report on a message we sent: ``sent``, ``delivered``, ``read`` or ``failed``."""

    outbound_message_id: str  # the wamid Meta gave our reply
    status: str
    status_at: int | None  # Meta's timestamp, seconds
    recipient: str | None  # ``recipient_id`` as Meta wrote it: a phone or a BSUID
    recipient_bsuid: str | None
    error_code: int | None
    error_title: str | None
    received_at: int  # server ms


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


class UserKeyIssued(Event, frozen=True, tag="UserKeyIssued"):
    """A user's content key was made: carries it, wrapped, to PostgreSQL's ``user_keys``.

    Never archived (the archive is forever; the key's one durable home is ``user_keys``, where
    ``mecove forget`` destroys it); ``mecove forget`` deletes its stream entry.
    """

    user_id: str
    key_id: str
    wrapped_key: str  # the data key wrapped by the master key (``content_crypto.wrap_key``)


class UserForgotten(Event, frozen=True, tag="UserForgotten"):
    """``mecove forget`` destroyed the user's content keys; holds no content."""

    user_id: str
    key_ids: list[str]
    forgotten_at: int  # ms


AnyEvent = (
    MessageReceived | ReplySent | ReplyFailed | SummaryRequested | SummaryCreated
    | MessageUnreadable | DeliveryStatusReceived | UserKeyIssued | UserForgotten
)

EVENT_TYPES: tuple[type[Event], ...] = (
    MessageReceived,
    MessageUnreadable,
    DeliveryStatusReceived,
    ReplySent,
    ReplyFailed,
    SummaryRequested,
    SummaryCreated,
    UserKeyIssued,
    UserForgotten,
)

_TAGS: dict[type[Event], str] = {
    kind: kind.__struct_config__.tag for kind in EVENT_TYPES  # type: ignore[misc]
}
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)


def event_type_name(event: Event) -> str:
    """The event's tag, e.g. ``"MessageReceived"``."""
    return event_type_name_of(type(event))


def event_type_name_of(kind: type[Event]) -> str:
    """An event type's tag, e.g. ``"MessageReceived"``."""
    tag = _TAGS.get(kind)
    # ``__struct_config__`` makes a new config object at each access: read once per type.
    return tag if tag is not None else kind.__struct_config__.tag  # type: ignore[return-value]


def encode_body(event: Event) -> bytes:
    """Event -> JSON body (tag included)."""
    return _encoder.encode(event)


def decode_body(body: bytes) -> AnyEvent:
    """JSON body -> event; raises msgspec.DecodeError when it is not one."""
    return _decoder.decode(body)
