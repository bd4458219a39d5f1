"""Meta's webhook body as msgspec Structs: only the envelope is typed, the rest read liberally.

The envelope (``object`` / ``entry`` / ``changes`` / ``value``) is decoded into Structs. Each
message, status and contact is kept as ``msgspec.Raw`` and read on its own (see
``app/ingress/parse_webhook.py``), so that one object of an unexpected shape, or an optional
field of an unexpected type, never hides the readable ones of the same delivery.
"""

from __future__ import annotations

import msgspec


class ChangeValue(msgspec.Struct):
    # Raw JSON, whatever its type (an empty Raw when the key is absent).
    messages: msgspec.Raw = msgspec.Raw()
    statuses: msgspec.Raw = msgspec.Raw()
    contacts: msgspec.Raw = msgspec.Raw()


class Change(msgspec.Struct):
    field: str | None = None
    value: ChangeValue | None = None


class Entry(msgspec.Struct):
    id: str | int | None = None
    changes: list[Change] = msgspec.field(default_factory=list)


class WebhookBody(msgspec.Struct):
    object: str | None = None
    entry: list[Entry] = msgspec.field(default_factory=list)
