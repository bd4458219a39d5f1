"""Events -> the row changes they cause (pure: no I/O against Redis or PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from app.platform.eventlog.entries import entry_position
from schema.events import (
    SCHEMA_VERSION,
    AnyEvent,
    MessageReceived,
    ReplySent,
    SummaryCreated,
    encode_body,
    event_type_name,
)

_json = msgspec.json.Encoder()


def _jsonb_text(value: object) -> str:
    """JSON for a jsonb column, which refuses the NUL escape: it becomes U+FFFD."""
    return _json.encode(value).decode().replace("\\u0000", "\\ufffd")


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(slots=True)
class RowChanges:
    """Column-wise rows, ready for ``unnest``-based bulk statements."""

    users: dict[str, datetime] = field(default_factory=dict)
    identities: dict[str, tuple[str, str, str, datetime]] = field(default_factory=dict)
    messages: dict[str, tuple] = field(default_factory=dict)  # type: ignore[type-arg]
    replies: dict[str, tuple[datetime, str]] = field(default_factory=dict)
    summaries: dict[str, tuple] = field(default_factory=dict)  # type: ignore[type-arg]
    archive: list[tuple] = field(default_factory=list)  # type: ignore[type-arg]

    def add(self, partition: int, entry_id: str, event: AnyEvent) -> None:
        """Fold one event into the changes (later events of a batch win where they overlap)."""
        ms, seq = entry_position(entry_id)
        self.archive.append((
            event.event_id, partition, ms, seq, event_type_name(event), SCHEMA_VERSION,
            event.occurred_at, encode_body(event),
        ))
        if isinstance(event, MessageReceived):
            received = ms_to_datetime(event.received_at)
            self.users.setdefault(event.user_id, received)
            self.identities.setdefault(
                event.identity_id,
                (event.user_id, event.channel, event.channel_user_key, received),
            )
            self.messages.setdefault(event.message_id, (
                event.user_id,
                event.identity_id,
                received,
                datetime.fromtimestamp(event.client_timestamp, tz=UTC)
                if event.client_timestamp is not None else None,
                event.content_type,
                event.text,
                _jsonb_text(event.raw_payload) if event.raw_payload is not None else None,
                event.source_message_id,
            ))
        elif isinstance(event, ReplySent):
            self.replies[event.message_id] = (ms_to_datetime(event.replied_at), event.reply_text)
        elif isinstance(event, SummaryCreated):
            self.summaries.setdefault(event.summary_id, (
                event.user_id,
                ms_to_datetime(event.range_start),
                ms_to_datetime(event.range_end),
                ms_to_datetime(event.occurred_at),
                event.status,
                event.summary_text,
                event.model_name,
                event.prompt_version,
                event.input_messages_count,
                event.input_hash,
                event.error,
            ))
        # ReplyFailed and SummaryRequested change no table; they are archived like the rest.


def columns(rows: dict[str, tuple]) -> list[list[object]]:  # type: ignore[type-arg]
    """``{id: (a, b)}`` -> ``[[id...], [a...], [b...]]``."""
    if not rows:
        return []
    ids = list(rows)
    width = len(next(iter(rows.values())))
    return [ids] + [[rows[i][c] for i in ids] for c in range(width)]
