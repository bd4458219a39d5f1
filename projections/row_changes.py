"""Events -> the row changes they cause (pure: no I/O against Redis or PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from app.platform.eventlog.content_crypto import (
    ERASED,
    SEALED_MARK,
    Keyring,
    open_sealed,
    open_value,
)
from app.platform.eventlog.entries import entry_position
from schema.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    AnyEvent,
    DeliveryStatusReceived,
    MessageReceived,
    MessageUnreadable,
    ReplySent,
    SummaryCreated,
    UserForgotten,
    UserKeyIssued,
    encode_body,
    event_type_name_of,
)
from schema.ids import identity_id_for

_json = msgspec.json.Encoder()


_TAGS = {kind: event_type_name_of(kind) for kind in EVENT_TYPES}


def _required_text(value: str, keyring: Keyring, field: str) -> str:
    """A required text field as its row holds it: opened, ``ERASED`` once its key is gone."""
    opened = open_value(value, keyring, field)
    return ERASED if opened is None else opened


def _optional_text(value: str | None, keyring: Keyring, field: str) -> str | None:
    """An optional text field as its row holds it: opened, None once its key is gone."""
    return None if value is None else open_value(value, keyring, field)


def _payload_json(value: object, keyring: Keyring) -> str | None:
    """``raw_payload`` as jsonb text: a sealed one is the JSON it was sealed as, not parsed;
    jsonb refuses the NUL escape, which becomes U+FFFD."""
    if value is None:
        return None
    if isinstance(value, str) and value.startswith(SEALED_MARK):
        opened = open_sealed(value, keyring, "raw_payload")
        if opened is None:
            return None
        text = opened.decode()
    else:
        text = _json.encode(value).decode()
    return text.replace("\\u0000", "\\ufffd")


# A later status never goes back to an earlier one; statuses may arrive in any order.
STATUS_RANKS = {"sent": 1, "delivered": 2, "read": 3, "failed": 4}


# A row's times are integers: microseconds since the Unix epoch, UTC (``RowTime``). The
# writing connection encodes them into timestamptz (``write_rows.use_row_times``), asyncpg's
# own encoder of a datetime cost ~7,000 instructions a value (two comparisons with naive
# infinity datetimes, ``astimezone``, a timedelta), and making the datetime ~2,400 more.
RowTime = int
MS = 1_000  # microseconds in a millisecond (events' server times are milliseconds)
SECOND = 1_000_000  # in a second (Meta's timestamps are seconds)


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)  # tz positional: a fifth cheaper


@dataclass(slots=True)
class RowChanges:
    """Column-wise rows, ready for ``unnest``-based bulk statements."""

    users: dict[str, RowTime] = field(default_factory=dict)
    # id -> (user id, channel, key, created, kind, parent bsuid, username)
    identities: dict[str, tuple] = field(default_factory=dict)  # type: ignore[type-arg]
    messages: dict[str, tuple] = field(default_factory=dict)  # type: ignore[type-arg]
    replies: dict[str, tuple[RowTime, str, str | None]] = field(default_factory=dict)
    unreadable: dict[str, tuple] = field(default_factory=dict)  # type: ignore[type-arg]
    recovered: dict[str, str] = field(default_factory=dict)  # unreadable event id -> message id
    statuses: dict[str, tuple] = field(default_factory=dict)  # type: ignore[type-arg]
    summaries: dict[str, tuple] = field(default_factory=dict)  # type: ignore[type-arg]
    archive: list[tuple] = field(default_factory=list)  # type: ignore[type-arg]
    # key id -> (user id, wrapped key, issued at): keys to store durably (content_rows)
    user_keys: dict[str, tuple[str, str, RowTime]] = field(default_factory=dict)
    # user id -> (key ids, forgotten at): the erasure's parameter, a datetime (not a row)
    forgotten: dict[str, tuple[list[str], datetime]] = field(default_factory=dict)
    # Opens sealed content for the rows; the archive keeps it sealed. Absent key = erased.
    keyring: Keyring = field(default_factory=dict)
    archiving: bool = True  # False: leave ``archive`` empty (replay reads the archive)

    def add(self, partition: int, entry_id: str, event: AnyEvent,
            body: bytes | None = None) -> None:
        """Fold one event into the changes (later events of a batch win where they overlap).

        ``body`` is the event's body as logged, archived as it is; None: encoded afresh."""
        kind = type(event)
        if kind is UserKeyIssued:  # never archived: the key's home is user_keys
            self.user_keys[event.key_id] = (event.user_id, event.wrapped_key,
                                            event.occurred_at * MS)
            return
        if self.archiving:
            ms, seq = entry_position(entry_id)
            self.archive.append((
                event.event_id, partition, ms, seq, _TAGS[kind], SCHEMA_VERSION,
                event.occurred_at, encode_body(event) if body is None else body,
            ))
        # Sealed fields are opened one by one as the rows take them: no opened copy of the event
        if kind is MessageReceived:
            self._add_message(event)
        elif kind is ReplySent:
            self.replies[event.message_id] = (
                event.replied_at * MS,
                _required_text(event.reply_text, self.keyring, "reply_text"),
                event.outbound_message_id)
        elif kind is DeliveryStatusReceived:
            self._add_status(event)
        elif kind is SummaryCreated:
            self._add_summary(event)
        elif kind is MessageUnreadable:
            self.unreadable[event.event_id] = (
                event.received_at * MS, event.reason,
                event.raw_message.replace("\x00", "\ufffd"),
                event.raw_contacts.replace("\x00", "\ufffd") if event.raw_contacts else None,
            )
        elif kind is UserForgotten:
            self.forgotten[event.user_id] = (event.key_ids, ms_to_datetime(event.forgotten_at))
        # ReplyFailed and SummaryRequested change no table; they are archived like the rest.

    def _add_message(self, event: MessageReceived) -> None:
        keyring = self.keyring
        received = event.received_at * MS
        self.users.setdefault(event.user_id, received)
        self._add_identities(event, received)
        if event.recovered_from is not None:
            self.recovered[event.recovered_from] = event.message_id
        if event.message_id in self.messages:
            return  # the first row of a message wins: nothing more to open
        client = event.client_timestamp
        text = open_value(event.text, keyring, "text")
        payload = event.raw_payload
        self.messages[event.message_id] = (
            event.user_id,
            event.identity_id,
            received,
            None if client is None else client * SECOND,
            event.content_type,
            ERASED if text is None else text,
            None if payload is None else _payload_json(payload, keyring),
            event.source_message_id,
        )

    def _add_summary(self, event: SummaryCreated) -> None:
        if event.summary_id in self.summaries:
            return
        self.summaries[event.summary_id] = (
            event.user_id,
            event.range_start * MS,
            event.range_end * MS,
            event.occurred_at * MS,
            event.status,
            _optional_text(event.summary_text, self.keyring, "summary_text"),
            event.model_name,
            event.prompt_version,
            event.input_messages_count,
            _optional_text(event.input_hash, self.keyring, "input_hash"),
            event.error,
        )

    def _add_identities(self, event: MessageReceived, received: RowTime) -> None:
        """Every identity the event names for its user (``_add_named_identities``). Most
        messages name one phone identity, their own: its first row is its row, taken without
        the loop, and no username is opened (a phone identity's row holds none)."""
        if (event.bsuid is None and (event.phone is None or event.phone == event.channel_user_key)
                and event.channel_user_key.startswith("+")):
            if event.identity_id not in self.identities:
                self.identities[event.identity_id] = (
                    event.user_id, event.channel, event.channel_user_key, received, "phone",
                    None, None)
            return
        username = event.username
        if username is not None:
            username = open_value(username, self.keyring, "username")
        self._add_named_identities(event, received, username)

    def _add_named_identities(self, event: MessageReceived, received: RowTime,
                              username: str | None) -> None:
        """Every identity the event names for its user; the first row of each id wins, but
        the username (``username``: the event's, opened) and parent BSUID of a BSUID identity
        are the latest ones given."""
        named = {event.channel_user_key: event.identity_id}
        for key in (event.phone, event.bsuid):
            if key is not None and key not in named:
                named[key] = identity_id_for(event.channel, key)
        for key, identity_id in named.items():
            is_bsuid = not key.startswith("+")
            first = self.identities.get(identity_id)
            if first is not None and not is_bsuid:
                continue  # a phone identity's first row is its row
            self.identities[identity_id] = (
                first[0] if first else event.user_id,
                event.channel,
                key,
                first[3] if first else received,
                "bsuid" if is_bsuid else "phone",
                (event.parent_bsuid or (first[5] if first else None)) if is_bsuid else None,
                (username or (first[6] if first else None)) if is_bsuid else None,
            )

    def _add_status(self, event: DeliveryStatusReceived) -> None:
        rank = STATUS_RANKS.get(event.status, 0)
        current = self.statuses.get(event.outbound_message_id)
        if current is not None and current[1] >= rank:
            return
        self.statuses[event.outbound_message_id] = (
            event.status, rank,
            None if event.status_at is None else event.status_at * SECOND,
            event.recipient, event.recipient_bsuid, event.error_code, event.error_title,
            event.received_at * MS,
        )


def columns(rows: dict[str, tuple]) -> list[list[object]]:  # type: ignore[type-arg]
    """``{id: (a, b)}`` -> ``[[id...], [a...], [b...]]``."""
    if not rows:
        return []
    ids = list(rows)
    width = len(next(iter(rows.values())))
    return [ids] + [[rows[i][c] for i in ids] for c in range(width)]
