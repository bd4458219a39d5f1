"""Webhook body -> the inbound text messages it carries (pure: no I/O, no clock)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from app.ingress.phone import InvalidPhoneNumber, normalise_e164
from app.ingress.webhook_payload import InboundMessage, WebhookBody
from schema.events import MessageReceived
from schema.ids import event_id_for, identity_id_for, message_id_for, user_id_for

CHANNEL = "whatsapp"
# One delivery's messages get scores received_at + i / 1024: strictly increasing, exact in a
# double, and still inside the same millisecond for up to 1024 messages.
TIE_BREAK = 1 / 1024


class MalformedWebhook(ValueError):
    """The body is not JSON at all."""


@dataclass(frozen=True, slots=True)
class InboundText:
    sender: str  # E.164 with +
    wamid: str
    text: str
    client_timestamp: int | None
    raw: dict[str, Any]


@dataclass(slots=True)
class ParsedWebhook:
    texts: list[InboundText] = field(default_factory=list)
    ignored: int = 0  # non-text messages, statuses, unparseable messages
    unknown_shape: bool = False  # well-formed JSON that is not a WhatsApp webhook


_body_decoder = msgspec.json.Decoder(WebhookBody)
_message_decoder = msgspec.json.Decoder(InboundMessage)
_any_decoder = msgspec.json.Decoder()


# 9999-12-31T23:59:59Z, the last second both PostgreSQL and Python's datetime can hold.
MAX_TIMESTAMP_S = 253_402_300_799
MAX_WAMID_LENGTH = 255  # the width of messages.source_message_id


def _client_timestamp(raw: str | None) -> int | None:
    """Meta's seconds, or None when absent or outside what a timestamp column can hold."""
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if 0 <= value <= MAX_TIMESTAMP_S else None


def _storable(text: str) -> str:
    """PostgreSQL text cannot hold NUL: it becomes U+FFFD (the replacement character)."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def parse_webhook(body: bytes) -> ParsedWebhook:
    """Every text message of every entry and change; counts what is ignored.

    Raises MalformedWebhook when the body is not JSON (or nests deeper than we decode).
    """
    try:
        return _parse(body)
    except RecursionError as exc:
        raise MalformedWebhook("JSON nested too deeply") from exc


def _parse(body: bytes) -> ParsedWebhook:
    try:
        webhook = _body_decoder.decode(body)
    except msgspec.ValidationError:
        try:
            _any_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise MalformedWebhook(str(exc)) from exc
        return ParsedWebhook(unknown_shape=True)
    except msgspec.DecodeError as exc:
        raise MalformedWebhook(str(exc)) from exc

    parsed = ParsedWebhook(unknown_shape=webhook.object is None and not webhook.entry)
    for entry in webhook.entry:
        for change in entry.changes:
            value = change.value
            if value is None:
                parsed.ignored += 1
                continue
            parsed.ignored += len(value.statuses or ())
            for raw in value.messages or ():
                text = _text_message(raw)
                if text is None:
                    parsed.ignored += 1
                else:
                    parsed.texts.append(text)
    return parsed


def _text_message(raw: msgspec.Raw) -> InboundText | None:
    try:
        message = _message_decoder.decode(raw)
    except msgspec.ValidationError:
        return None
    if message.type != "text" or message.text is None or not message.id:
        return None
    if len(message.id) > MAX_WAMID_LENGTH or "\x00" in message.id:
        return None  # not a wamid Meta would send; it could never be stored
    try:
        sender = normalise_e164(message.sender)
    except InvalidPhoneNumber:
        return None
    return InboundText(
        sender=sender,
        wamid=message.id,
        text=_storable(message.text.body),
        client_timestamp=_client_timestamp(message.timestamp),
        raw=_any_decoder.decode(raw),
    )


def events_from_texts(texts: list[InboundText], received_at_ms: int) -> list[MessageReceived]:
    """One MessageReceived per text, in delivery order, with strictly increasing scores."""
    events: list[MessageReceived] = []
    for index, inbound in enumerate(texts):
        identity_id = identity_id_for(CHANNEL, inbound.sender)
        message_id = message_id_for(identity_id, inbound.wamid)
        events.append(
            MessageReceived(
                event_id=event_id_for("MessageReceived", message_id),
                occurred_at=received_at_ms,
                user_id=user_id_for(identity_id),
                identity_id=identity_id,
                message_id=message_id,
                channel=CHANNEL,
                channel_user_key=inbound.sender,
                source_message_id=inbound.wamid,
                content_type="text",
                text=inbound.text,
                client_timestamp=inbound.client_timestamp,
                received_at=received_at_ms,
                tracking_score=received_at_ms + index * TIE_BREAK,
                raw_payload=inbound.raw,
            )
        )
    return events
