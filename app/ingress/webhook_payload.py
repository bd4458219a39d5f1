"""Meta's webhook body as msgspec Structs: only what MeCove reads, everything else ignored.

Each message is kept as ``msgspec.Raw`` and decoded on its own, so that one message of an
unexpected shape does not hide the valid ones of the same delivery.
"""

from __future__ import annotations

import msgspec


class TextBody(msgspec.Struct):
    body: str


class InboundMessage(msgspec.Struct, rename={"sender": "from"}):
    sender: str
    id: str
    type: str
    timestamp: str | None = None
    text: TextBody | None = None


class ChangeValue(msgspec.Struct):
    messages: list[msgspec.Raw] | None = None
    statuses: list[msgspec.Raw] | None = None


class Change(msgspec.Struct):
    field: str | None = None
    value: ChangeValue | None = None


class Entry(msgspec.Struct):
    id: str | None = None
    changes: list[Change] = msgspec.field(default_factory=list)


class WebhookBody(msgspec.Struct):
    object: str | None = None
    entry: list[Entry] = msgspec.field(default_factory=list)
