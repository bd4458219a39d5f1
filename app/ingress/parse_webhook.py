"""Webhook body -> what it carries: texts, unreadable messages, delivery statuses (pure).

Liberal in what it accepts: a message object with an id and a sender (a phone number, a
business-scoped user id, or both) is read whatever the types of its optional fields. A message
object it cannot read at all is returned as ``UnreadableMessage`` with its raw JSON, never
dropped. Non-text messages are only counted.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import msgspec

from app.ingress.phone import InvalidPhoneNumber, normalise_e164
from app.ingress.webhook_payload import WebhookBody
from app.platform.identities import Resolution, Sender, first_sighting
from schema.events import DeliveryStatusReceived, MessageReceived, MessageUnreadable
from schema.ids import event_id_for, identity_id_for, message_id_for

CHANNEL = "whatsapp"
# One delivery's messages get scores received_at + i / 1024: strictly increasing, exact in a
# double, and still inside the same millisecond for up to 1024 messages.
TIE_BREAK = 1 / 1024
# ``CC.`` + up to 128 alphanumerics; a parent BSUID has ``ENT.`` after the country code.
BSUID_PATTERN = re.compile(r"[A-Z]{2}\.[A-Za-z0-9]{1,128}")
PARENT_BSUID_PATTERN = re.compile(r"[A-Z]{2}\.ENT\.[A-Za-z0-9]{1,128}")
DELIVERY_STATUSES = frozenset({"sent", "delivered", "read", "failed"})
MAX_USERNAME_LENGTH = 128


class MalformedWebhook(ValueError):
    """The body is not JSON at all."""


# Records built per message are msgspec Structs, not frozen dataclasses: a frozen dataclass
# sets each field through ``object.__setattr__`` (measured 880 ns for four fields against
# 70 ns), and the ingress builds several per message. ``gc=False``: they hold no cycles.
class InboundText(msgspec.Struct, frozen=True, gc=False):
    sender: Sender
    wamid: str
    text: str
    client_timestamp: int | None
    # The message object's JSON as received (``msgspec.Raw``): sealed and logged as it is,
    # never encoded again (decision 0027). A dict is taken too (built by hand, not parsed).
    raw: msgspec.Raw | dict[str, Any]


class UnreadableMessage(msgspec.Struct, frozen=True, gc=False):
    reason: str
    raw_message: str  # the message object's JSON as received
    raw_contacts: str | None  # the change's ``contacts`` JSON, which may name the sender


class DeliveryStatus(msgspec.Struct, frozen=True, gc=False):
    outbound_message_id: str
    status: str
    status_at: int | None
    recipient: str | None
    recipient_bsuid: str | None
    error_code: int | None
    error_title: str | None


class ParsedWebhook(msgspec.Struct, gc=False):
    texts: list[InboundText] = msgspec.field(default_factory=list)
    unreadable: list[UnreadableMessage] = msgspec.field(default_factory=list)
    statuses: list[DeliveryStatus] = msgspec.field(default_factory=list)
    ignored: int = 0  # non-text messages, statuses we do not record
    unknown_shape: bool = False  # well-formed JSON that is not a WhatsApp webhook


_body_decoder = msgspec.json.Decoder(WebhookBody)
_any_decoder = msgspec.json.Decoder()
_raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw] | None)  # built once: ~5% of a webhook
_encoder = msgspec.json.Encoder()

# 9999-12-31T23:59:59Z, the last second both PostgreSQL and Python's datetime can hold.
MAX_TIMESTAMP_S = 253_402_300_799
MAX_WAMID_LENGTH = 255  # the width of messages.source_message_id


def client_timestamp(raw: object) -> int | None:
    """Meta's seconds (a string, or a number from some senders), or None when unusable."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, float):
        value = int(raw) if raw == raw and abs(raw) < 1e18 else None
    elif isinstance(raw, int):
        value = raw
    elif isinstance(raw, str):
        try:
            value = int(raw.strip())
        except ValueError:
            return None
    else:
        return None
    return value if value is not None and 0 <= value <= MAX_TIMESTAMP_S else None


def _storable(text: str) -> str:
    """PostgreSQL text cannot hold NUL: it becomes U+FFFD (the replacement character)."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _string(value: object) -> str | None:
    """A non-empty string, or a number written as one (Meta's ids are digits)."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def as_phone(value: object) -> str | None:
    if type(value) is str:  # what Meta sends: one cached call, stripped inside
        return _phone_of(value)
    text = _string(value)
    return None if text is None else _phone_of(text)


def as_bsuid(value: object) -> str | None:
    if type(value) is str:
        return _bsuid_of(value)
    text = _string(value)
    return None if text is None else _bsuid_of(text)


# A delivery names its sender two or three times (``from``, the contact's ``wa_id``...), and
# the same senders write again and again: each text is read once per process while cached.
# Both take the text as sent, surrounding spaces included (``_string``'s strip done here).
@lru_cache(maxsize=16_384)
def _phone_of(text: str) -> str | None:
    text = text.strip()
    if not text:
        return None
    try:
        return normalise_e164(text)
    except InvalidPhoneNumber:
        return None


@lru_cache(maxsize=16_384)
def _bsuid_of(text: str) -> str | None:
    text = text.strip()
    if not text or PARENT_BSUID_PATTERN.fullmatch(text):
        return None
    return text if BSUID_PATTERN.fullmatch(text) else None


def _as_parent_bsuid(value: object) -> str | None:
    text = _string(value)
    return text if text is not None and PARENT_BSUID_PATTERN.fullmatch(text) else None


def parse_webhook(body: bytes) -> ParsedWebhook:
    """Every text, unreadable message and delivery status of every entry and change.

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
            raw_contacts = bytes(value.contacts)
            contacts_json = (raw_contacts.decode()
                             if raw_contacts and raw_contacts != b"null" else None)
            messages = _raw_items(value.messages, parsed, contacts_json)
            contacts = _contacts(contacts_json) if messages else []  # once for all messages
            for raw in messages:
                read_message(raw, contacts_json, parsed, contacts)
            for raw in _raw_items(value.statuses, None, None):
                status = _delivery_status(raw)
                if status is None:
                    parsed.ignored += 1
                else:
                    parsed.statuses.append(status)
    return parsed


def _raw_items(raw: msgspec.Raw, parsed: ParsedWebhook | None,
               contacts_json: str | None) -> list[msgspec.Raw]:
    """The elements of a JSON list, each still raw; a non-list messages field is unreadable."""
    if not raw:
        return []
    try:
        items = _raw_list_decoder.decode(raw)
    except msgspec.ValidationError:
        if parsed is not None:
            parsed.unreadable.append(UnreadableMessage(
                "messages is not a list", bytes(raw).decode(), contacts_json))
        return []
    return items or []


def read_message(raw: msgspec.Raw | bytes, contacts_json: str | None,
                 parsed: ParsedWebhook, contacts: list[dict[str, Any]] | None = None) -> None:
    """Read one message object into ``parsed``: a text, an unreadable message, or a count.

    ``contacts``: ``contacts_json`` decoded (``_contacts``), when the caller has it already."""
    message = _any_decoder.decode(raw)
    if not isinstance(message, dict):
        parsed.unreadable.append(_unreadable("not a JSON object", raw, contacts_json))
        return
    wamid = _string(message.get("id"))
    if wamid is None or len(wamid) > MAX_WAMID_LENGTH or "\x00" in wamid:
        parsed.unreadable.append(_unreadable("no usable id", raw, contacts_json))
        return
    sender = _sender(message, _contacts(contacts_json) if contacts is None else contacts)
    if sender is None:
        parsed.unreadable.append(_unreadable("no usable sender", raw, contacts_json))
        return
    kind = message.get("type")
    text = message.get("text")
    if kind is None and isinstance(text, dict):
        kind = "text"
    if kind != "text":
        parsed.ignored += 1  # media, reactions, system notices...: acknowledged, not answered
        return
    body = text.get("body") if isinstance(text, dict) else None
    if not isinstance(body, str):
        parsed.unreadable.append(_unreadable("text without a body", raw, contacts_json))
        return
    parsed.texts.append(InboundText(  # by position (see events_from_texts): per message
        sender,
        wamid,
        _storable(body),
        client_timestamp(message.get("timestamp")),
        raw if isinstance(raw, msgspec.Raw) else msgspec.Raw(raw),
    ))


def _unreadable(reason: str, raw: msgspec.Raw | bytes,
                contacts_json: str | None) -> UnreadableMessage:
    """The message kept raw (its JSON decoded to text only when it is unreadable)."""
    return UnreadableMessage(reason, bytes(raw).decode(), contacts_json)


def _contacts(contacts_json: str | None) -> list[dict[str, Any]]:
    if not contacts_json:
        return []
    try:
        contacts = _any_decoder.decode(contacts_json)
    except msgspec.DecodeError:
        return []
    if not isinstance(contacts, list):
        return []
    for contact in contacts:  # nearly always all objects: the list as decoded, no copy
        if not isinstance(contact, dict):
            return [c for c in contacts if isinstance(c, dict)]
    return contacts


def _sender(message: dict[str, Any], contacts: list[dict[str, Any]]) -> Sender | None:
    """Who wrote: ``from`` / ``from_user_id``, completed by the matching ``contacts`` entry."""
    # Absent fields (None) are tested here rather than in a call each: this runs per message.
    raw_from = message.get("from")
    phone = None if raw_from is None else as_phone(raw_from)
    raw_user_id = message.get("from_user_id")
    bsuid = None if raw_user_id is None else as_bsuid(raw_user_id)
    if bsuid is None and phone is None and raw_from is not None:
        bsuid = as_bsuid(raw_from)
    raw_parent = message.get("from_parent_user_id")
    parent = None if raw_parent is None else _as_parent_bsuid(raw_parent)
    names_itself = raw_from is not None or "from" in message or "from_user_id" in message
    contact = _matching_contact(contacts, phone, bsuid, names_itself) if contacts else None
    username = None
    if contact is not None:  # absent fields (None) tested inline, as above
        if phone is None and (raw := contact.get("wa_id")) is not None:
            phone = as_phone(raw)
        if bsuid is None and (raw := contact.get("user_id")) is not None:
            bsuid = as_bsuid(raw)
        if parent is None and (raw := contact.get("parent_user_id")) is not None:
            parent = _as_parent_bsuid(raw)
        profile = contact.get("profile")
        if isinstance(profile, dict):
            raw_name = profile.get("username")
            name = None if raw_name is None else _string(raw_name)
            username = name[:MAX_USERNAME_LENGTH] if name else None
    if phone is None and bsuid is None:
        return None
    return Sender(phone, bsuid, parent, username)  # by position: per message


def _matching_contact(contacts: list[dict[str, Any]], phone: str | None,
                      bsuid: str | None, names_itself: bool) -> dict[str, Any] | None:
    for contact in contacts:  # absent fields (None) tested inline: per message
        if bsuid is not None and (raw := contact.get("user_id")) is not None \
                and as_bsuid(raw) == bsuid:
            return contact
        if phone is not None and (raw := contact.get("wa_id")) is not None \
                and as_phone(raw) == phone:
            return contact
    # A message that names no sender at all, beside a single contact: that contact wrote it.
    if len(contacts) == 1 and not names_itself:
        return contacts[0]
    return None


def _delivery_status(raw: msgspec.Raw) -> DeliveryStatus | None:
    try:
        status = _any_decoder.decode(raw)
    except msgspec.DecodeError:
        return None
    if not isinstance(status, dict):
        return None
    outbound = _string(status.get("id"))
    kind = status.get("status")
    # isinstance first: an object or array there is unhashable, and a set lookup would raise.
    if outbound is None or len(outbound) > MAX_WAMID_LENGTH or not isinstance(kind, str) \
            or kind not in DELIVERY_STATUSES:
        return None
    code: int | None = None
    title: str | None = None
    errors = status.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        raw_code = errors[0].get("code")
        code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
        raw_title = errors[0].get("title") or errors[0].get("message")
        title = _storable(raw_title)[:200] if isinstance(raw_title, str) else None
    recipient = _string(status.get("recipient_id"))
    return DeliveryStatus(
        outbound_message_id=outbound,
        status=kind,
        status_at=client_timestamp(status.get("timestamp")),
        recipient=recipient[:160] if recipient else None,
        recipient_bsuid=as_bsuid(status.get("recipient_user_id")) or as_bsuid(recipient),
        error_code=code,
        error_title=title,
    )


def events_from_texts(texts: list[InboundText], received_at_ms: int,
                      resolutions: list[Resolution] | None = None) -> list[MessageReceived]:
    """One MessageReceived per text, in delivery order, with strictly increasing scores.

    ``resolutions`` (one per text) say which user each sender is and which of its identities
    belong to that user (see ``app/platform/identities.py``); without them every sender is
    taken as seen for the first time.
    """
    if resolutions is None:
        resolutions = [first_sighting(t.sender) for t in texts]
    events: list[MessageReceived] = []
    for index, (inbound, resolved) in enumerate(zip(texts, resolutions, strict=True)):
        key = resolved.phone or resolved.bsuid
        assert key is not None  # a sender always has a phone or a BSUID
        identity_id = identity_id_for(CHANNEL, key)
        message_id = message_id_for(identity_id, inbound.wamid)
        sender = inbound.sender
        # Positional, in ``MESSAGE_FIELDS`` order: msgspec matches keyword arguments name by
        # name, and 18 of them cost ~3 µs against ~0.5 µs (timeit) per message.
        events.append(MessageReceived(
            event_id_for("MessageReceived", message_id),  # event_id
            received_at_ms,  # occurred_at
            resolved.user_id,  # user_id
            identity_id,  # identity_id
            message_id,  # message_id
            CHANNEL,  # channel
            key,  # channel_user_key
            inbound.wamid,  # source_message_id
            "text",  # content_type
            inbound.text,  # text
            inbound.client_timestamp,  # client_timestamp
            received_at_ms,  # received_at
            received_at_ms + index * TIE_BREAK,  # tracking_score
            inbound.raw,  # raw_payload
            resolved.phone,  # phone
            resolved.bsuid,  # bsuid
            sender.parent_bsuid,  # parent_bsuid
            sender.username,  # username
        ))
    return events


# The fields ``events_from_texts`` passes by position, in order (a test pins them to the
# schema's, so a field moved in ``MessageReceived`` fails the build, not the log).
MESSAGE_FIELDS = (
    "event_id", "occurred_at", "user_id", "identity_id", "message_id", "channel",
    "channel_user_key", "source_message_id", "content_type", "text", "client_timestamp",
    "received_at", "tracking_score", "raw_payload", "phone", "bsuid", "parent_bsuid", "username",
)


def unreadable_event(message: UnreadableMessage, received_at_ms: int) -> MessageUnreadable:
    """The event that keeps an unreadable message; its id is that of its content."""
    subject = f"{message.raw_message}\n{message.raw_contacts or ''}"
    return MessageUnreadable(
        event_id=event_id_for("MessageUnreadable", subject),
        occurred_at=received_at_ms,
        reason=message.reason,
        raw_message=message.raw_message,
        raw_contacts=message.raw_contacts,
        received_at=received_at_ms,
    )


def status_event(status: DeliveryStatus, received_at_ms: int) -> DeliveryStatusReceived:
    """One event per (outbound message, status): a redelivered status has the same id."""
    return DeliveryStatusReceived(
        event_id=event_id_for("DeliveryStatusReceived",
                              f"{status.outbound_message_id}:{status.status}"),
        occurred_at=received_at_ms,
        outbound_message_id=status.outbound_message_id,
        status=status.status,
        status_at=status.status_at,
        recipient=status.recipient,
        recipient_bsuid=status.recipient_bsuid,
        error_code=status.error_code,
        error_title=status.error_title,
        received_at=received_at_ms,
    )
