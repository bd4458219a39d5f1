"""How an event sits in a stream entry: the one owner of the entry's field names.

An entry has five fields: ``type`` (the event's tag), ``v`` (schema version), ``id`` (event
id), ``at`` (occurred at, ms) and ``body`` (the event as JSON, from ``schema.events``). The
Python codec and the Lua that appends an entry are both built here from ``ENTRY_FIELDS``, so
no other module, Python or Lua, spells a field name.

Also here: the two fields a retried dead letter adds, reading Redis replies that may be
bytes or str (``as_text``), the position of an entry id (``'<ms>-<seq>'`` ->
``(ms, seq)``), which orders entries, and reading an XREADGROUP reply as it comes off the
wire (``reply_entries``, ``standard_body``, ``fields_of``; decision 0022).
"""

from __future__ import annotations

from typing import Any, overload

import msgspec

from schema.events import (
    SCHEMA_VERSION,
    AnyEvent,
    Event,
    decode_body,
    encode_body,
    event_type_name,
    event_type_name_of,
)

__all__ = [
    "BODY",
    "ENTRY_FIELDS",
    "ENTRY_LUA",
    "EVENT_ID",
    "OCCURRED_AT",
    "ONLY_GROUP",
    "dead_letter_copy",
    "from_dead_letter_copy",
    "RETRY_OF",
    "TYPE",
    "VERSION",
    "Position",
    "UndecodableEvent",
    "as_text",
    "decode_event",
    "encode_event",
    "entry_id_of",
    "entry_position",
    "entry_texts",
    "entry_values",
    "fields_of",
    "reply_entries",
    "standard_body",
]

TYPE, VERSION, EVENT_ID, OCCURRED_AT, BODY = b"type", b"v", b"id", b"at", b"body"
ENTRY_FIELDS: tuple[bytes, ...] = (TYPE, VERSION, EVENT_ID, OCCURRED_AT, BODY)

# Beside the event's fields, an entry re-appended by ``mecove dlq retry`` carries these two.
ONLY_GROUP = b"only_group"  # the one consumer group that handles the entry again
RETRY_OF = b"retry_of"  # the id of the entry that was dead-lettered

Position = tuple[int, int]  # (ms, seq) of an entry id; positions compare in stream order

DEAD_LETTER_PREFIX = b"event_"  # a dead-letter record keeps the entry's fields under this prefix


def dead_letter_copy(fields: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """The entry's event fields as a dead-letter record stores them (``event_type`` …)."""
    return {DEAD_LETTER_PREFIX + name: fields[name] for name in ENTRY_FIELDS if name in fields}


def from_dead_letter_copy(record: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """The entry fields back from a dead-letter record (the inverse of ``dead_letter_copy``)."""
    return {name: record[DEAD_LETTER_PREFIX + name] for name in ENTRY_FIELDS
            if DEAD_LETTER_PREFIX + name in record}


class UndecodableEvent(Exception):
    """An entry that this code cannot turn into an event (unknown type, newer version, bad body)."""


_VERSION_VALUE = str(SCHEMA_VERSION).encode()


def entry_values(event: Event) -> list[bytes]:
    """The entry's field values in ``ENTRY_FIELDS`` order (the Lua ``next_event`` reads them)."""
    return [  # TYPE, VERSION, EVENT_ID, OCCURRED_AT, BODY
        event_type_name(event).encode(),
        _VERSION_VALUE,
        event.event_id.encode(),
        str(event.occurred_at).encode(),
        encode_body(event),
    ]


_VERSION_TEXT = str(SCHEMA_VERSION)


def entry_texts(event: Event) -> list[str]:
    """``entry_values`` as str, for packed script arguments (``lua.packed_args``), which carry
    no bytes. The body is msgspec's JSON, always UTF-8: the entry holds the same bytes."""
    return [  # TYPE, VERSION, EVENT_ID, OCCURRED_AT, BODY
        event_type_name_of(type(event)),  # per message: one call, not two
        _VERSION_TEXT,
        event.event_id,
        str(event.occurred_at),
        encode_body(event).decode(),
    ]


def encode_event(event: Event) -> dict[bytes, bytes]:
    """Event -> stream entry fields."""
    return dict(zip(ENTRY_FIELDS, entry_values(event), strict=True))


def decode_event(fields: dict[bytes, bytes]) -> AnyEvent:
    """Stream entry fields -> event; raises UndecodableEvent with the reason."""
    raw_version = fields.get(VERSION)
    try:
        version = int(raw_version) if raw_version is not None else -1
    except ValueError as exc:
        raise UndecodableEvent(f"schema version {raw_version!r} is not a number") from exc
    if version != SCHEMA_VERSION:
        raise UndecodableEvent(
            f"schema version {version} is not supported (this code reads {SCHEMA_VERSION})"
        )
    body = fields.get(BODY)
    if body is None:
        raise UndecodableEvent("entry has no body")
    try:
        return decode_body(body)
    except msgspec.DecodeError as exc:
        raise UndecodableEvent(f"body does not decode: {exc}") from exc


RawEntry = list[Any]
"""One entry of an unparsed stream reply: ``[id, [name, value, name, value, ...]]`` (the field
list is None for an entry trimmed while pending)."""


def reply_entries(reply: Any) -> list[RawEntry]:
    """The entries of an unparsed XREAD/XREADGROUP reply, stream after stream, each stream's
    in log order: a RESP3 map (stream -> entries) or a RESP2 list of [stream, entries]."""
    if not reply:
        return []
    per_stream = reply.values() if isinstance(reply, dict) else [got for _, got in reply]
    if len(per_stream) == 1:
        return list(per_stream)[0]  # type: ignore[no-any-return]
    return [entry for got in per_stream for entry in got]


_STANDARD_NAMES = list(ENTRY_FIELDS)
_STANDARD_LENGTH = 2 * len(ENTRY_FIELDS)
_BODY_INDEX = 2 * ENTRY_FIELDS.index(BODY) + 1
_VERSION_INDEX = 2 * ENTRY_FIELDS.index(VERSION) + 1


def standard_body(pairs: list[bytes]) -> bytes | None:
    """The body of an entry's field list (``[name, value, ...]``) when it holds exactly the
    event's fields in ``ENTRY_FIELDS`` order, as the append script writes them, at this code's
    schema version; None for any other entry (a retried dead letter, a malformed one), which
    goes through ``fields_of`` and ``decode_event``."""
    if (len(pairs) == _STANDARD_LENGTH and pairs[_VERSION_INDEX] == _VERSION_VALUE
            and pairs[::2] == _STANDARD_NAMES):
        return pairs[_BODY_INDEX]
    return None


def fields_of(pairs: list[bytes] | None) -> dict[bytes, bytes] | None:
    """An entry's field list (``[name, value, ...]``) as a dict; None stays None (trimmed)."""
    if pairs is None:
        return None
    names = iter(pairs)
    return dict(zip(names, names, strict=True))


@overload
def as_text(value: bytes | str) -> str: ...
@overload
def as_text(value: None) -> None: ...
def as_text(value: bytes | str | None) -> str | None:
    """A Redis reply as text: bytes are UTF-8 decoded, str and None pass through."""
    return value.decode() if isinstance(value, bytes) else value


def entry_position(entry_id: str) -> Position:
    """``'1700000000000-3'`` -> ``(1700000000000, 3)``; a bare ``'<ms>'`` is ``(ms, 0)``."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def entry_id_of(position: Position) -> str:
    """``(1700000000000, 3)`` -> ``'1700000000000-3'``, the inverse of ``entry_position``."""
    return f"{position[0]}-{position[1]}"


def _entry_lua() -> str:
    pairs = ", ".join(f"'{name.decode()}', event[{n}]" for n, name in enumerate(ENTRY_FIELDS, 1))
    return f"""
-- The next {len(ENTRY_FIELDS)} arguments: one event's entry values (entries.entry_values).
local function next_event()
  return next_args({len(ENTRY_FIELDS)})
end
-- Appends the event read by next_event() to stream_key; returns the new entry id.
local function xadd_event(stream_key, event)
  return redis.call('XADD', stream_key, '*', {pairs})
end
"""


# Lua functions for scripts that append events; needs lua.ARGUMENT_READERS before it.
ENTRY_LUA = _entry_lua()
